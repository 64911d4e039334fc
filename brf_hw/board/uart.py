"""UART receiver and transmitter, 8N1, a fixed whole number of clock cycles per bit (Amaranth 0.5).

``divisor`` = clock frequency / baud rate, at least 3. The receiver synchronises its pin with two
flip-flops, finds a start bit by its falling edge, checks it is still low half a bit later (a
shorter glitch is ignored) and samples every bit in its middle; the stop bit is sampled in its
middle too, and the receiver is ready for the next start bit from there on, so a sender whose rate
is a few percent off is still read correctly. A low stop bit is a framing error: the byte is
delivered with ``error`` set, and the receiver then waits for the line to be high again (a break,
the line held low, costs one error, not a stream of them). The transmitter sends back to back:
a byte offered during the last cycle of a stop bit starts the next start bit on the next cycle.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

MIN_DIVISOR = 3
RX_LAYOUT = data.StructLayout({"data": unsigned(8), "error": unsigned(1)})


def check_divisor(divisor: int, component=None) -> int:
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        if component is not None:
            component._MustUse__silence = True  # never built: no "created but never used" warning
        raise ValueError(f"UART divisor (clock cycles per bit) must be an integer >= {MIN_DIVISOR}, got {divisor!r}")
    return divisor


class UARTRx(wiring.Component):
    """``rx`` pin -> ``out`` stream of {data, error}. The stream holds one byte; a byte completed
    while the previous one is still not taken is dropped and ``overrun`` pulses for a cycle."""

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor, self)
        super().__init__({"rx": In(1, init=1), "out": Out(stream.Signature(RX_LAYOUT)), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        timer = Signal(range(div))
        bits = Signal(range(9))  # data bits still to sample
        shift = Signal(8)
        tick = timer == 0
        with m.If(~tick):
            m.d.sync += timer.eq(timer - 1)

        def deliver(error):
            with m.If(self.out.valid & ~self.out.ready):
                m.d.comb += self.overrun.eq(1)
            with m.Else():
                m.d.sync += [self.out.valid.eq(1), self.out.payload.data.eq(shift), self.out.payload.error.eq(error)]

        with m.If(self.out.ready):
            m.d.sync += self.out.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):  # falling edge: the middle of the start bit is (div-1)//2 cycles on
                    m.d.sync += timer.eq((div - 1) // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(line):  # high again: a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(div - 1), bits.eq(8)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bits.eq(bits - 1), timer.eq(div - 1)]
                    with m.If(bits == 1):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    deliver(~line)
                    m.next = "IDLE"
                    with m.If(~line):
                        m.next = "BREAK"
            with m.State("BREAK"):  # after a framing error: wait for the idle level
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """``inp`` stream of bytes -> ``tx`` pin (idle high)."""

    def __init__(self, divisor: int):
        self.divisor = check_divisor(divisor, self)
        super().__init__({"inp": In(stream.Signature(8)), "tx": Out(1, init=1), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        bits = Signal(range(10))  # bits still to send after the one on the line
        shift = Signal(9)  # data bits, then the stop bit
        busy = Signal()
        last_cycle = busy & (timer == 0) & (bits == 0)  # the stop bit's last cycle
        m.d.comb += [self.inp.ready.eq(~busy | last_cycle), self.busy.eq(busy)]
        with m.If(busy):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Elif(bits != 0):
                m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift >> 1), bits.eq(bits - 1), timer.eq(div - 1)]
            with m.Else():
                m.d.sync += busy.eq(0)
        with m.If(self.inp.valid & self.inp.ready):
            m.d.sync += [busy.eq(1), self.tx.eq(0), shift.eq(Cat(self.inp.payload, 1)), bits.eq(9),
                         timer.eq(div - 1)]
        return m
