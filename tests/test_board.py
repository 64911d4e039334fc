"""The board link: UART, protocol, framing and the whole board top in Amaranth's simulator (fast
set), and at the UART bit level in cocotb under Icarus and Verilator, the host included (``sim``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from brf_hw import golden
from brf_hw.artifact import load_artifact, shipped_artifact
from brf_hw.board import protocol as P
from brf_hw.board.top import BoardLink
from brf_hw.board.uart import UARTRx, UARTTx
from brf_hw.hw.core import chunk_spikes, period_model
from brf_hw.hw.simulate import expected_cycles

REPO = Path(__file__).resolve().parents[1]


# --- bit-level UART helpers for Amaranth testbenches ------------------------------------------------

async def send_bits(ctx, pin, byte: int, bit_cycles, *, stop: int = 1):
    """One 8N1 character on ``pin``. ``bit_cycles``: cycles per bit, or a list of 10 (start, data,
    stop) to model a sender whose rate is off."""
    cycles = bit_cycles if isinstance(bit_cycles, list) else [bit_cycles] * 10
    for level, n in zip([0, *((byte >> i) & 1 for i in range(8)), stop], cycles):
        ctx.set(pin, level)
        await ctx.tick().repeat(n)
    ctx.set(pin, 1)


async def send_bytes(ctx, pin, data: bytes, div: int):
    for b in data:
        await send_bits(ctx, pin, b, div)


async def receive_byte(ctx, pin, div: int) -> int:
    """Wait for a start bit on ``pin``, sample the byte mid-bit; the stop bit must be 1. Plain
    ticks only: a background testbench may be dropped at any await when the simulation ends."""
    while ctx.get(pin):
        await ctx.tick()
    for _ in range(div // 2):
        await ctx.tick()
    assert ctx.get(pin) == 0, "start bit too short"
    value = 0
    for i in range(9):
        for _ in range(div):
            await ctx.tick()
        if i < 8:
            value |= ctx.get(pin) << i
        else:
            assert ctx.get(pin) == 1, "stop bit is 0"
    return value


# --- UART ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("div", [3, 4, 7, 16])
def test_uart_loopback_back_to_back(div):
    m = Module()
    m.submodules.tx = tx = UARTTx(div)
    m.submodules.rx = rx = UARTRx(div)
    m.d.comb += rx.rx.eq(tx.tx)
    data = bytes(np.random.default_rng(div).integers(0, 256, 40).tolist()) + b"\x00\xff\x55\xaa"
    got, starts = [], []

    async def sender(ctx):
        for b in data:
            ctx.set(tx.inp.payload, b)
            ctx.set(tx.inp.valid, 1)
            await ctx.tick().until(tx.inp.ready)
            starts.append(ctx.get(tx.busy))
        ctx.set(tx.inp.valid, 0)

    async def receiver(ctx):
        ctx.set(rx.out.ready, 1)
        for _ in data:
            payload, overrun = await ctx.tick().sample(rx.out.payload, rx.overrun).until(rx.out.valid)
            got.append((int(payload.data), int(payload.error)))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(sender)
    sim.add_testbench(receiver)
    sim.run_until(len(data) * 10 * div * 1e-6 + 1e-4)
    assert got == [(b, 0) for b in data]


def test_uart_tx_sends_back_to_back_at_exactly_ten_bits_per_byte():
    div = 5
    tx = UARTTx(div)
    line = []

    async def testbench(ctx):
        ctx.set(tx.inp.valid, 1)
        for b in (0x41, 0x00, 0xFF):
            ctx.set(tx.inp.payload, b)
            await ctx.tick().until(tx.inp.ready)
        ctx.set(tx.inp.valid, 0)

    async def probe(ctx):
        while True:
            await ctx.tick()
            line.append(ctx.get(tx.tx))

    sim = Simulator(tx)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.add_testbench(probe, background=True)
    sim.run_until(40 * div * 1e-6)
    start = line.index(0)
    bits = line[start:start + 30 * div:div]
    expected = [b for byte in (0x41, 0x00, 0xFF) for b in [0, *((byte >> i) & 1 for i in range(8)), 1]]
    assert bits == expected
    assert all(v == 1 for v in line[start + 30 * div:])  # idle high after the last stop bit


def _rx_run(div, script, ready=True):
    """Run UARTRx with ``script(ctx, pin)`` driving its pin; returns [(data, error)] and overruns."""
    rx = UARTRx(div)
    got, overruns = [], []

    async def driver(ctx):
        await script(ctx, rx.rx)
        await ctx.tick().repeat(12 * div)

    async def monitor(ctx):
        ctx.set(rx.out.ready, int(ready))
        while True:
            if ctx.get(rx.out.valid) and ready:
                got.append((ctx.get(rx.out.payload.data), ctx.get(rx.out.payload.error)))
            if ctx.get(rx.overrun):
                overruns.append(1)
            await ctx.tick()

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(driver)
    sim.add_testbench(monitor, background=True)
    sim.run()
    return got, len(overruns), rx


def test_uart_rx_framing_error_then_recovers():
    div = 8

    async def script(ctx, pin):
        await send_bits(ctx, pin, 0x5A, div, stop=0)  # stop bit missing
        await ctx.tick().repeat(div)  # the line idles for a bit: the receiver finds the next start
        await send_bytes(ctx, pin, b"\x33", div)

    got, _, _ = _rx_run(div, script)
    assert got[0][1] == 1 and got[1:] == [(0x33, 0)]


def test_uart_rx_break_is_one_error_and_glitches_are_ignored():
    div = 8

    async def script(ctx, pin):
        ctx.set(pin, 0)  # a break: the line held low for 50 bit times
        await ctx.tick().repeat(50 * div)
        ctx.set(pin, 1)
        await ctx.tick().repeat(3 * div)
        ctx.set(pin, 0)  # a glitch shorter than half a bit
        await ctx.tick().repeat(div // 2 - 2)
        ctx.set(pin, 1)
        await ctx.tick().repeat(3 * div)
        await send_bytes(ctx, pin, b"\x81", div)

    got, _, _ = _rx_run(div, script)
    assert got == [(0, 1), (0x81, 0)]


@pytest.mark.parametrize("error", [-0.035, 0.035])
def test_uart_rx_tolerates_a_sender_a_few_percent_off(error):
    div = 16
    # bit boundaries of a sender at (1 + error) times the period, rounded to whole cycles
    edges = np.round(np.arange(11) * div * (1 + error)).astype(int)
    cycles = np.diff(edges).tolist()
    data = b"\x00\xff\xa5\x5a\x01\x80"

    async def script(ctx, pin):
        for b in data:
            await send_bits(ctx, pin, b, cycles)

    got, _, _ = _rx_run(div, script)
    assert got == [(b, 0) for b in data]


def test_uart_rx_overrun_keeps_the_first_byte():
    div = 4

    async def script(ctx, pin):
        await send_bytes(ctx, pin, b"\x11\x22\x33", div)

    got, overruns, _ = _rx_run(div, script, ready=False)
    assert overruns == 2


def test_uart_rejects_divisors_below_three():
    with pytest.raises(ValueError, match="divisor"):
        UARTRx(2)
    with pytest.raises(ValueError, match="divisor"):
        UARTTx(1)


# --- protocol -------------------------------------------------------------------------------------------

def test_crc8_is_the_smbus_crc():
    assert P.crc8(b"123456789") == 0xF4  # the catalogued check value of CRC-8/SMBUS
    assert P.crc8(b"\x01") == 0x07  # x^8 mod (x^8 + x^2 + x + 1)
    assert P.crc8(b"\x80") == 0x89  # x^15 mod the same, by long division
    assert P.crc8(b"") == 0 and P.check_bytes(0xF4) == b"\x74\x01"


def test_frames_encode_and_parse_back():
    frame = P.encode(P.Reply.RESULT_FULL, (1 << 150) | 0x5, 151)
    assert len(frame) == 1 + 21 + 2 and frame[0] == 0x95 and all(b < 0x80 for b in frame[1:])
    assert frame[-2:] == P.check_bytes(P.crc8(frame[:-2]))
    reader = P.FrameReader(P.board_lengths(3, 151))
    frames = reader.feed(frame[:10]) + reader.feed(frame[10:])
    assert [(f.type, f.payload) for f in frames] == [(P.Reply.RESULT_FULL, (1 << 150) | 0x5)]
    assert P.encode(P.Reply.RESULT, 5, 3) == b"\x85" + P.check_bytes(P.crc8(b"\x85"))
    with pytest.raises(ValueError, match="does not fit"):
        P.encode(P.Cmd.STEP, 1 << 4, 4)


def test_reader_reports_garbage_truncation_unknown_types_and_bad_crcs_then_resyncs():
    reader = P.FrameReader(P.board_lengths(3, 151))
    status = P.encode(P.Reply.STATUS, 0, P.STATUS_BITS)
    bad = bytearray(status)
    bad[3] ^= 0x10
    data = (b"\x01\x02" + status[:4] + b"\xe0\x05" + P.encode(P.Reply.RESULT, 3, 3) + bytes(bad) + b"\x05\x06"
            + status)
    kinds = [f.type for f in reader.feed(data)]
    assert kinds == ["garbage", "truncated", "unknown", P.Reply.RESULT, "corrupt", P.Reply.STATUS]


def _flips(frame: bytes, most: int):
    """``frame`` with every set of 1..``most`` flipped bits (bit 7 of each byte included)."""
    from itertools import combinations

    positions = range(8 * len(frame))
    for k in range(1, most + 1):
        for bits in combinations(positions, k):
            bad = bytearray(frame)
            for b in bits:
                bad[b // 8] ^= 1 << (b % 8)
            yield bytes(bad)


@pytest.mark.parametrize("frame, lengths", [
    (P.encode(P.Cmd.STEP_FIRST, 0b1011, 4), P.command_lengths(4)),  # an ECG step
    (P.encode(P.Cmd.STEP, 0xA7, 8), P.command_lengths(8)),  # an S-MNIST pixel
    (P.sync_frame(0x2A), P.command_lengths(4)),
    (P.encode(P.Reply.RESULT, 0b101, 3), P.board_lengths(3, 151)),
    (P.encode(P.Reply.STATUS, 0x123456789, P.STATUS_BITS), P.board_lengths(3, 151)),
])
def test_no_one_to_three_bit_error_gives_a_frame(frame, lengths):
    """Every pattern of up to 3 flipped bits in a frame (up to 2 in the 14-byte STATUS) yields
    no frame at all, only link errors, and the next frame is read as sent: never a wrong value."""
    after = P.encode(P.Reply.ERROR, 0) if P.Reply.ERROR in lengths else P.encode(P.Cmd.STATUS)
    n = 0
    for bad in _flips(frame, 3 if len(frame) < 6 else 2):
        got = P.FrameReader(lengths).feed(bad + after)
        assert [(f.type, f.raw) for f in got if not isinstance(f.type, str)] == [(after[0] >> 4 & 7, after)], \
            (bad.hex(), got)
        assert any(isinstance(f.type, str) for f in got)
        n += 1
    assert n >= 8 * len(frame) * (8 * len(frame) - 1) // 2


def test_fields_pack_and_unpack_signed_values():
    fields = (P.Field("a", 4), P.Field("b", 8, True), P.Field("c", 3))
    word = P.pack(fields, {"a": 9, "b": -2, "c": 5})
    assert word == 9 | (0xFE << 4) | (5 << 12)
    assert P.unpack(fields, word) == {"a": 9, "b": -2, "c": 5}
    with pytest.raises(ValueError, match="b = 200"):
        P.pack(fields, {"a": 0, "b": 200, "c": 0})


def test_step_frames_are_one_byte_for_four_inputs_and_general_beyond():
    rng = np.random.default_rng(1)
    x = (rng.random((50, 4)) < 0.5).astype(int)
    first = np.zeros(50, bool)
    first[[0, 20]] = True
    fast = P.step_frames(x, first)
    assert fast == b"".join(P.encode(P.Cmd.STEP_FIRST if f else P.Cmd.STEP, int(sum(int(v) << i for i, v in enumerate(r))), 4)
                            for r, f in zip(x, first))
    wide = P.step_frames((rng.random((3, 12)) < 0.5).astype(int), np.array([1, 0, 0], bool))
    assert len(wide) == 3 * 5 and wide[0] >> 4 == 0x9 and wide[5] >> 4 == 0x8
    pixels = np.array([[0xA7], [0x00], [0xFF]])  # u8 inputs: 4 bits in the header, 4 in a data byte
    frames = P.step_frames(pixels, np.array([1, 0, 0], bool), input_bits=8)
    assert frames[:3] == bytes([0x97, 0x0A, P.crc8(b"\x97\x0a") & 0x7F])
    assert [(f.type, f.payload) for f in P.FrameReader(P.command_lengths(8)).feed(frames)] == [
        (P.Cmd.STEP_FIRST, 0xA7), (P.Cmd.STEP, 0), (P.Cmd.STEP, 0xFF)]
    with pytest.raises(ValueError, match="unsigned 8-bit"):
        P.step_frames(np.array([[256]]), np.array([True]), input_bits=8)


def test_identity_and_status_sizes():
    assert P.frame_bytes(P.IDENTITY_BITS) == 1 + 66 + 2
    assert P.frame_bytes(P.STATUS_BITS) == 1 + 11 + 2
    assert P.sync_frame(0x55) == bytes([0xB0, ord("B"), ord("R"), 0x55]) + P.check_bytes(
        P.crc8(bytes([0xB0, ord("B"), ord("R"), 0x55])))


# --- the board link in Amaranth's simulator ------------------------------------------------------------

@pytest.fixture(scope="module")
def ecg_artifact():
    net, manifest = load_artifact(shipped_artifact())
    return net, manifest["sha256"]


class LinkHost:
    """The host side of a simulated BoardLink at the UART bit level: ``send`` bytes on its rx pin,
    ``frames(n)`` waits for n frames from its tx pin."""

    def __init__(self, ctx, link, div, received, reader):
        self.ctx, self.link, self.div, self.received, self.reader = ctx, link, div, received, reader
        self.frames_seen = []
        self.parsed = 0

    async def send(self, data: bytes):
        await send_bytes(self.ctx, self.link.rx, data, self.div)

    def _parse(self):
        new = self.received[self.parsed:]
        self.parsed = len(self.received)
        self.frames_seen += self.reader.feed(bytes(new))

    async def frames(self, n: int, max_cycles: int = 200_000) -> list:
        start = len(self.frames_seen)
        for _ in range(max_cycles // 16):
            self._parse()
            if len(self.frames_seen) - start >= n:
                return self.frames_seen[start:start + n]
            await self.ctx.tick().repeat(16)
        raise AssertionError(f"timed out waiting for {n} frames; got {self.frames_seen[start:]}")

    async def idle(self, cycles):
        await self.ctx.tick().repeat(cycles)
        self._parse()


def run_link(link, script, div):
    received = []
    reader = P.FrameReader(P.board_lengths(P.result_bits(link.core.net), link.core.output_layout.size))

    async def receiver(ctx):
        while True:
            received.append(await receive_byte(ctx, link.tx, div))

    async def testbench(ctx):
        await ctx.tick().repeat(4)
        await script(LinkHost(ctx, link, div, received, reader))

    sim = Simulator(link)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.add_testbench(receiver, background=True)
    sim.run()


def _label_frames(labels):
    return [(P.Reply.RESULT, int(v)) for v in labels]


def test_link_identity_sync_and_ecg_steps_match_golden(ecg_artifact, ecg_splits):
    net, sha = ecg_artifact
    div = 3
    link = BoardLink(net, sha, clock_hz=12e6, divisor=div, fifo_depth=32, timeout_cycles=400)
    inputs = ecg_splits["test"].inputs.numpy().astype(np.int64)
    x = np.concatenate([inputs[0, :25], inputs[1, :20]])
    first = np.zeros(len(x), bool)
    first[[0, 25]] = True
    gold = golden.run_stream(net, x, first)

    async def script(host):
        await host.send(P.sync_frame(0x2A))
        ack, = await host.frames(1)
        assert (ack.type, ack.payload) == (P.Reply.SYNC_ACK, P.PROTOCOL_VERSION | 0x2A << 4)
        await host.send(P.encode(P.Cmd.IDENTIFY))
        ident, = await host.frames(1)
        assert ident.type == P.Reply.IDENTITY and len(ident.raw) == 69
        assert P.unpack(P.IDENTITY_FIELDS, ident.payload) == link.identity_values
        await host.send(P.step_frames(x[:30], first[:30]))  # label mode
        got = await host.frames(30)
        assert [(f.type, f.payload) for f in got] == _label_frames(gold.predictions[:30])
        await host.send(P.encode(P.Cmd.MODE, P.Mode.FULL) + P.step_frames(x[30:], first[30:]))
        got = await host.frames(len(x) - 30)
        layout = link.core.output_layout
        for t, f in zip(range(30, len(x)), got):
            assert f.type == P.Reply.RESULT_FULL
            beat = layout.from_bits(f.payload)
            assert int(beat.label) == gold.predictions[t]
            assert [int(beat.potentials[k]) for k in range(6)] == gold.outputs[t].tolist()
            assert int(beat.spikes) == sum(int(z) << h for h, z in enumerate(gold.spikes[t]))
        await host.send(P.encode(P.Cmd.STATUS))
        status, = await host.frames(1)
        values = P.unpack(P.STATUS_FIELDS, status.payload)
        assert values == {"mode": 1, "steps": len(x), "framing": 0, "garbage": 0, "truncated": 0,
                          "bad_frame": 0, "overrun": 0, "crc": 0}

    run_link(link, script, div)


def _error(code):
    return (P.Reply.ERROR, int(code))


def test_link_errors_are_reported_and_the_stream_goes_on(ecg_artifact, ecg_splits):
    net, sha = ecg_artifact
    div, timeout = 3, 300
    link = BoardLink(net, sha, clock_hz=12e6, divisor=div, fifo_depth=32, timeout_cycles=timeout)
    x = ecg_splits["test"].inputs.numpy().astype(np.int64)[2, :24]
    gold = golden.run_stream(net, x)
    restart = golden.run_stream(net, x[12:])  # after a SYNC the next step starts a sequence

    async def script(host):
        pairs = lambda fs: [(f.type, f.payload) for f in fs]  # noqa: E731
        await host.send(P.sync_frame(1))
        await host.frames(1)
        await host.send(b"\x15\x16\x17")  # data bytes outside a frame: one report
        assert pairs(await host.frames(1)) == [_error(P.Error.GARBAGE)]
        await send_bits(host.ctx, link.rx, 0x85, div, stop=0)  # no stop bit
        await host.idle(2 * div)
        assert pairs(await host.frames(1)) == [_error(P.Error.FRAMING)]
        await host.send(P.sync_frame(1)[:2] + P.step_frames(x[:1], [True]))  # SYNC cut short by a STEP
        assert pairs(await host.frames(2)) == [_error(P.Error.TRUNCATED), (P.Reply.RESULT, gold.predictions[0])]
        await host.send(b"\xe0\x01\x02")  # a reserved frame type and its data bytes: one report
        assert pairs(await host.frames(1)) == [_error(P.Error.BAD_FRAME)]
        bs = P.encode(P.Cmd.SYNC, ord("B") << 4 | ord("S") << 11, P.SYNC_BITS)
        for bad in (P.encode(P.Cmd.IDENTIFY, 3), P.encode(P.Cmd.MODE, 9), bs):  # a payload, MODE 9, SYNC "BS"
            await host.send(bad)
            assert pairs(await host.frames(1)) == [_error(P.Error.BAD_FRAME)]
        await host.send(P.sync_frame(1)[:2])  # a frame that never ends: dropped after the timeout
        await host.idle(timeout + 40 * div)
        assert pairs(host.frames_seen[-1:]) == [_error(P.Error.TRUNCATED)]
        await host.send(P.sync_frame(1)[2:])  # its late bytes are dropped silently
        await host.send(P.step_frames(x[1:12], np.zeros(11, bool)) + P.encode(P.Cmd.STATUS))
        got = await host.frames(12)
        assert pairs(got[:11]) == _label_frames(gold.predictions[1:12])  # the sequence went on
        assert P.unpack(P.STATUS_FIELDS, got[11].payload) == {
            "mode": 0, "steps": 12, "framing": 1, "garbage": 1, "truncated": 2, "bad_frame": 4, "overrun": 0,
            "crc": 0}
        await host.send(P.sync_frame(5) + P.step_frames(x[12:], np.zeros(12, bool)) + P.encode(P.Cmd.STATUS))
        got = await host.frames(14)
        assert (got[0].type, got[0].payload >> 4) == (P.Reply.SYNC_ACK, 5)
        assert pairs(got[1:13]) == _label_frames(restart.predictions)
        assert P.unpack(P.STATUS_FIELDS, got[13].payload)["steps"] == 12  # counters cleared by the SYNC
        assert host.ctx.get(link.led_error) == 0

    run_link(link, script, div)


def test_link_drops_frames_with_flipped_bits_and_reports_crc_errors(ecg_artifact, ecg_splits):
    """Steps and commands with a flipped payload, type or check bit: the board runs none of them,
    reports a CRC error for each (a flipped type that lengthens the frame: TRUNCATED at the next
    header), and the sequence goes on from the steps it did run."""
    net, sha = ecg_artifact
    div = 3
    link = BoardLink(net, sha, clock_hz=12e6, divisor=div, fifo_depth=32, timeout_cycles=400)
    x = ecg_splits["test"].inputs.numpy().astype(np.int64)[5, :12]
    first = np.eye(1, 12, dtype=bool)[0]
    kept = [0, 1, 2, 4, 6, 8, 9, 10, 11]  # steps 3, 5 and 7 are corrupted on the way
    gold = golden.run_stream(net, x[kept], first[kept])
    frames = P.step_frames(x, first)
    per = len(frames) // len(x)
    assert per == 3

    def flipped(t, byte, *bits):
        bad = bytearray(frames[t * per:(t + 1) * per])
        for bit in bits:
            bad[byte] ^= 1 << bit
        return bytes(bad)

    async def script(host):
        pairs = lambda fs: [(f.type, f.payload) for f in fs]  # noqa: E731
        await host.send(P.sync_frame(3))
        await host.frames(1)
        await host.send(frames[:3 * per] + flipped(3, 0, 1))  # an input bit of step 3
        assert pairs(await host.frames(4)) == _label_frames(gold.predictions[:3]) + [_error(P.Error.CRC)]
        await host.send(frames[4 * per:5 * per] + flipped(5, 1, 6))  # a check bit of step 5
        assert pairs(await host.frames(2)) == _label_frames(gold.predictions[3:4]) + [_error(P.Error.CRC)]
        await host.send(frames[6 * per:7 * per] + flipped(7, 0, 4, 5))  # STEP -> SYNC: 3 bytes longer
        await host.send(frames[8 * per:])
        got = await host.frames(6)
        assert pairs(got) == (_label_frames(gold.predictions[4:5]) + [_error(P.Error.TRUNCATED)]
                              + _label_frames(gold.predictions[5:]))
        bad = bytearray(P.encode(P.Cmd.MODE, P.Mode.FULL))
        bad[2] ^= 1  # MODE FULL with C1 flipped: not executed, the results stay labels
        await host.send(bytes(bad) + P.step_frames(x[:1], [False]) + P.encode(P.Cmd.STATUS))
        got = await host.frames(3)
        assert got[0].type == P.Reply.ERROR and got[0].payload == P.Error.CRC and got[1].type == P.Reply.RESULT
        assert P.unpack(P.STATUS_FIELDS, got[2].payload) == {
            "mode": 0, "steps": 10, "framing": 0, "garbage": 0, "truncated": 1, "bad_frame": 0, "overrun": 0,
            "crc": 3}

    run_link(link, script, div)


def test_link_overrun_is_reported_and_sync_recovers(ecg_artifact, ecg_splits):
    net, sha = ecg_artifact
    div = 3
    link = BoardLink(net, sha, clock_hz=12e6, divisor=div, fifo_depth=4, timeout_cycles=300)
    x = ecg_splits["test"].inputs.numpy().astype(np.int64)[4, :40]
    gold = golden.run_stream(net, x[20:])

    async def script(host):
        # full results (22 bytes each) drain far slower than 1-byte steps arrive: the FIFO overruns
        await host.send(P.encode(P.Cmd.MODE, P.Mode.FULL) + P.step_frames(x[:14], np.eye(1, 14, dtype=bool)[0]))
        await host.idle(14 * 22 * 10 * div)
        kinds = [(f.type, f.payload) for f in host.frames_seen]
        assert _error(P.Error.OVERRUN) in kinds
        assert host.ctx.get(link.led_error) == 1
        await host.send(P.sync_frame(9))
        await host.idle(40 * 10 * div)
        acks = [i for i, f in enumerate(host.frames_seen) if f.type == P.Reply.SYNC_ACK]
        assert len(acks) == 1
        host.frames_seen = host.frames_seen[:acks[0] + 1]
        got = []
        for k in range(20, 40, 4):  # paced as the host does: never more steps outstanding than the FIFO holds
            await host.send(P.step_frames(x[k:k + 4], np.zeros(4, bool)))
            got += await host.frames(4)
        assert [(f.type, f.payload) for f in got] == _label_frames(gold.predictions)
        assert host.ctx.get(link.led_error) == 0

    run_link(link, script, div)


def test_link_with_multi_byte_step_frames(tmp_path):
    """A 9-input random network: step frames of a header and a data byte, one cut short."""
    import torch

    from brf_hw.artifact import save_artifact
    from brf_hw.fixed import FixedSpec, Format
    from brf_hw.fixed.qat import to_int_network
    from brf_hw.hw.core import cycle_model
    from brf_hw.model import ModelConfig, build_model

    model = build_model(ModelConfig(9, 5, 3), seed=3)
    with torch.no_grad():
        model.synapses.weight.mul_(300.0)
    spec = FixedSpec(weight=Format(6, 3), rec_weight=Format(6, 4), out_weight=Format(6, 3))
    path = save_artifact(tmp_path / "r9.npz", to_int_network(model, spec), task="random", dt=0.01, theta=1.0,
                         gamma=0.9)
    net, manifest = load_artifact(path)
    div = 4
    link = BoardLink(net, manifest["sha256"], clock_hz=1e6, divisor=div, fifo_depth=64, timeout_cycles=200,
                     lanes=2, segments=1)
    x = (np.random.default_rng(2).random((16, 9)) < 0.4).astype(np.int64)
    first = np.eye(1, 16, dtype=bool)[0]
    gold = golden.run_stream(net, x, first)
    frames = P.step_frames(x, first)
    per = 4  # header, one data byte, two check bytes
    assert len(frames) == 16 * per

    async def script(host):
        await host.send(P.encode(P.Cmd.MODE, P.Mode.FULL) + frames[:8 * per])
        got = await host.frames(8)
        await host.send(frames[8 * per:8 * per + 2])  # a header and its data byte without the CRC, then the next step
        await host.send(frames[9 * per:])
        got += await host.frames(8)
        assert got[8].type == P.Reply.ERROR and got[8].payload == P.Error.TRUNCATED
        got = got[:8] + got[9:]
        kept = [t for t in range(16) if t != 8]
        expected = golden.run_stream(net, x[kept], first[kept])  # step 8 never ran
        for i, (t, f) in enumerate(zip(kept, got)):
            beat = link.core.output_layout.from_bits(f.payload)
            assert int(beat.label) == expected.predictions[i]
            assert [int(beat.potentials[k]) for k in range(3)] == expected.outputs[i].tolist()
            per_chunk = chunk_spikes(expected.spikes[i], link.core.lanes, link.core.chunks)
            assert int(beat.cycles) == cycle_model(int(x[t].sum()), per_chunk, 3, 1)
        assert gold.spikes.sum() > 5

    run_link(link, script, div)


def test_link_with_u8_inputs_and_a_mean_readout(tmp_path):
    """Two u8 inputs (a step payload of 16 bits: header and two data bytes) into a random network
    with a mean readout: RESULT carries the label and the running sums' argmax, RESULT_FULL the
    sum label too; both equal the golden model."""
    from brf_hw.artifact import save_artifact
    from brf_hw.fixed.spec import Readout

    from test_tasks_chain import tiny_net

    r = np.random.default_rng(0)
    net = tiny_net(r.integers(-3, 4, (6, 2)), 8, Readout.for_steps("mean", 16, 64), w_out=r.integers(-60, 60, (4, 6)),
                   hidden=6, outputs=4)
    path = save_artifact(tmp_path / "u8.npz", net, task="random", dt=0.01, theta=1.0, gamma=0.9)
    net, manifest = load_artifact(path)
    div = 3
    link = BoardLink(net, manifest["sha256"], clock_hz=1e6, divisor=div, fifo_depth=64, timeout_cycles=300)
    assert link.identity_values["input_bits"] == 8 and link.identity_values["result_bits"] == 4
    x = np.random.default_rng(4).integers(0, 256, (14, 2))
    first = np.eye(1, 14, dtype=bool)[0]
    gold = golden.run_stream(net, x, first)
    sums = gold.sums.argmax(-1)
    assert len(set(gold.predictions.tolist())) > 1 and (sums != gold.predictions).any()  # not constant, not equal
    frames = P.step_frames(x, first, input_bits=8)
    assert len(frames) == 14 * 5

    async def script(host):
        await host.send(frames[:10 * 5])
        got = await host.frames(10)
        assert [(f.type, f.payload) for f in got] == [(P.Reply.RESULT, int(a) | int(b) << 2)
                                                      for a, b in zip(gold.predictions[:10], sums[:10])]
        await host.send(P.encode(P.Cmd.MODE, P.Mode.FULL) + frames[10 * 5:])
        for t, f in zip(range(10, 14), await host.frames(4)):
            beat = link.core.output_layout.from_bits(f.payload)
            assert (int(beat.label), int(beat.sum_label)) == (gold.predictions[t], sums[t])
            assert [int(beat.potentials[k]) for k in range(4)] == gold.outputs[t].tolist()

    run_link(link, script, div)


# --- the board top in cocotb (Icarus, Verilator) and the host against it ---------------------------------

SIMULATORS = ["icarus", "verilator"]
SHIPPED_SHA = load_artifact(shipped_artifact())[1]["sha256"]  # the board's identity carries its prefix


@pytest.fixture(scope="module")
def board_designs(tmp_path_factory):
    """The board top built once per simulator for all tests of this module."""
    from brf_hw.board import rtl_sim as board_bridge

    built = {}

    def get(simulator):
        if simulator not in built:
            built[simulator] = board_bridge.build(simulator, tmp_path_factory.mktemp(f"board_{simulator}"))
        return built[simulator]

    return get


@pytest.fixture(params=SIMULATORS)
def board_design(request, board_designs):
    return board_designs(request.param)


@pytest.mark.sim
def test_board_ecg_sequences_errors_and_resync_at_the_uart_bit_level(board_design, ecg_splits):
    """Two ECG sequences (300 steps each) in label mode and one (40 steps) in full mode equal the
    golden model; framing error, garbage, truncated frames, reserved frames, restarts and a reset
    mid-step give the documented answers and the stream goes on; 24 of 160 steps with bits flipped
    on the line are dropped and reported, the others equal the golden model
    (brf_hw/board/testbench.py)."""
    from brf_hw.board import rtl_sim as board_bridge

    test = ecg_splits["test"]
    case = board_bridge.ecg_case(test.inputs.numpy().astype(np.int64), test.labels.numpy())
    measured = board_bridge.run_tests(board_design, case)
    assert measured["steps"] == 600
    # the slower of the accelerator (the period model's mean over these steps, LI beside the next
    # step) and the UART (10 bits per byte, a 3-byte frame each way per step: 120 cycles at 4 cycles
    # per bit, link-bound since the CRC), plus a little for the stream's start and the frames' edges
    net = load_artifact(board_design.artifact)[0]
    x, first = case["x_label"], case["first_label"]
    spikes = golden.run_stream(net, x, first).spikes
    cfg = board_design.config
    model = expected_cycles(net, x, spikes, cfg["lanes"], cfg["segments"], period_model).mean()
    link = 10 * cfg["divisor"] * max(P.frame_bytes(net.shape[0]), P.frame_bytes(P.result_bits(net)))
    assert link == 120
    assert max(model, link) <= measured["cycles_per_step"] < 1.03 * max(model, link)


@pytest.mark.sim
def test_host_against_the_simulated_board(board_designs, tmp_path, capsys):
    """brf-hw host through a localhost socket bridge to the board top under Verilator:
    identity check, two truncated ECG sequences, every label (and, in full mode, every potential
    and hidden spike) equal to the golden model."""
    from brf_hw.board import rtl_sim as board_bridge

    from brf_hw.board import host

    design = board_designs("verilator")
    for full in (False, True):
        port_file = tmp_path / f"port_{full}"
        thread = board_bridge.serve(design, 0, port_file, seconds=120, accept_seconds=60, name=f"bridge_{full}")
        port = board_bridge.wait_for_port(port_file, thread)
        args = ["--port", f"socket://127.0.0.1:{port}", "--task", "ecg", "--sequences", "2", "--steps",
                "40" if full else "150", "--timeout", "20"]
        assert host.main(args + (["--full"] if full else [])) == 0
        thread.join(60)
        assert not thread.is_alive() and not thread.errors
        out = capsys.readouterr().out
        assert f"network {SHIPPED_SHA[:16]} 4-36-6" in out
        assert "every label" in out and "equals the golden model" in out
        if full:
            assert "potential and hidden spike" in out and "cycles per step" in out


@pytest.mark.sim
def test_host_refuses_a_board_with_another_network(board_designs, tmp_path, capsys):
    from brf_hw.board import rtl_sim as board_bridge

    from brf_hw.board import host

    design = board_designs("icarus")  # the shipped 8-bit network
    port_file = tmp_path / "port"
    thread = board_bridge.serve(design, 0, port_file, seconds=60, accept_seconds=60, name="bridge_refuse")
    port = board_bridge.wait_for_port(port_file, thread)
    w4 = shipped_artifact("ecg", 4)
    assert host.main(["--port", f"socket://127.0.0.1:{port}", "--artifact", str(w4), "--sequences", "1",
                      "--steps", "5"]) == 2
    thread.join(60)
    err = capsys.readouterr().err
    assert "refusing: the board holds another network than ecg_brf_w4.npz" in err
    assert f"sha256: board {SHIPPED_SHA[:16]}" in err and "weight_bits: board 8, expected 4" in err


# --- build: platforms and build plans (no place and route here: `make bitstream` runs the tools) ---------

@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-25f"])
def test_board_tops_elaborate_into_build_plans(board, ecg_artifact, tmp_path, monkeypatch):
    pytest.importorskip("amaranth_boards")
    from brf_hw.board.platforms import get_board
    from brf_hw.board.top import BoardTop
    from brf_hw.board.build import divisor_for, tool

    monkeypatch.chdir(tmp_path)  # ecppll writes its file here, relative (YoWASP sees the working directory)
    b = get_board(board)
    net, sha = ecg_artifact
    b.prepare(Path("."), tool)
    link = BoardLink(net, sha, clock_hz=b.clock_hz, divisor=divisor_for(b.clock_hz, 3_000_000))
    plan = b.platform().build(BoardTop(b, link), name="brf_board", do_build=False)
    constraints = plan.files["brf_board.pcf" if board == "icebreaker" else "brf_board.lpf"]
    constraints = constraints.decode() if isinstance(constraints, bytes) else constraints
    if board == "icebreaker":
        assert link.divisor == 4
        for pin in ("set_io uart_0__rx__io 6", "set_io uart_0__tx__io 9", "set_io clk12_0__io 35"):
            assert pin in constraints
        assert "set_frequency" in constraints
    else:
        assert link.divisor == 25 and b._pll["CLKOP_DIV"] * 75 >= 400  # VCO in range
        for site in ('"uart_0__rx__io" SITE "M1"', '"uart_0__tx__io" SITE "L4"', '"clk25_0__io" SITE "G2"'):
            assert site in constraints
        assert 'FREQUENCY PORT "clk25_0__io" 25000000' in constraints  # nextpnr derives the PLL's 75 MHz


def test_build_checks_baud_rates_and_boards():
    from brf_hw.board.platforms import get_board
    from brf_hw.board.build import divisor_for
    from brf_hw.cli_util import UserError

    assert divisor_for(12e6, 3_000_000) == 4 and divisor_for(12e6, 115_200) == 104
    assert divisor_for(75e6, 115_200) == 651
    with pytest.raises(UserError, match="fewer than 3"):
        divisor_for(12e6, 6_000_000)
    with pytest.raises(UserError, match="off"):
        divisor_for(12e6, 2_000_000 - 200_000)
    with pytest.raises(ValueError, match="unknown board"):
        get_board("orangecrab")
    with pytest.raises(ValueError, match="12 MHz"):
        get_board("icebreaker", 24)


# --- the host against a protocol-level model of the board (fast) ----------------------------------------

class FakeBoard:
    """A pyserial-like port that answers as the board does, from the golden model (any input
    format and readout, label mode). It drops the ``fail_at``-th step it receives and reports a
    CRC error for it, as the board does for a step frame with a flipped bit; ``flip_at``: it
    flips a bit in that step's RESULT on the way back (the host must catch it by the CRC)."""

    def __init__(self, net, identity: dict, fail_at: int | None = None, flip_at: int | None = None):
        self.net, self.identity, self.fail_at, self.flip_at = net, identity, fail_at, flip_at
        self.bits = identity["input_bits"]
        self.reader = P.FrameReader(P.command_lengths(net.shape[0] * self.bits))
        self.out = bytearray()
        self.seq: list = []
        self.done = 0  # steps of self.seq answered
        self.flip_steps: set = set()
        self.steps = self.seen = 0
        self.force_first = True
        self.in_waiting = 0

    def _answer_steps(self):
        """RESULTs of the steps received so far, from one golden run over the sequence."""
        if self.done < len(self.seq):
            gold = golden.run_stream(self.net, np.array(self.seq))
            lb = P.label_bits(self.net.shape[2])
            for t in range(self.done, len(self.seq)):
                payload = int(gold.predictions[t])
                if gold.sums is not None:
                    payload |= int(gold.sums[t].argmax()) << lb
                frame = bytearray(P.encode(P.Reply.RESULT, payload, P.result_bits(self.net)))
                if t in self.flip_steps:
                    frame[0] ^= 0x02
                self.out += frame
            self.done = len(self.seq)

    def write(self, data):
        for f in self.reader.feed(data):
            if f.type in (P.Cmd.STEP, P.Cmd.STEP_FIRST):
                self.seen += 1
                if self.seen == self.fail_at:
                    self._answer_steps()
                    self.out += P.encode(P.Reply.ERROR, P.Error.CRC)
                    continue
                if f.type == P.Cmd.STEP_FIRST or self.force_first:
                    self._answer_steps()
                    self.seq, self.done, self.flip_steps, self.force_first = [], 0, set(), False
                if self.seen == self.flip_at:
                    self.flip_steps.add(len(self.seq))
                mask = (1 << self.bits) - 1
                self.seq.append([(f.payload >> (i * self.bits)) & mask for i in range(self.net.shape[0])])
                self.steps += 1
                continue
            self._answer_steps()
            if f.type == P.Cmd.SYNC:
                self.steps, self.force_first = 0, True
                self.out += P.encode(P.Reply.SYNC_ACK, P.PROTOCOL_VERSION | (f.payload >> 18) << 4, P.SYNC_ACK_BITS)
            elif f.type == P.Cmd.IDENTIFY:
                self.out += P.identity_frame(self.identity)
            elif f.type == P.Cmd.STATUS:
                self.out += P.encode(P.Reply.STATUS, P.pack(P.STATUS_FIELDS, {
                    "mode": 0, "steps": self.steps, **{e.name.lower(): 0 for e in P.Error}}), P.STATUS_BITS)
        self._answer_steps()
        self.in_waiting = len(self.out)
        return len(data)

    def read(self, n):
        data, self.out = bytes(self.out[:n]), self.out[n:]
        self.in_waiting = len(self.out)
        return data

    def reset_input_buffer(self):
        self.out.clear()
        self.in_waiting = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _board_identity(net, sha):
    from brf_hw.board.top import result_layout

    board = {"lanes": 1, "segments": 2, "full_bits": result_layout(net).size, "clock_hz": 12_000_000, "divisor": 4,
             "fifo_depth": 512, "timeout_cycles": 120_000}
    return P.identity_values(net, sha, **board)


def test_host_resynchronises_after_link_errors_and_checks_every_label(ecg_artifact, monkeypatch, capsys):
    from brf_hw.board import host

    net, sha = ecg_artifact
    fake = FakeBoard(net, _board_identity(net, sha), fail_at=45, flip_at=75)
    monkeypatch.setattr(host, "open_port", lambda url, baud: fake)
    assert host.main(["--port", "fake", "--sequences", "4", "--steps", "30", "--window", "8"]) == 0
    captured = capsys.readouterr()
    assert "the board reported: a frame failed its CRC check" in captured.err
    assert "restarting at step 30" in captured.err  # the start of the sequence the error touched
    assert "corrupted reply from the board (corrupt: " in captured.err  # the flipped RESULT bit
    assert "every label equals the golden model (120 steps)" in captured.out
    w4, manifest = load_artifact(shipped_artifact("ecg", 4))
    other = FakeBoard(w4, _board_identity(w4, manifest["sha256"]))
    monkeypatch.setattr(host, "open_port", lambda url, baud: other)
    assert host.main(["--port", "fake", "--sequences", "1", "--steps", "5"]) == 2
    assert "refusing: the board holds another network than" in capsys.readouterr().err


@pytest.mark.parametrize("task, readout", [("smnist", "last"), ("psmnist", "mean")])
def test_host_streams_u8_pixels_and_reads_last_and_mean_readouts(task, readout, monkeypatch, capsys):
    """S-MNIST's u8 pixels go out as 8-bit step payloads; a last readout's class is the last step's
    label, a mean readout's the last step's running-sum label, which RESULT carries too."""
    from brf_hw.board import host

    net, manifest = load_artifact(shipped_artifact(task))
    assert net.readout.rule == readout and net.spec.input.bits == 8
    fake = FakeBoard(net, _board_identity(net, manifest["sha256"]), fail_at=150)
    monkeypatch.setattr(host, "open_port", lambda url, baud: fake)
    assert host.main(["--port", "fake", "--task", task, "--sequences", "3", "--steps", "100"]) == 0
    captured = capsys.readouterr()
    assert f"3 {task} test sequences x 100 steps" in captured.out
    assert f"{readout} readout, over 3 sequences" in captured.out
    every = "every label, sum label" if readout == "mean" else "every label equals"
    assert every in captured.out and "restarting at step 100" in captured.err
    # the same board asked for the ECG network: a network for another task, refused in one line
    assert host.main(["--port", "fake", "--sequences", "1", "--steps", "5"]) == 2
    assert "refusing: the board holds a network for another task than ecg_brf_w8.npz" in capsys.readouterr().err


def test_host_refuses_what_it_cannot_stream(tmp_path, monkeypatch, capsys):
    import torch

    from brf_hw.artifact import save_artifact
    from brf_hw.board import host
    from brf_hw.cli_util import UserError
    from brf_hw.fixed import FixedSpec, Format
    from brf_hw.fixed.qat import to_int_network
    from brf_hw.model import ModelConfig, build_model

    with pytest.raises(UserError, match="holds a network for task 'smnist', not --task 'ecg'"):
        host.main(["--port", "fake", "--task", "ecg", "--artifact", str(shipped_artifact("smnist"))])
    spec = FixedSpec(weight=Format(6, 3), rec_weight=Format(6, 4), out_weight=Format(6, 3))
    net = to_int_network(build_model(ModelConfig(9, 5, 3), seed=3), spec)
    path = save_artifact(tmp_path / "r9.npz", net, task="random", dt=0.01, theta=1.0, gamma=0.9)
    with pytest.raises(UserError, match="cannot stream r9.npz .task 'random'. to a board: unknown task 'random'"):
        host.main(["--port", "fake", "--artifact", str(path)])
    path = save_artifact(tmp_path / "e9.npz", net, task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    with pytest.raises(UserError, match="cannot stream e9.npz .task 'ecg'.*takes 9 inputs"):
        host.main(["--port", "fake", "--artifact", str(path)])


class OldBoard(FakeBoard):
    """A board flashed with a protocol-1 bitstream: no CRC, a 2-byte SYNC_ACK."""

    def write(self, data):
        if data[0] >> 4 == 0xB:  # SYNC: v1's SYNC_ACK, then GARBAGE for the two check bytes it does not know
            self.out += bytes([0xB1, data[3]]) + bytes([0xF2])
            self.in_waiting = len(self.out)
        return len(data)


def test_host_names_a_board_of_another_protocol_version(ecg_artifact, monkeypatch, capsys):
    from brf_hw.board import host

    net, sha = ecg_artifact
    monkeypatch.setattr(host, "open_port", lambda url, baud: OldBoard(net, _board_identity(net, sha)))
    assert host.main(["--port", "fake", "--sequences", "1", "--steps", "5"]) == 2
    assert "the board speaks protocol version 1, this host 2" in capsys.readouterr().err


def test_build_takes_the_artifacts_own_task_for_its_activity_figures(tmp_path):
    from brf_hw.artifact import save_artifact
    from brf_hw.board.build import artifact_task, link_figures
    from brf_hw.cli_util import UserError
    from brf_hw.hw.core import BRFAccelerator

    path = shipped_artifact("smnist")
    net, manifest = load_artifact(path)
    task = artifact_task(net, manifest, path)
    def core(n):
        c = BRFAccelerator(n)
        c._MustUse__silence = True  # only its geometry is wanted
        return c

    fig = link_figures(net, task, core(net), 75e6, 3_000_000)
    assert task == "smnist" and fig["activity"].endswith("smnist test sequences")
    # a u8 pixel: header + 1 data byte + 2 check bytes; a 10-class label: header + 2 check bytes
    assert fig["bytes_per_step"] == {"in": 4, "out_label": 3, "out_full": fig["bytes_per_step"]["out_full"]}
    assert fig["link_steps_per_s_label_mode"] == 3_000_000 / 10 / 4
    ecg, ecg_manifest = load_artifact(shipped_artifact())
    ecg_fig = link_figures(ecg, artifact_task(ecg, ecg_manifest, shipped_artifact()), core(ecg), 75e6, 3_000_000)
    assert ecg_fig["activity"].endswith("ecg test sequences") and ecg_fig["bytes_per_step"]["in"] == 3
    wrong = save_artifact(tmp_path / "w.npz", net, task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    with pytest.raises(UserError, match="w.npz .task 'ecg'.: the network takes 1 inputs"):
        artifact_task(*load_artifact(wrong), wrong)


def test_crc8_detects_any_one_to_three_bit_error_within_127_bits():
    """Why frames of up to 14 bytes (119 message bits + 8 check bits) are safe against 1-3 flipped
    bits: no two of x^i mod g (i < 127) are equal, and g = (x + 1) p(x) catches every odd count."""
    residues, c = [], 1
    for _ in range(128):
        residues.append(c)
        c = ((c << 1) ^ (0x100 | P.CRC_POLY)) if c & 0x80 else c << 1
    assert len(set(residues[:127])) == 127  # every 2-bit error within 127 bits changes the CRC
    assert residues[127] == residues[0]  # and 127 apart one does not: the limit stated in protocol.py
    assert P.crc8(b"\x07") == P.crc8(b"\x00") ^ P.crc8(b"\x07")  # linear, so single errors = residues
    for data in (b"\x8b\x01", b"\x93\x00\x22", bytes(range(14))):  # every single flip changes the CRC
        for bit in range(8 * len(data)):
            bad = bytearray(data)
            bad[bit // 8] ^= 1 << (bit % 8)
            assert P.crc8(bytes(bad)) != P.crc8(data)
