"""The board's framing logic (Amaranth 0.5): received bytes -> frames -> accelerator steps and
commands; results, answers and error reports -> frames -> bytes to send. The frame format and
every code are ``protocol``'s; this module only implements them.

FrameDecoder: one received byte per cycle while it is collecting a frame; a complete STEP frame is
held on ``step`` until the accelerator takes it (the receive FIFO in front absorbs the bytes
meanwhile); IDENTIFY / STATUS / SYNC wait until no step is in flight (``quiet``), so their answer
follows the result of every earlier step.

FrameEncoder: sends one frame at a time, choosing, when idle, the lowest pending error code first,
then a result, then an answer. Results are copied into its shift register as soon as they are
offered, which frees the accelerator for the next step while the UART sends. The identity frame
is a constant, read from a small ROM.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import protocol as P
from .uart import RX_LAYOUT

N_ERRORS = max(P.Error) + 1  # error event vectors are indexed by code (bit 0 unused)


def _max_data_bytes(n_inputs: int) -> int:
    return max(P.data_bytes(n_inputs), P.data_bytes(P.SYNC_BITS))


class FrameDecoder(wiring.Component):
    def __init__(self, n_inputs: int, step_layout: data.Layout, timeout_cycles: int):
        if timeout_cycles < 2:
            raise ValueError("timeout_cycles must be at least 2")
        self.n_inputs, self.timeout_cycles = n_inputs, timeout_cycles
        super().__init__({
            "inp": In(stream.Signature(RX_LAYOUT)),
            "step": Out(stream.Signature(step_layout)),
            "resp": Out(stream.Signature(unsigned(3))),  # a Reply type: IDENTITY, STATUS or SYNC_ACK
            "nonce": Out(7),  # of the SYNC being answered
            "quiet": In(1),  # no step in flight: answers may go out
            "mode": Out(1),  # result mode for steps taken from now on (protocol.Mode)
            "sync": Out(1),  # pulse: a SYNC is being answered (clear counters and error reports)
            "error": Out(N_ERRORS),  # pulses, bit = protocol.Error code
        })

    def elaborate(self, platform):
        m = Module()
        n_in = self.n_inputs
        n_step = P.data_bytes(n_in)
        max_data = _max_data_bytes(n_in)
        lengths = Array(Const(n, range(max_data + 1)) for n in
                        [n_step, n_step, 0, P.data_bytes(P.SYNC_BITS), 0, 0, 0, 0])

        payload = Signal(P.HEADER_PAYLOAD_BITS + P.DATA_BITS * max_data)
        ftype = Signal(3)
        need = Signal(range(max_data + 1))  # data bytes of the open frame
        index = Signal(range(max_data + 1))  # data bytes received so far
        is_open = Signal()  # a frame is being collected
        skip = Signal()  # drop data bytes silently until the next header
        force_first = Signal(init=1)  # the next step starts a sequence (after reset or SYNC)
        timer = Signal(range(self.timeout_cycles + 1))

        byte, bad = self.inp.payload.data, self.inp.payload.error
        header = byte[7]
        new_type = byte[4:7]

        def error(code):
            m.d.comb += self.error[code].eq(1)

        def complete(kind):
            """The frame of type ``kind`` is complete (its last byte is being taken)."""
            with m.If((kind == P.Cmd.STEP) | (kind == P.Cmd.STEP_FIRST)):
                m.next = "STEP"
            with m.Else():
                m.next = "COMMAND"

        with m.FSM():
            with m.State("RECEIVE"):
                m.d.comb += self.inp.ready.eq(1)
                with m.If(self.inp.valid):
                    m.d.sync += timer.eq(0)
                    with m.If(bad):
                        error(P.Error.FRAMING)
                        m.d.sync += [is_open.eq(0), skip.eq(1)]
                    with m.Elif(header):
                        with m.If(is_open):
                            error(P.Error.TRUNCATED)
                        m.d.sync += [ftype.eq(new_type), payload[:4].eq(byte[:4]), index.eq(0),
                                     need.eq(lengths[new_type]), skip.eq(0), is_open.eq(0)]
                        with m.If(new_type > max(P.Cmd)):
                            error(P.Error.BAD_FRAME)
                            m.d.sync += skip.eq(1)
                        with m.Elif(lengths[new_type] == 0):
                            complete(new_type)
                        with m.Else():
                            m.d.sync += is_open.eq(1)
                    with m.Elif(is_open):
                        with m.Switch(index):
                            for k in range(max_data):
                                with m.Case(k):
                                    m.d.sync += payload[4 + 7 * k:11 + 7 * k].eq(byte[:7])
                        m.d.sync += index.eq(index + 1)
                        with m.If(index + 1 == need):
                            m.d.sync += is_open.eq(0)
                            complete(ftype)
                    with m.Elif(~skip):
                        error(P.Error.GARBAGE)
                        m.d.sync += skip.eq(1)
                with m.Elif(is_open):  # waiting for a data byte: give up after timeout_cycles
                    m.d.sync += timer.eq(timer + 1)
                    with m.If(timer == self.timeout_cycles - 1):
                        error(P.Error.TRUNCATED)
                        m.d.sync += [is_open.eq(0), skip.eq(1), timer.eq(0)]

            with m.State("STEP"):
                m.d.comb += [self.step.valid.eq(1), self.step.payload.spikes.eq(payload[:n_in]),
                             self.step.payload.first.eq((ftype == P.Cmd.STEP_FIRST) | force_first)]
                with m.If(self.step.ready):
                    m.d.sync += force_first.eq(0)
                    m.next = "RECEIVE"

            with m.State("COMMAND"):
                nibble = payload[:4]
                m.next = "RECEIVE"
                with m.Switch(ftype):
                    with m.Case(P.Cmd.IDENTIFY, P.Cmd.STATUS):
                        with m.If(nibble == 0):
                            m.next = "ANSWER"
                        with m.Else():
                            error(P.Error.BAD_FRAME)
                    with m.Case(P.Cmd.SYNC):
                        magic = Cat(Const(0, 4), *(Const(c, 7) for c in P.SYNC_MAGIC))
                        with m.If(payload[:18] == magic):
                            m.d.sync += self.nonce.eq(payload[18:25])
                            m.next = "ANSWER"
                        with m.Else():
                            error(P.Error.BAD_FRAME)
                    with m.Case(P.Cmd.MODE):
                        with m.If(nibble <= max(P.Mode)):
                            m.d.sync += self.mode.eq(nibble)
                        with m.Else():
                            error(P.Error.BAD_FRAME)

            with m.State("ANSWER"):
                kind = Mux(ftype == P.Cmd.IDENTIFY, P.Reply.IDENTITY,
                           Mux(ftype == P.Cmd.STATUS, P.Reply.STATUS, P.Reply.SYNC_ACK))
                m.d.comb += [self.resp.valid.eq(self.quiet), self.resp.payload.eq(kind)]
                with m.If(self.resp.valid & self.resp.ready):
                    with m.If(ftype == P.Cmd.SYNC):
                        m.d.comb += self.sync.eq(1)
                        m.d.sync += [self.mode.eq(P.Mode.LABEL), force_first.eq(1)]
                    m.next = "RECEIVE"
        return m


class FrameEncoder(wiring.Component):
    def __init__(self, result_layout: data.Layout, identity: bytes):
        self.result_layout = result_layout
        self.identity = bytes(identity)
        self.label_bits = data.Layout.cast(result_layout)["label"].width
        self.full_bits = data.Layout.cast(result_layout).size
        super().__init__({
            "result": In(stream.Signature(result_layout)),
            "result_full": In(1),  # the offered result goes out as RESULT_FULL (else RESULT)
            "resp": In(stream.Signature(unsigned(3))),
            "nonce": In(7),
            "status": In(P.STATUS_BITS),  # the STATUS payload, packed
            "pending": In(N_ERRORS),  # error reports waiting, bit = code
            "sent": Out(N_ERRORS),  # pulse: this error report is being sent
            "out": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        payload_widths = [self.full_bits, self.label_bits, P.STATUS_BITS, P.SYNC_ACK_BITS]
        shift = Signal(max(payload_widths) - P.HEADER_PAYLOAD_BITS)
        header = Signal(8)
        left = Signal(range(max(len(self.identity), max(map(P.frame_bytes, payload_widths))) + 1))
        first = Signal()  # the header byte is next
        from_rom = Signal()
        m.submodules.identity = rom = Memory(shape=8, depth=len(self.identity), init=list(self.identity))
        rom_rd = rom.read_port()
        rom_index = Signal(range(len(self.identity)))
        rom_next = Signal.like(rom_index)
        m.d.comb += [rom_next.eq(rom_index), rom_rd.addr.eq(rom_next)]  # rom_rd.data == identity[rom_index]
        m.d.sync += rom_index.eq(rom_next)

        def load(ftype, payload, bits):
            payload = Cat(Value.cast(payload), Const(0, 4))  # at least the header's 4 bits
            m.d.sync += [header.eq(Cat(payload[:4], Const(ftype, 3), Const(1, 1))),
                         shift.eq(payload[4:]), left.eq(P.frame_bytes(bits)), first.eq(1), from_rom.eq(0)]
            m.next = "SEND"

        with m.FSM():
            with m.State("IDLE"):
                pending = self.pending
                with m.If(pending != 0):  # first: every result sent before a report predates its error
                    code = Signal(4)
                    for c in reversed(P.Error):  # later assignments win: the lowest code goes first
                        with m.If(pending[c]):
                            m.d.comb += code.eq(c)
                    m.d.comb += self.sent.eq(Const(1, N_ERRORS) << code)
                    m.d.sync += [header.eq(Cat(code[:4], Const(P.Reply.ERROR, 3), Const(1, 1))), left.eq(1),
                                 first.eq(1), from_rom.eq(0)]
                    m.next = "SEND"
                with m.Elif(self.result.valid):
                    m.d.comb += self.result.ready.eq(1)
                    with m.If(self.result_full):
                        load(P.Reply.RESULT_FULL, self.result.payload, self.full_bits)
                    with m.Else():
                        load(P.Reply.RESULT, self.result.payload.label, self.label_bits)
                with m.Elif(self.resp.valid):
                    m.d.comb += self.resp.ready.eq(1)
                    with m.Switch(self.resp.payload):
                        with m.Case(P.Reply.IDENTITY):
                            m.d.comb += rom_next.eq(0)
                            m.d.sync += [left.eq(len(self.identity)), from_rom.eq(1)]
                            m.next = "SEND"
                        with m.Case(P.Reply.STATUS):
                            load(P.Reply.STATUS, self.status, P.STATUS_BITS)
                        with m.Default():
                            load(P.Reply.SYNC_ACK, Cat(Const(P.PROTOCOL_VERSION, 4), self.nonce), P.SYNC_ACK_BITS)

            with m.State("SEND"):
                m.d.comb += [self.out.valid.eq(1),
                             self.out.payload.eq(Mux(from_rom, rom_rd.data, Mux(first, header, shift[:7])))]
                with m.If(self.out.ready):
                    m.d.sync += [left.eq(left - 1), first.eq(0)]
                    with m.If(~first & ~from_rom):
                        m.d.sync += shift.eq(shift >> 7)
                    with m.If(from_rom):
                        m.d.comb += rom_next.eq(rom_index + 1)
                    with m.If(left == 1):
                        m.next = "IDLE"
        return m
