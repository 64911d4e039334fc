"""Run the ECG test set on a board over its UART and check every label against the golden model.

    brf-hw host --port /dev/ttyUSB1 --task ecg          # iCEBreaker (FT2232H channel B)
    brf-hw host --port /dev/ttyUSB0 --task ecg          # ULX3S
    brf-hw host --port socket://127.0.0.1:5555 --task ecg --sequences 2 --steps 200   # simulated

The host synchronises with the board (SYNC, a fresh nonce), reads its IDENTITY and refuses a
board whose network differs from --artifact (SHA-256 prefix, shape, formats, constants), then
streams the test sequences back to back (STEP_FIRST at each start) with at most as many steps
outstanding as the board's receive FIFO holds, and prints accuracy, steps per second and the
comparison of every label with the golden model. --full asks for whole output beats and compares
potentials and hidden spikes too. Exit status: 0 all equal, 1 a difference, 2 wrong board or no
link. The baud rate is fixed in the bitstream (``brf-hw build --baud``, default
3,000,000); --baud must match it. Link errors (the board's ERROR reports) make the host
resynchronise and restart the sequence concerned, at most --retries times.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from pathlib import Path

import numpy as np

from . import protocol as P
from .top import DEFAULT_BAUD


class BoardError(RuntimeError):
    """No usable link, or a board that is not the one expected."""


class LinkError(BoardError):
    """The board reported an error, or its replies were corrupted: resynchronise."""

    def __init__(self, message: str, done: int = 0):
        super().__init__(message)
        self.done = done
        self.results: list[int] = []  # the results received before it (Board.run)


def open_port(url: str, baud: int, timeout: float = 0.05):
    import serial

    port = serial.serial_for_url(url, baudrate=baud, timeout=timeout, write_timeout=10)
    try:  # Linux ftdi_sio: latency timer 16 ms -> 1 ms, which the windowed stream needs
        port.set_low_latency_mode(True)
    except (AttributeError, NotImplementedError, OSError, ValueError):
        pass
    return port


class Board:
    """The host end of the link protocol over a pyserial port (or anything with ``read``,
    ``write``, ``in_waiting``)."""

    def __init__(self, port, timeout: float = 3.0):
        self.port, self.timeout = port, timeout
        self.reader = P.FrameReader(P.board_lengths())
        self.identity: dict | None = None

    # --- frames ------------------------------------------------------------------------------------
    def _read(self) -> list:
        data = self.port.read(max(1, self.port.in_waiting))
        return self.reader.feed(data) if data else []

    def _wait_for(self, ftype: int, what: str, accept=lambda f: True, ignore_errors: bool = False):
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for frame in self._read():
                if frame.type == ftype and accept(frame):
                    return frame
                if not ignore_errors:
                    self._check(frame, 0)
        raise BoardError(f"no {what} from the board within {self.timeout:g} s")

    def _check(self, frame, done: int) -> None:
        if frame.type == P.Reply.ERROR:
            text = P.ERROR_TEXT.get(frame.payload, f"error code {frame.payload}")
            raise LinkError(f"the board reported: {text} (after {done} results)", done)
        if isinstance(frame.type, str):
            raise LinkError(f"corrupted reply from the board ({frame.type}: {frame.raw.hex()}) after {done} results",
                            done)
        raise LinkError(f"unexpected frame of type {frame.type} after {done} results", done)

    # --- commands ------------------------------------------------------------------------------------
    def sync(self, tries: int = 3) -> None:
        """Reset the link: whatever the board was doing, the next frame it sees is ours."""
        for _ in range(tries):
            nonce = secrets.randbelow(128)
            self.port.reset_input_buffer()
            self.reader = P.FrameReader(self.reader.lengths)
            self.port.write(P.sync_frame(nonce))
            try:
                self._wait_for(P.Reply.SYNC_ACK, "SYNC_ACK", lambda f: f.payload >> 4 == nonce, ignore_errors=True)
                return
            except BoardError:
                continue
        raise BoardError("the board does not answer SYNC: is it flashed with a brf-hw board bitstream, is this its "
                         "serial port (iCEBreaker: the second one, e.g. /dev/ttyUSB1), and is --baud the one it was "
                         "built with?")

    def identify(self) -> dict:
        self.port.write(P.encode(P.Cmd.IDENTIFY))
        frame = self._wait_for(P.Reply.IDENTITY, "IDENTITY")
        version = frame.payload & 0xF
        if version != P.PROTOCOL_VERSION:
            raise BoardError(f"the board speaks protocol version {version}, this host {P.PROTOCOL_VERSION}: "
                             "build the bitstream and run the host from the same brf-hw")
        self.identity = P.unpack(P.IDENTITY_FIELDS, frame.payload)
        self.reader.set_length(P.Reply.RESULT, P.data_bytes(self.identity["label_bits"]))
        self.reader.set_length(P.Reply.RESULT_FULL, P.data_bytes(self.identity["full_bits"]))
        return self.identity

    def status(self) -> dict:
        self.port.write(P.encode(P.Cmd.STATUS))
        return P.unpack(P.STATUS_FIELDS, self._wait_for(P.Reply.STATUS, "STATUS").payload)

    def run(self, x: np.ndarray, first: np.ndarray, *, full: bool = False, window: int | None = None,
            progress=None) -> list[int]:
        """Stream steps x [T, inputs] (sequence starts in ``first``); returns per step the payload
        of its result (the label, or the whole output beat with ``full``)."""
        if self.identity is None:
            raise BoardError("identify() first")
        x = np.asarray(x)
        per = P.frame_bytes(x.shape[1])
        limit = self.identity["fifo_depth"] // per - 8
        window = max(1, min(window or limit, limit))
        self.port.write(P.encode(P.Cmd.MODE, P.Mode.FULL if full else P.Mode.LABEL))
        frames = P.step_frames(x, first)
        want = P.Reply.RESULT_FULL if full else P.Reply.RESULT
        results: list[int] = []
        steps, sent = len(x), 0
        last = time.monotonic()
        try:
            while len(results) < steps:
                room = min(steps - sent, window - (sent - len(results)))
                if room > 0:
                    self.port.write(frames[sent * per:(sent + room) * per])
                    sent += room
                got = self._read()
                for frame in got:
                    if frame.type != want:
                        self._check(frame, len(results))
                    results.append(frame.payload)
                now = time.monotonic()
                if got:
                    last = now
                    if progress:
                        progress(len(results))
                elif now - last > self.timeout:
                    raise LinkError(f"no result for {self.timeout:g} s after {len(results)} of {steps} steps",
                                    len(results))
        except LinkError as exc:
            exc.results = results
            raise
        return results


def expected_identity(net, sha256: str) -> dict:
    """The IDENTITY fields that describe the network (the rest describe the board)."""
    return P.identity_values(net, sha256, lanes=0, segments=0, full_bits=0, clock_hz=0, divisor=0, fifo_depth=0,
                             timeout_cycles=0)


def describe(ident: dict) -> str:
    fmt = ", ".join(f"{n} {ident[f'{n}_bits']}/{ident[f'{n}_frac']}" for n in P.FORMAT_FIELDS)
    baud = ident["clock_hz"] / ident["divisor"]
    return (f"network {ident['sha256']:016x} {ident['inputs']}-{ident['hidden']}-{ident['outputs']} ({fmt}), "
            f"lanes {ident['lanes']}, segments {ident['segments']}; {ident['clock_hz'] / 1e6:g} MHz, "
            f"{baud:,.0f} baud, FIFO {ident['fifo_depth']} bytes")


def stream_with_retries(board: Board, x, first, *, full: bool, window, retries: int, log) -> tuple[list[int], int]:
    """``board.run`` over the whole stream; on a link error resynchronise and restart from the
    start of the sequence of the first step without a result (the board sends an ERROR ahead of
    any waiting result, so the results before it are sound). Returns the results and the number
    of steps sent since the last SYNC (what the board's STATUS should count)."""
    starts = np.flatnonzero(first)
    results: list[int] = []
    pos = attempts = 0
    while True:
        try:
            part = board.run(x[pos:], first[pos:], full=full, window=window,
                             progress=lambda n: log.progress(pos + n, len(x)))
            return results[:pos] + part, len(x) - pos
        except LinkError as exc:
            attempts += 1
            if attempts > retries:
                raise
            restart = int(starts[starts <= pos + exc.done].max())
            log.note(f"{exc}; resynchronising, restarting at step {restart}")
            results, pos = (results[:pos] + exc.results)[:restart], restart
            board.sync()
            board.identify()


class Log:
    def __init__(self, quiet: bool = False):
        self.quiet, self.last = quiet, 0.0
        self.tty = sys.stderr.isatty()

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.quiet and self.tty and now - self.last > 0.5:
            self.last = now
            print(f"\r{done:,} / {total:,} steps", end="", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        if self.tty:
            print("\r", end="", file=sys.stderr)
        print(text, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", required=True, help="serial port or pyserial URL (e.g. socket://127.0.0.1:5555)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"the bitstream's baud rate (default {DEFAULT_BAUD:,})")
    parser.add_argument("--task", choices=["ecg"], default="ecg")
    parser.add_argument("--artifact", type=Path, help="the network the board must hold (default: the shipped ECG one)")
    parser.add_argument("--data-dir")
    parser.add_argument("--sequences", type=int, help="the first N test sequences (default all 141)")
    parser.add_argument("--steps", type=int, help="the first N steps of each sequence (default all 1300)")
    parser.add_argument("--full", action="store_true", help="whole output beats: compare potentials and spikes too")
    parser.add_argument("--window", type=int, help="steps outstanding at most (default: what the board's FIFO holds)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds without an answer before giving up")
    parser.add_argument("--retries", type=int, default=2, help="resynchronisations after link errors")
    args = parser.parse_args(argv)

    from .. import golden
    from ..artifact import load_artifact, shipped_artifact
    from ..data import load_ecg

    artifact = args.artifact or shipped_artifact()
    net, manifest = load_artifact(artifact)
    test = load_ecg(args.data_dir)["test"]
    n_seq = min(args.sequences or len(test), len(test))
    inputs = test.inputs.numpy()[:n_seq, :args.steps].astype(np.int64)
    labels = test.labels.numpy()[:n_seq, :args.steps]
    annotated = test.annotated.numpy()[:n_seq, :args.steps]
    n_steps = inputs.shape[1]
    x = inputs.reshape(-1, inputs.shape[2])
    first = np.zeros(len(x), bool)
    first[::n_steps] = True
    log = Log()

    try:
        port = open_port(args.port, args.baud)
    except Exception as exc:  # serial.SerialException and URL errors
        print(f"cannot open {args.port}: {exc}", file=sys.stderr)
        return 2
    with port:
        board = Board(port, timeout=args.timeout)
        try:
            board.sync()
            ident = board.identify()
        except BoardError as exc:
            print(f"{args.port}: {exc}", file=sys.stderr)
            return 2
        print(f"board on {args.port}: brf-hw link protocol {ident['version']}, {describe(ident)}")
        wrong = P.network_mismatches(ident, expected_identity(net, manifest["sha256"]))
        if wrong:
            print(f"refusing: the board holds another network than {artifact.name} ({'; '.join(wrong)}). Flash a "
                  f"bitstream built from it: brf-hw build --board BOARD --artifact {artifact}",
                  file=sys.stderr)
            return 2
        board_baud = ident["clock_hz"] / ident["divisor"]
        if not args.port.startswith(("socket://", "loop://")) and abs(board_baud / args.baud - 1) > 0.02:
            log.note(f"note: the board reports {board_baud:,.0f} baud, --baud is {args.baud:,}")

        start = time.perf_counter()
        try:
            results, since_sync = stream_with_retries(board, x, first, full=args.full, window=args.window,
                                                      retries=args.retries, log=log)
        except BoardError as exc:
            log.note(f"FAILED: {exc}")
            return 2
        seconds = time.perf_counter() - start
        status = board.status()
    if log.tty:
        print("\r", end="", file=sys.stderr)

    gold = golden.run(net, inputs.transpose(1, 0, 2))  # [T, B, ...]
    gold_labels = gold.predictions.T.reshape(-1)
    if args.full:
        from .top import result_layout

        layout = result_layout(net, ident["lanes"], ident["segments"])
        beats = [layout.from_bits(r) for r in results]
        got = np.array([int(b.label) for b in beats])
        potentials = np.array([[int(b.potentials[k]) for k in range(net.shape[2])] for b in beats])
        spikes = np.array([[(int(b.spikes) >> h) & 1 for h in range(net.shape[1])] for b in beats])
        cycles = np.array([int(b.cycles) for b in beats])
    else:
        got = np.array(results)
    steps = len(got)
    rate = steps / seconds
    link_rate = board_baud / 10 / max(P.frame_bytes(net.shape[0]),
                                      P.frame_bytes(ident["full_bits"] if args.full else ident["label_bits"]))
    hit = got == labels.reshape(-1)
    print(f"{n_seq} ECG test sequences x {n_steps} steps = {steps:,} steps in {seconds:.2f} s: {rate:,.0f} steps/s "
          f"(the link carries {link_rate:,.0f} steps/s at {board_baud:,.0f} baud)")
    print(f"accuracy from the board's labels {100 * hit.mean():.2f} % (annotated steps "
          f"{100 * hit[annotated.reshape(-1)].mean():.2f} %); golden model "
          f"{100 * (gold_labels == labels.reshape(-1)).mean():.2f} %")
    bad = np.flatnonzero(got != gold_labels)
    problems = []
    if len(bad):
        t = bad[0]
        problems.append(f"{len(bad)} labels differ from the golden model; first: sequence {t // n_steps}, step "
                        f"{t % n_steps}: board {got[t]}, golden {gold_labels[t]}")
    if args.full:
        gp = gold.outputs.transpose(1, 0, 2).reshape(-1, net.shape[2])
        gs = gold.spikes.transpose(1, 0, 2).reshape(-1, net.shape[1])
        for name, a, b in (("potentials", potentials, gp), ("hidden spikes", spikes, gs)):
            rows = np.flatnonzero((a != b).any(1))
            if len(rows):
                problems.append(f"{name} differ at {len(rows)} steps; first: sequence {rows[0] // n_steps}, "
                                f"step {rows[0] % n_steps}")
        print(f"the board's own cycle count: {cycles.mean():.1f} cycles per step on average "
              f"({ident['clock_hz'] / (cycles.mean() + 1):,.0f} steps/s at {ident['clock_hz'] / 1e6:g} MHz)")
    if status["steps"] != since_sync % (1 << 24) or any(status[e.name.lower()] for e in P.Error):
        problems.append(f"the board's STATUS after the run: {status} (the host sent {since_sync} steps since the "
                        "last SYNC)")
    if problems:
        for p in problems:
            print(f"MISMATCH: {p}")
        return 1
    print(f"every label{', potential and hidden spike' if args.full else ''} equals the golden model "
          f"({steps:,} steps)")
    return 0


if __name__ == "__main__":
    from ..cli_util import run_main

    run_main(lambda: sys.exit(main()), "brf-hw host")
