"""Run a task's test set on a board over its UART and check every result against the golden model.

    brf-hw host --port /dev/ttyUSB1                      # iCEBreaker (FT2232H channel B), the shipped ECG network
    brf-hw host --port /dev/ttyUSB0 --task smnist        # ULX3S holding the shipped S-MNIST network
    brf-hw host --port /dev/ttyUSB0 --artifact my.npz    # the artifact's own task
    brf-hw host --port socket://127.0.0.1:5555 --sequences 2 --steps 200   # simulated

The task is the artifact's (--task picks the shipped network of a task; both given, they must
agree). The host synchronises with the board (SYNC, a fresh nonce), reads its IDENTITY and
refuses a board whose network differs from the artifact (SHA-256 prefix, shape, input format,
readout, formats, constants), then streams the test sequences back to back (STEP_FIRST at each
start; spikes or multi-bit inputs such as S-MNIST's u8 pixels) with at most as many steps
outstanding as the board's receive FIFO holds, and prints accuracy (read by the network's
readout: per step, the last step's label, or the last step's running-sum label), steps per second
and the comparison of every step's label (and sum label) with the golden model. --full asks for
whole output beats and compares potentials and hidden spikes too. Exit status: 0 all equal, 1 a
difference, 2 bad input, wrong board or no link. The baud rate is fixed in the bitstream
(``brf-hw build --baud``, default 3,000,000); --baud must match it. Every frame carries a CRC-8
(protocol v2): a corrupted reply, or the board's ERROR report of a corrupted or cut frame, makes
the host resynchronise and restart the sequence concerned, at most --retries times.
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


class VersionError(BoardError):
    """The board speaks another protocol version."""


def _version_error(version: int) -> VersionError:
    return VersionError(f"the board speaks protocol version {version}, this host {P.PROTOCOL_VERSION}: build the "
                      "bitstream and run the host from the same brf-hw")


def _check_version(frame) -> None:
    """A SYNC_ACK or IDENTITY of another protocol version is another length (v1 had no CRC, so its
    frames are shorter and come out cut short by the next header); its header still says its version."""
    if frame.type == "truncated" and frame.raw[0] & P.HEADER:
        ftype, version = (frame.raw[0] >> 4) & 7, frame.raw[0] & 0xF
        if ftype in (P.Reply.SYNC_ACK, P.Reply.IDENTITY) and version != P.PROTOCOL_VERSION:
            raise _version_error(version)


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
                _check_version(frame)
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
            except VersionError:
                raise
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
            raise _version_error(version)
        self.identity = P.unpack(P.IDENTITY_FIELDS, frame.payload)
        self.reader.set_length(P.Reply.RESULT, P.data_bytes(self.identity["result_bits"]))
        self.reader.set_length(P.Reply.RESULT_FULL, P.data_bytes(self.identity["full_bits"]))
        return self.identity

    def status(self) -> dict:
        self.port.write(P.encode(P.Cmd.STATUS))
        return P.unpack(P.STATUS_FIELDS, self._wait_for(P.Reply.STATUS, "STATUS").payload)

    def run(self, x: np.ndarray, first: np.ndarray, *, full: bool = False, window: int | None = None,
            progress=None) -> list[int]:
        """Stream steps x [T, inputs] (sequence starts in ``first``); returns per step the payload
        of its result (the label and a mean readout's sum label, or the whole output beat with
        ``full``)."""
        if self.identity is None:
            raise BoardError("identify() first")
        x = np.asarray(x)
        bits = self.identity["input_bits"]
        per = P.frame_bytes(x.shape[1] * bits)
        limit = max(1, self.identity["fifo_depth"] // per - 8)
        window = max(1, min(window or limit, limit))
        self.port.write(P.encode(P.Cmd.MODE, P.Mode.FULL if full else P.Mode.LABEL))
        frames = P.step_frames(x, first, bits)
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


def load_task_stream(artifact: Path | None, task: str | None, data_dir, sequences: int | None,
                     steps: int | None):
    """The network and the test stream the host sends: the artifact's own task (``task`` picks the
    shipped network of a task when no artifact is given; given both, they must agree). Raises
    UserError, one line, for an artifact whose task the host cannot stream."""
    from ..artifact import load_artifact, shipped_artifact
    from ..cli_util import UserError
    from ..evaluate import check_task
    from ..tasks import TaskData, get_task

    artifact = artifact or shipped_artifact(task or "ecg")
    if not artifact.exists():
        raise UserError(f"no shipped network for task {task!r} ({artifact.name}); give --artifact")
    net, manifest = load_artifact(artifact)
    own = manifest.get("task")
    if task is not None and own not in (task, None):
        raise UserError(f"{artifact.name} holds a network for task {own!r}, not --task {task!r}")
    task = task or own
    if task is None:
        raise UserError(f"{artifact.name} names no task: give --task")
    try:
        spec = get_task(task)
        check_task(net, spec)
    except (UserError, ValueError) as exc:
        raise UserError(f"cannot stream {artifact.name} (task {task!r}) to a board: {exc}") from None
    x, targets, annotated = TaskData(spec, data_dir).integer_sequences("test", sequences)
    if steps is not None:  # the first steps of each sequence: a last/mean class then reads step `steps`
        x = x[:steps]
        targets = targets[:steps] if net.readout.per_step else targets
        annotated = None if annotated is None else annotated[:steps]
    return artifact, net, manifest, task, x.astype(np.int64), targets, annotated


def main(argv=None) -> int:
    from ..tasks import TASKS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", required=True, help="serial port or pyserial URL (e.g. socket://127.0.0.1:5555)")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help=f"the bitstream's baud rate (default {DEFAULT_BAUD:,})")
    parser.add_argument("--task", choices=sorted(TASKS), help="the task (default: the artifact's; without "
                        "--artifact, its shipped network; ecg when neither is given)")
    parser.add_argument("--artifact", type=Path, help="the network the board must hold (default: the task's shipped one)")
    parser.add_argument("--data-dir")
    parser.add_argument("--sequences", type=int, help="the first N test sequences (default all)")
    parser.add_argument("--steps", type=int, help="the first N steps of each sequence (default all)")
    parser.add_argument("--full", action="store_true", help="whole output beats: compare potentials and spikes too")
    parser.add_argument("--window", type=int, help="steps outstanding at most (default: what the board's FIFO holds)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds without an answer before giving up")
    parser.add_argument("--retries", type=int, default=2, help="resynchronisations after link errors")
    args = parser.parse_args(argv)

    from .. import golden

    artifact, net, manifest, task, inputs, targets, annotated = load_task_stream(
        args.artifact, args.task, args.data_dir, args.sequences, args.steps)
    n_steps, n_seq = inputs.shape[:2]
    x = inputs.transpose(1, 0, 2).reshape(-1, inputs.shape[2])  # sequences back to back
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
            other = any(k.split(":")[0] in ("inputs", "outputs", "input_bits", "readout") for k in wrong)
            what = "a network for another task" if other else "another network"
            print(f"refusing: the board holds {what} than {artifact.name} ({'; '.join(wrong)}). Flash a bitstream built from it: brf-hw build --board "
                  f"BOARD --artifact {artifact}", file=sys.stderr)
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
    return report(net, task, inputs, targets, annotated, results, ident, status, since_sync, seconds, args.full,
                  golden.run(net, inputs))


def report(net, task, inputs, targets, annotated, results, ident, status, since_sync, seconds, full, gold) -> int:
    """Print accuracy and rate; compare the board's results step by step with the golden model
    ``gold`` (of inputs [T, B, I]). Returns the exit status: 0 all equal, 1 a difference."""
    from .. import golden

    n_steps, n_seq = inputs.shape[:2]
    seq_major = lambda a: a.transpose(1, 0, *range(2, a.ndim)).reshape(n_seq * n_steps, *a.shape[2:])  # noqa: E731
    lb = ident["label_bits"]
    mean = net.readout.keeps_sums
    if full:
        from .top import result_layout

        layout = result_layout(net, ident["lanes"], ident["segments"])
        beats = [layout.from_bits(r) for r in results]
        got = np.array([int(b.label) for b in beats])
        got_sums = np.array([int(b.sum_label) for b in beats]) if mean else None
        potentials = np.array([[int(b.potentials[k]) for k in range(net.shape[2])] for b in beats])
        spikes = np.array([[(int(b.spikes) >> h) & 1 for h in range(net.shape[1])] for b in beats])
        cycles = np.array([int(b.cycles) for b in beats])
    else:
        payload = np.array(results, dtype=np.int64)
        got = payload & ((1 << lb) - 1)
        got_sums = payload >> lb if mean else None
    steps = len(got)
    per_time = lambda a: a.reshape(n_seq, n_steps).T  # noqa: E731 [T, B], as the golden model's
    classes = net.readout.classes(per_time(got), None if got_sums is None else per_time(got_sums))
    gold_classes = golden.sequence_predictions(net, gold)
    hit = classes == targets
    board_baud = ident["clock_hz"] / ident["divisor"]
    link_rate = board_baud / 10 / max(P.frame_bytes(net.shape[0] * ident["input_bits"]),
                                      P.frame_bytes(ident["full_bits"] if full else ident["result_bits"]))
    unit = "steps" if net.readout.per_step else "sequences"
    print(f"{n_seq} {task} test sequences x {n_steps} steps = {steps:,} steps in {seconds:.2f} s: "
          f"{steps / seconds:,.0f} steps/s (the link carries {link_rate:,.0f} steps/s at {board_baud:,.0f} baud)")
    annotated_text = (f" (annotated steps {100 * hit[annotated].mean():.2f} %)" if annotated is not None else "")
    print(f"accuracy from the board's results, {net.readout.rule.value} readout, over {hit.size:,} {unit}: "
          f"{100 * hit.mean():.2f} %{annotated_text}; golden model {100 * (gold_classes == targets).mean():.2f} %")
    problems = []
    checks = [("labels", got, seq_major(gold.predictions))]
    if mean:
        checks.append(("sum labels", got_sums, seq_major(gold.sums.argmax(-1))))
    if full:
        checks += [("potentials", potentials, seq_major(gold.outputs)), ("hidden spikes", spikes, seq_major(gold.spikes))]
    for name, a, b in checks:
        rows = np.flatnonzero((a != b).reshape(len(a), -1).any(1))
        if len(rows):
            t = rows[0]
            problems.append(f"{name} differ from the golden model at {len(rows)} steps; first: sequence "
                            f"{t // n_steps}, step {t % n_steps}: board {a[t]}, golden {b[t]}")
    if full:
        print(f"the board's own cycle count: {cycles.mean():.1f} cycles per step on average "
              f"({ident['clock_hz'] / (cycles.mean() + 1):,.0f} steps/s at {ident['clock_hz'] / 1e6:g} MHz)")
    if status["steps"] != since_sync % (1 << 24) or any(status[e.name.lower()] for e in P.Error):
        problems.append(f"the board's STATUS after the run: {status} (the host sent {since_sync} steps since the "
                        "last SYNC)")
    if problems:
        for p in problems:
            print(f"MISMATCH: {p}")
        return 1
    what = "label" + (", sum label" if mean else "") + (", potential and hidden spike" if full else "")
    print(f"every {what} equals the golden model ({steps:,} steps)")
    return 0


if __name__ == "__main__":
    from ..cli_util import run_main

    run_main(lambda: sys.exit(main()), "brf-hw host")
