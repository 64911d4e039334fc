"""The board's framing logic (Amaranth 0.5): received bytes -> frames -> accelerator steps and
commands; results, answers and error reports -> frames -> bytes to send. The frame format and
every code are ``protocol``'s; this module only implements them.

Both keep a CRC-8 register updated one byte per cycle (``crc8_next``): the decoder checks a frame's
two check bytes and executes nothing whose CRC differs, the encoder appends them to every frame.

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


def crc8_next(crc, byte) -> Value:
    """``protocol.crc8`` advanced by one byte, as logic: eight shift-and-XOR steps that Yosys folds
    into one XOR network per bit."""
    c = Value.cast(crc) ^ Value.cast(byte)
    for _ in range(8):
        shifted = Cat(Const(0, 1), c[:7])
        c = Mux(c[7], shifted ^ P.CRC_POLY, shifted)
    return c


def _max_data_bytes(step_bits: int) -> int:
    return max(P.data_bytes(step_bits), P.data_bytes(P.SYNC_BITS))


class FrameDecoder(wiring.Component):
    def __init__(self, step_layout: data.StructLayout, timeout_cycles: int):
        if timeout_cycles < 2:
            raise ValueError("timeout_cycles must be at least 2")
        # the step's input field ("spikes" or "inputs") and its width
        self.field = next(name for name, _ in step_layout if name != "first")
        self.step_bits = step_layout.size - 1
        self.timeout_cycles = timeout_cycles
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
        n_in = self.step_bits
        max_data = _max_data_bytes(n_in)
        max_need = max_data + P.CHECK_BYTES
        cmd = P.command_lengths(n_in)
        lengths = Array(Const(cmd.get(t, 0) + P.CHECK_BYTES, range(max_need + 1)) for t in range(8))

        payload = Signal(P.HEADER_PAYLOAD_BITS + P.DATA_BITS * max_data)
        ftype = Signal(3)
        need = Signal(range(max_need + 1))  # data bytes of the open frame, check bytes included
        index = Signal(range(max_need + 1))  # data bytes received so far
        crc = Signal(8)  # of the header and the payload data bytes received so far
        crc_low_ok = Signal()  # the first check byte matched
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
                                     need.eq(lengths[new_type]), skip.eq(0), is_open.eq(0),
                                     crc.eq(crc8_next(0, byte))]
                        with m.If(new_type > max(P.Cmd)):
                            error(P.Error.BAD_FRAME)
                            m.d.sync += skip.eq(1)
                        with m.Else():
                            m.d.sync += is_open.eq(1)
                    with m.Elif(is_open):
                        m.d.sync += index.eq(index + 1)
                        with m.If(index + P.CHECK_BYTES < need):  # a payload data byte
                            with m.Switch(index):
                                for k in range(max_data):
                                    with m.Case(k):
                                        m.d.sync += payload[4 + 7 * k:11 + 7 * k].eq(byte[:7])
                            m.d.sync += crc.eq(crc8_next(crc, byte))
                        with m.Elif(index + P.CHECK_BYTES == need):  # C0: CRC bits 0-6
                            m.d.sync += crc_low_ok.eq(byte[:7] == crc[:7])
                        with m.Else():  # C1: CRC bit 7, the frame's last byte
                            m.d.sync += is_open.eq(0)
                            with m.If(crc_low_ok & (byte[:7] == crc[7])):
                                complete(ftype)
                            with m.Else():  # nothing of it runs; its type may have been wrong, so
                                error(P.Error.CRC)  # drop the data bytes up to the next header too
                                m.d.sync += skip.eq(1)
                    with m.Elif(~skip):
                        error(P.Error.GARBAGE)
                        m.d.sync += skip.eq(1)
                with m.Elif(is_open):  # waiting for a data byte: give up after timeout_cycles
                    m.d.sync += timer.eq(timer + 1)
                    with m.If(timer == self.timeout_cycles - 1):
                        error(P.Error.TRUNCATED)
                        m.d.sync += [is_open.eq(0), skip.eq(1), timer.eq(0)]

            with m.State("STEP"):
                m.d.comb += [self.step.valid.eq(1), self.step.payload[self.field].eq(payload[:n_in]),
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
        layout = data.Layout.cast(result_layout)
        self.label_bits = layout["label"].width
        self.mean = "sum_label" in layout.members  # RESULT carries the sum label too
        self.result_bits = self.label_bits * (2 if self.mean else 1)
        self.full_bits = layout.size
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
        payload_widths = [self.full_bits, self.result_bits, P.STATUS_BITS, P.SYNC_ACK_BITS]
        shift = Signal(max(payload_widths) - P.HEADER_PAYLOAD_BITS)
        header = Signal(8)
        left = Signal(range(max(len(self.identity), max(map(P.frame_bytes, payload_widths))) + 1))
        first = Signal()  # the header byte is next
        from_rom = Signal()  # the ROM holds the whole IDENTITY frame, check bytes included
        crc = Signal(8)  # of the bytes of this frame sent so far
        check_high = Signal()  # C1 (CRC bit 7) is next, else C0
        m.submodules.identity = rom = Memory(shape=8, depth=len(self.identity), init=list(self.identity))
        rom_rd = rom.read_port()
        rom_index = Signal(range(len(self.identity)))
        rom_next = Signal.like(rom_index)
        m.d.comb += [rom_next.eq(rom_index), rom_rd.addr.eq(rom_next)]  # rom_rd.data == identity[rom_index]
        m.d.sync += rom_index.eq(rom_next)

        def load(ftype, payload, bits):
            payload = Cat(Value.cast(payload), Const(0, 4))  # at least the header's 4 bits
            m.d.sync += [header.eq(Cat(payload[:4], Const(ftype, 3), Const(1, 1))),
                         shift.eq(payload[4:]), left.eq(1 + P.data_bytes(bits)), first.eq(1), from_rom.eq(0)]
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
                        result = self.result.payload
                        load(P.Reply.RESULT, Cat(result.label, result.sum_label) if self.mean else result.label,
                             self.result_bits)
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
                byte = Mux(from_rom, rom_rd.data, Mux(first, header, shift[:7]))
                m.d.comb += [self.out.valid.eq(1), self.out.payload.eq(byte)]
                with m.If(self.out.ready):
                    m.d.sync += [left.eq(left - 1), first.eq(0), crc.eq(crc8_next(Mux(first, 0, crc), byte)),
                                 check_high.eq(0)]
                    with m.If(~first & ~from_rom):
                        m.d.sync += shift.eq(shift >> 7)
                    with m.If(from_rom):
                        m.d.comb += rom_next.eq(rom_index + 1)
                    with m.If((left == 1) & from_rom):
                        m.next = "IDLE"
                    with m.Elif(left == 1):
                        m.next = "CHECK"

            with m.State("CHECK"):  # C0 = CRC bits 0-6, then C1 = CRC bit 7
                m.d.comb += [self.out.valid.eq(1), self.out.payload.eq(Mux(check_high, crc[7], crc[:7]))]
                with m.If(self.out.ready):
                    m.d.sync += check_high.eq(~check_high)
                    with m.If(check_high):
                        m.next = "IDLE"
        return m
