"""cocotb 2.x testbench for the whole board top (brf_board: UART pins -> framing -> accelerator ->
framing -> UART pins) at the UART bit level, under Icarus or Verilator. Driven by
sim/board_bridge.py, which builds the Verilog and writes the case (``BRF_BOARD_CASE``: the
board's configuration, expected IDENTITY, ECG input streams).

The host side here is a model written against ``brf_hw.board.protocol`` (the same frame
definitions the RTL was generated from, parsed by its ``FrameReader``). Bytes go onto ``rx`` bit
by bit at the board's baud rate (``divisor`` clock cycles per bit), asynchronously to the clock;
``tx`` is sampled in the middle of each bit. Expected values come from the golden model. Every
frame the board sends is checked against its CRC-8 by the reader: a wrong one fails the test.

Tests:
  ecg_sequences_match_golden   SYNC, IDENTITY, two ECG sequences in label mode, a third in full
                               mode (potentials, hidden spikes, cycles), STATUS; steps/s measured
  errors_resync_never_hang     framing error, garbage, truncated frame (header and timeout),
                               reserved frame, a sequence restart (STEP_FIRST) and a SYNC in the
                               middle of a sequence, a reset pulse in the middle of a step
  bit_flips_never_give_a_wrong_result
                               160 ECG steps, 24 of them with 1 or 2 bits flipped on the line
                               (any bit of any byte of the frame): none of those runs, each is
                               reported, every result equals the golden model of the steps kept
  bridge                       (only with BRF_BOARD_BRIDGE) serves the board on a localhost TCP
                               socket for ``brf-hw host --port socket://127.0.0.1:PORT``
"""

from __future__ import annotations

import json
import os
import select
import socket
import time

import cocotb
import cocotb.handle
import numpy as np
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, FallingEdge, First, RisingEdge, Timer

from brf_hw import golden
from brf_hw.artifact import load_artifact
from brf_hw.board import protocol as P

PERIOD_NS = 10
BRIDGE = os.environ.get("BRF_BOARD_BRIDGE")


def _case():
    with np.load(os.environ["BRF_BOARD_CASE"]) as f:
        case = {k: f[k] for k in f.files}
    case["config"] = json.loads(str(case["config"]))
    return case


async def settle_combinational(dut):
    """As sim/brf_rsnn_tb.py, in every module of the hierarchy: Yosys's Verilog makes each
    ``always @*`` block depend on a dummy register of its module, meant to run it once at time 0;
    Icarus does not count the initialiser as an event, so blocks of constants (the decoder's frame
    lengths, ...) would stay X. Toggling each module's dummy runs them."""
    dummies = []

    def walk(scope, depth):
        for handle in scope:
            if "dump_module" in handle._name:
                dummies.append(handle)
            elif depth < 8 and isinstance(handle, cocotb.handle.HierarchyObject):
                walk(handle, depth + 1)

    walk(dut, 0)
    for handle in dummies:
        handle.value = 1
    await Timer(1, unit="ns")
    for handle in dummies:
        handle.value = 0
    await Timer(1, unit="ns")


class Uart:
    """The host's end of the serial line: a transmitter on ``rx`` fed from a byte queue, a
    receiver on ``tx`` that collects bytes and parses them into frames."""

    def __init__(self, dut, divisor: int, lengths: dict):
        self.dut, self.bit_ns = dut, divisor * PERIOD_NS
        self.queue = bytearray()
        self.received = bytearray()
        self.reader = P.FrameReader(lengths)
        self.frames: list = []
        self.parsed = 0  # bytes parsed into frames
        self.taken = 0  # frames handed out
        self.has_data = Event()  # the transmit queue is not empty
        self.got_byte = Event()
        self.stop_bits = {}  # queue position -> stop bit level (framing-error injection)
        self.flips = {}  # queue position -> XOR mask of data bits (bit-flip injection)
        self.sent = 0
        dut.rx.value = 1

    def start(self):
        cocotb.start_soon(self._transmit())
        cocotb.start_soon(self._receive())

    def send(self, data: bytes, bad_stop_at: int | None = None, flips: dict | None = None):
        """Queue ``data``; ``flips`` {offset in data: XOR mask}: those bits are inverted on the line."""
        if bad_stop_at is not None:
            self.stop_bits[self.sent + len(self.queue) + bad_stop_at] = 0
        for offset, mask in (flips or {}).items():
            self.flips[self.sent + len(self.queue) + offset] = mask
        self.queue += data
        self.has_data.set()

    async def _transmit(self):
        await RisingEdge(self.dut.clk)
        self.phase_origin = round(get_sim_time("ps"))
        await Timer(3, unit="ns")  # edges 3 ns after the clock's: asynchronous, never on an edge
        while True:
            if not self.queue:
                self.has_data.clear()
                await self.has_data.wait()
                await self._bit_boundary()
                continue
            byte = self.queue.pop(0)
            stop = self.stop_bits.pop(self.sent, 1)
            byte ^= self.flips.pop(self.sent, 0)
            self.sent += 1
            for level in (0, *((byte >> i) & 1 for i in range(8)), stop):
                self.dut.rx.value = level
                await Timer(self.bit_ns, unit="ns")
            if not stop:
                self.dut.rx.value = 1
                await Timer(self.bit_ns, unit="ns")  # idle for a bit after a broken stop bit
            self.dut.rx.value = 1

    async def _receive(self):
        while True:
            await FallingEdge(self.dut.tx)
            await Timer(self.bit_ns // 2, unit="ns")
            assert int(self.dut.tx.value) == 0, "tx: start bit shorter than half a bit"
            value = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                value |= int(self.dut.tx.value) << i
            await Timer(self.bit_ns, unit="ns")
            assert int(self.dut.tx.value) == 1, f"tx: stop bit of byte {value:#04x} is 0"
            self.received.append(value)
            self.got_byte.set()

    async def _bit_boundary(self):
        """Resume at the transmitter's phase: 3 ns past a clock edge (clocks start at an edge)."""
        phase = (round(get_sim_time("ps")) - self.phase_origin) % (PERIOD_NS * 1000)
        wait = (3000 - phase) % (PERIOD_NS * 1000)
        if wait:
            await Timer(wait, unit="ps")

    def _parse(self):
        self.frames += self.reader.feed(bytes(self.received[self.parsed:]))
        self.parsed = len(self.received)

    async def frames_wait(self, n: int, timeout_bits: int = 20_000) -> list:
        """The next n frames (pseudo-frames included); fails after ``timeout_bits`` bit times
        without them: the design must never hang."""
        start = self.taken
        deadline = round(get_sim_time("ps")) + timeout_bits * self.bit_ns * 1000
        while True:
            self._parse()
            if len(self.frames) - start >= n:
                self.taken = start + n
                return self.frames[start:start + n]
            left = deadline - round(get_sim_time("ps"))
            if left <= 0:
                raise AssertionError(f"no answer: waited {timeout_bits} bit times for {n} frames, got "
                                     f"{[(f.type, f.payload) for f in self.frames[start:]]}")
            self.got_byte.clear()
            await First(self.got_byte.wait(), Timer(left, unit="ps"))

    async def idle(self, bits: int):
        await Timer(bits * self.bit_ns, unit="ns")
        self._parse()

    def skip_to_end(self):
        self._parse()
        self.taken = len(self.frames)


async def start(dut):
    await settle_combinational(dut)
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    dut.rst.value = 0


def _pairs(frames):
    return [(f.type if isinstance(f.type, str) else int(f.type), f.payload) for f in frames]


def _labels(values):
    return [(int(P.Reply.RESULT), int(v)) for v in values]


async def stream_steps(uart, x, first, window: int) -> tuple[list, list]:
    """Send steps keeping at most ``window`` outstanding, as the host does. Returns the labels of
    their RESULT frames and any other frames that came meanwhile (error reports)."""
    frames = P.step_frames(x, first)
    per = len(frames) // len(x)
    labels, others, sent = [], [], 0
    while len(labels) < len(x):
        room = min(len(x) - sent, window - (sent - len(labels)))
        if room > 0:
            uart.send(frames[sent * per:(sent + room) * per])
            sent += room
        for f in await uart.frames_wait(1):
            (labels if f.type in (P.Reply.RESULT, P.Reply.RESULT_FULL) else others).append(f)
    return labels, others


async def sync_and_identify(dut, uart, case, nonce=0x33):
    uart.send(P.sync_frame(nonce))
    ack, = await uart.frames_wait(1)
    assert _pairs([ack]) == [(P.Reply.SYNC_ACK, P.PROTOCOL_VERSION | nonce << 4)], (_pairs([ack]), uart.received.hex())
    uart.send(P.encode(P.Cmd.IDENTIFY))
    ident, = await uart.frames_wait(1)
    assert ident.type == P.Reply.IDENTITY, _pairs([ident])
    values = P.unpack(P.IDENTITY_FIELDS, ident.payload)
    assert values == case["config"]["identity"], f"IDENTITY {values} != {case['config']['identity']}"
    return values


async def open_link(dut, nonce: int = 0x33):
    """Reset the board, start the UART model, SYNC and IDENTIFY: (case, config, network, uart,
    identity, how many step frames may be outstanding)."""
    case = _case()
    cfg = case["config"]
    net, _ = load_artifact(cfg["artifact"])
    await start(dut)
    uart = Uart(dut, cfg["divisor"], P.board_lengths(P.result_bits(net), cfg["identity"]["full_bits"]))
    uart.start()
    ident = await sync_and_identify(dut, uart, case, nonce=nonce)
    window = ident["fifo_depth"] // P.frame_bytes(net.shape[0]) - 8
    return case, cfg, net, uart, ident, window


@cocotb.test(skip=bool(BRIDGE))
async def ecg_sequences_match_golden(dut):
    case, cfg, net, uart, ident, window = await open_link(dut)

    x, first = case["x_label"], case["first_label"].astype(bool)
    gold = golden.run_stream(net, x, first)
    t0 = get_sim_time("ns")
    got, others = await stream_steps(uart, x, first, window)
    assert not others, _pairs(others)
    seconds = (get_sim_time("ns") - t0) * 1e-9
    assert _pairs(got) == _labels(gold.predictions), "labels differ from the golden model"
    hits = (gold.predictions == case["labels_label"]).mean()
    cycles_per_step = seconds / len(x) / (PERIOD_NS * 1e-9)
    dut._log.info(f"{len(x)} steps of {int(first.sum())} ECG sequences in label mode: every label equals the "
                  f"golden model (accuracy {100 * hits:.2f} %); {cycles_per_step:.1f} clock cycles per step "
                  f"through the UART, {cfg['identity']['clock_hz'] / cycles_per_step:,.0f} steps/s at the board's "
                  f"{cfg['identity']['clock_hz'] / 1e6:g} MHz")
    with open(os.environ["BRF_BOARD_RESULT"], "w") as f:
        json.dump({"steps": len(x), "cycles_per_step": cycles_per_step, "accuracy": 100 * hits}, f)

    uart.send(P.encode(P.Cmd.MODE, P.Mode.FULL))
    xf, ff = case["x_full"], case["first_full"].astype(bool)
    gold = golden.run_stream(net, xf, ff)
    got, others = await stream_steps(uart, xf, ff, window)
    assert not others, _pairs(others)
    from brf_hw.board.top import result_layout
    from brf_hw.hw.core import cycle_model
    from brf_hw.hw.core import chunk_spikes

    layout = result_layout(net, cfg["lanes"], cfg["segments"])
    from brf_hw.hw.layout import geometry

    chunks = geometry(ident["hidden"], cfg["lanes"], cfg["segments"])[0]
    for t, frame in enumerate(got):
        assert frame.type == P.Reply.RESULT_FULL, _pairs([frame])
        beat = layout.from_bits(frame.payload)
        potentials = [int(beat.potentials[k]) for k in range(net.shape[2])]
        assert potentials == gold.outputs[t].tolist(), f"step {t}: potentials {potentials} != {gold.outputs[t]}"
        assert int(beat.spikes) == sum(int(z) << h for h, z in enumerate(gold.spikes[t])), f"step {t}: spikes"
        assert int(beat.label) == gold.predictions[t]
        per_chunk = chunk_spikes(gold.spikes[t], cfg["lanes"], chunks)
        assert int(beat.cycles) == cycle_model(int(xf[t].sum()), per_chunk, net.shape[2], cfg["segments"])
    uart.send(P.encode(P.Cmd.STATUS))
    status, = await uart.frames_wait(1)
    values = P.unpack(P.STATUS_FIELDS, status.payload)
    assert values == {"mode": 1, "steps": len(x) + len(xf), "framing": 0, "garbage": 0, "truncated": 0,
                      "bad_frame": 0, "overrun": 0, "crc": 0}, values
    dut._log.info(f"{len(xf)} steps in full mode: potentials, hidden spikes and cycles equal the golden model")


@cocotb.test(skip=bool(BRIDGE))
async def errors_resync_never_hang(dut):
    case, cfg, net, uart, ident, window = await open_link(dut, nonce=0x11)
    x = case["x_errors"]
    err = lambda code: (int(P.Reply.ERROR), int(code))  # noqa: E731

    async def steps(a, b, first_at=(), expect=None):
        first = np.zeros(b - a, bool)
        first[list(first_at)] = True
        got, others = await stream_steps(uart, x[a:b], first, window)
        assert _pairs(got) == _labels(expect), f"steps {a}..{b}: labels differ from the golden model"
        return others

    # 1. a clean start, then a framing error (stop bit 0): one report, the stream goes on
    g = golden.run_stream(net, x[0:40]).predictions
    await steps(0, 20, [0], g[0:20])
    uart.send(b"\x85", bad_stop_at=0)
    assert _pairs(await uart.frames_wait(1)) == [err(P.Error.FRAMING)]
    await steps(20, 40, (), g[20:40])
    # 2. garbage: data bytes outside a frame, one report for the run
    uart.send(b"\x11\x22\x33\x44")
    assert _pairs(await uart.frames_wait(1)) == [err(P.Error.GARBAGE)]
    # 3. a truncated frame: a SYNC cut short by a step header; the step runs
    g = golden.run_stream(net, x[0:60]).predictions
    uart.send(P.sync_frame(7)[:2])
    assert _pairs(await steps(40, 50, (), g[40:50])) == [err(P.Error.TRUNCATED)]
    # 4. a truncated frame by timeout: the half frame is dropped, its late bytes silently too
    uart.send(P.sync_frame(7)[:3])
    await uart.idle(cfg["timeout_cycles"] // cfg["divisor"] + 100)  # 3 bytes in, the timeout, a 3-byte ERROR
    assert _pairs(uart.frames[-1:]) == [err(P.Error.TRUNCATED)]
    uart.skip_to_end()
    uart.send(P.sync_frame(7)[3:])
    # 5. a reserved frame type and a MODE out of range
    uart.send(b"\xe5\x01\x02")
    assert _pairs(await uart.frames_wait(1)) == [err(P.Error.BAD_FRAME)]
    uart.send(P.encode(P.Cmd.MODE, 9))
    assert _pairs(await uart.frames_wait(1)) == [err(P.Error.BAD_FRAME)]
    # the stream went on through all of it: steps 50..60 continue the sequence begun at step 0
    await steps(50, 60, (), g[50:60])
    # 6. a sequence restart in the middle (STEP_FIRST): from a zero state, as the golden model
    g = golden.run_stream(net, x[60:100]).predictions
    await steps(60, 100, [0], g)
    # 7. a SYNC in the middle of a sequence: the next step starts a sequence though it is a STEP
    uart.send(P.sync_frame(0x5A))
    ack, = await uart.frames_wait(1)
    assert _pairs([ack]) == [(P.Reply.SYNC_ACK, P.PROTOCOL_VERSION | 0x5A << 4)]
    g = golden.run_stream(net, x[100:130]).predictions
    await steps(100, 130, (), g)
    # 8. a reset pulse while a step is being computed: the board comes back; after a SYNC all is well
    uart.send(P.step_frames(x[130:131], [False]))
    await uart.idle(32)  # the 3-byte frame is in (30 bit times); the step is being computed
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    await uart.idle(100)
    uart.skip_to_end()
    await sync_and_identify(dut, uart, case, nonce=0x22)
    g = golden.run_stream(net, x[131:160]).predictions
    await steps(131, 160, [0], g)
    uart.send(P.encode(P.Cmd.STATUS))
    status, = await uart.frames_wait(1)
    values = P.unpack(P.STATUS_FIELDS, status.payload)
    assert values["steps"] == 29 and values["framing"] == values["garbage"] == values["overrun"] == 0, values
    dut._log.info("framing error, garbage, truncated frames (header, timeout), reserved frames, a restart and a "
                  "SYNC mid-sequence, a reset mid-step: each gave its documented answer and the stream went on")


@cocotb.test(skip=bool(BRIDGE))
async def bit_flips_never_give_a_wrong_result(dut):
    case, cfg, net, uart, ident, window = await open_link(dut, nonce=0x44)
    x = case["x_errors"]
    frames = P.step_frames(x, np.eye(1, len(x), dtype=bool)[0])
    per = len(frames) // len(x)
    rng = np.random.default_rng(22)
    hit = np.sort(rng.choice(np.arange(1, len(x)), 24, replace=False))  # step 0 starts the sequence, kept
    flips = {}
    for k, t in enumerate(hit):  # one bit of any byte of the frame (bit 7 included); every third frame, two bytes
        for b in rng.choice(per, 1 + (k % 3 == 2), replace=False):
            flips[int(t) * per + int(b)] = 1 << int(rng.integers(8))
    kept = np.setdiff1d(np.arange(len(x)), hit)
    gold = golden.run_stream(net, x[kept]).predictions
    labels, reports, sent = [], [], 0
    while len(labels) < len(kept):  # as stream_steps, counting on the steps kept
        done = len(labels) + int((hit < sent).sum())  # a corrupted step sent counts as answered
        room = min(len(x) - sent, window - (sent - done))
        if room > 0:
            chunk = range(sent * per, (sent + room) * per)
            uart.send(frames[chunk.start:chunk.stop], flips={p - chunk.start: m for p, m in flips.items() if p in chunk})
            sent += room
        for f in await uart.frames_wait(1):
            (labels if f.type == P.Reply.RESULT else reports).append(f)
    uart.send(P.encode(P.Cmd.STATUS))
    while True:
        f, = await uart.frames_wait(1)
        if f.type == P.Reply.STATUS:
            status = P.unpack(P.STATUS_FIELDS, f.payload)
            break
        reports.append(f)
    assert _pairs(labels) == _labels(gold), "a result differs from the golden model of the steps kept"
    assert all(f.type == P.Reply.ERROR for f in reports), _pairs(reports)
    assert status["steps"] == len(kept) and status["framing"] == status["overrun"] == 0, status
    events = status["crc"] + status["truncated"] + status["garbage"] + status["bad_frame"]
    assert events >= len(hit) and status["crc"] >= len(hit) // 2, status
    dut._log.info(f"{len(flips)} flipped bytes in {len(hit)} of {len(x)} steps: none ran, {events} error events "
                  f"({status}), {len(reports)} reports; the {len(kept)} steps kept equal the golden model")


@cocotb.test(skip=not BRIDGE)
async def bridge(dut):
    """Serve the simulated board on 127.0.0.1 (a TCP socket that ``serial.serial_for_url``'s
    ``socket://`` opens): bytes from the socket go onto ``rx`` at the board's baud rate, bytes
    from ``tx`` go back. Ends when the client disconnects, or after ``seconds`` of wall time (or
    ``accept_seconds`` without a client): bounded whatever the client does."""
    cfg = json.loads(BRIDGE)
    await start(dut)
    uart = Uart(dut, cfg["divisor"], {})
    uart.start()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", int(cfg.get("port", 0))))
    server.listen(1)
    port = server.getsockname()[1]
    if cfg.get("port_file"):
        tmp = cfg["port_file"] + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, cfg["port_file"])
    dut._log.info(f"board bridge listening on socket://127.0.0.1:{port}")
    server.settimeout(float(cfg.get("accept_seconds", 60)))
    try:
        conn, _ = server.accept()
    except socket.timeout:
        server.close()
        raise AssertionError("bridge: no client connected") from None
    deadline = time.monotonic() + float(cfg.get("seconds", 300))
    forwarded, quiet_bits = 0, 0
    chunk_bits = 10
    try:
        while time.monotonic() < deadline:
            if len(uart.received) > forwarded:
                conn.sendall(bytes(uart.received[forwarded:]))
                forwarded = len(uart.received)
                quiet_bits = 0
            board_idle = not uart.queue and quiet_bits > 200  # nothing to send, nothing heard for a while
            readable, _, _ = select.select([conn], [], [], 0.005 if board_idle else 0)
            if readable:
                data = conn.recv(65536)
                if not data:
                    break  # the client closed the port
                uart.send(data)
                quiet_bits = 0
            await Timer(chunk_bits * uart.bit_ns, unit="ns")
            quiet_bits += chunk_bits
    finally:
        conn.close()
        server.close()
    dut._log.info(f"bridge closed: {uart.sent} bytes to the board, {forwarded} back")
