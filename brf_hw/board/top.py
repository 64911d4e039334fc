"""The board top: UART receive -> FIFO -> frame decoder -> accelerator -> frame encoder -> UART
transmit (``BoardLink``, the part simulated by cocotb), and its wrapper for a real board
(``BoardTop``: clock and reset, pins, LEDs; ``platforms``).

    rx pin -> UARTRx -> receive FIFO (fifo_depth bytes, block RAM) -> register -> FrameDecoder -> BRFAccelerator.inp
    tx pin <- UARTTx <- FrameEncoder <- BRFAccelerator.out (+ answers, error reports)

Every frame carries a CRC-8 (protocol v2): the decoder executes no frame whose check bytes differ
(error CRC), the encoder appends them to every frame it sends. One step is in flight at a time (the
accelerator's own rule); its result mode is captured when it is taken. LEDs: ``led_error`` lights at the first error report and stays lit until a SYNC;
``led_activity`` blinks while results go out.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, ClockDomain, Const, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..hw.core import BRFAccelerator
from . import protocol as P
from .framing import N_ERRORS, FrameDecoder, FrameEncoder
from .uart import RX_LAYOUT, UARTRx, UARTTx, check_divisor

DEFAULT_FIFO_DEPTH = 512
DEFAULT_BAUD = 3_000_000


def result_layout(net, lanes: int = 1, segments: int | None = None):
    """The accelerator's output beat layout (what RESULT_FULL carries), without building a design."""
    core = BRFAccelerator(net, lanes=lanes, segments=segments)
    core._MustUse__silence = True  # only its layout is wanted
    return core.output_layout


def default_timeout_cycles(clock_hz: float) -> int:
    """A partial frame is dropped after about 10 ms without a byte: far longer than a USB bridge
    pauses inside one write, far shorter than a person notices."""
    return max(64, int(clock_hz * 0.010))


class BoardLink(wiring.Component):
    """Everything between the UART pins, clocked by ``sync``."""

    def __init__(self, net, sha256: str, *, clock_hz: float, divisor: int, lanes: int = 1,
                 segments: int | None = None, fifo_depth: int = DEFAULT_FIFO_DEPTH,
                 timeout_cycles: int | None = None, led_cycles: int | None = None, events: int = 1):
        self.divisor = check_divisor(divisor, self)
        self.core = BRFAccelerator(net, lanes=lanes, segments=segments, events=events)
        self.clock_hz = int(round(clock_hz))
        self.fifo_depth = fifo_depth
        self.timeout_cycles = timeout_cycles or default_timeout_cycles(clock_hz)
        self.led_cycles = led_cycles or max(2, int(clock_hz * 0.05))
        self.identity_values = P.identity_values(
            net, sha256, lanes=self.core.lanes, segments=self.core.segments, full_bits=self.core.output_layout.size,
            clock_hz=self.clock_hz, divisor=self.divisor, fifo_depth=fifo_depth, timeout_cycles=self.timeout_cycles)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "led_activity": Out(1), "led_error": Out(1)})

    @property
    def baud(self) -> float:
        return self.clock_hz / self.divisor

    def elaborate(self, platform):
        m = Module()
        core = m.submodules.core = self.core
        rx = m.submodules.uart_rx = UARTRx(self.divisor)
        tx = m.submodules.uart_tx = UARTTx(self.divisor)
        fifo = m.submodules.rx_fifo = SyncFIFOBuffered(width=RX_LAYOUT.size, depth=self.fifo_depth)
        dec = m.submodules.decoder = FrameDecoder(core.input_layout, self.timeout_cycles)
        enc = m.submodules.encoder = FrameEncoder(core.output_layout, P.identity_frame(self.identity_values))

        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx)]
        m.d.comb += [fifo.w_data.eq(rx.out.payload), fifo.w_en.eq(rx.out.valid), rx.out.ready.eq(fifo.w_rdy)]
        # a register between the FIFO's block RAM and the decoder: the RAM's clock-to-output (5.8 ns on
        # the ECP5) followed by the decoder and the error counters was the critical path (83 MHz)
        held, held_data = Signal(), Signal(RX_LAYOUT.size)
        m.d.comb += [fifo.r_en.eq(~held | dec.inp.ready), dec.inp.valid.eq(held), dec.inp.payload.eq(held_data)]
        with m.If(fifo.r_en):
            m.d.sync += [held.eq(fifo.r_rdy), held_data.eq(fifo.r_data)]
        wiring.connect(m, dec.step, core.inp)
        wiring.connect(m, core.out, enc.result)
        wiring.connect(m, dec.resp, enc.resp)
        wiring.connect(m, enc.out, tx.inp)
        m.d.comb += enc.nonce.eq(dec.nonce)

        step_taken = core.inp.valid & core.inp.ready
        result_taken = core.out.valid & core.out.ready
        # up to two steps in flight (the core takes the next beat during a step's LI): their count,
        # and the result mode each was sent in (MODE may change between them), oldest first
        inflight = Signal(range(3))
        full = [Signal(name=f"result_full_{i}") for i in range(2)]
        with m.If(step_taken & ~result_taken):
            m.d.sync += inflight.eq(inflight + 1)
            m.d.sync += Array(full)[inflight[0]].eq(dec.mode)
        with m.Elif(result_taken & ~step_taken):
            m.d.sync += [inflight.eq(inflight - 1), full[0].eq(full[1])]
        with m.Elif(result_taken & step_taken):
            with m.If(inflight == 2):
                m.d.sync += [full[0].eq(full[1]), full[1].eq(dec.mode)]
            with m.Else():
                m.d.sync += full[0].eq(dec.mode)
        m.d.comb += [dec.quiet.eq(inflight == 0), enc.result_full.eq(full[0])]

        # error reports and the STATUS counters
        events = Signal(N_ERRORS)
        m.d.comb += events.eq(dec.error | (rx.overrun << P.Error.OVERRUN))
        pending = Signal(N_ERRORS)
        steps = Signal(24)
        counters = {e: Signal(8, name=f"errors_{e.name.lower()}") for e in P.Error}
        error_seen = Signal()
        with m.If(dec.sync):
            m.d.sync += [pending.eq(0), steps.eq(0), error_seen.eq(0)] + [c.eq(0) for c in counters.values()]
        with m.Else():
            m.d.sync += pending.eq((pending & ~enc.sent) | events)
            with m.If(step_taken):
                m.d.sync += steps.eq(steps + 1)
            for e, counter in counters.items():
                with m.If(events[e] & (counter != 255)):
                    m.d.sync += counter.eq(counter + 1)
            with m.If(events != 0):
                m.d.sync += error_seen.eq(1)
        m.d.comb += [enc.pending.eq(pending), enc.status.eq(Cat(dec.mode, Const(0, 3), steps,
                                                                  *(counters[e] for e in P.Error)))]
        assert [f.name for f in P.STATUS_FIELDS] == ["mode", "steps", *(e.name.lower() for e in P.Error)]

        # LEDs
        blink = Signal(range(self.led_cycles + 1))
        with m.If(result_taken):
            m.d.sync += blink.eq(self.led_cycles)
        with m.Elif(blink != 0):
            m.d.sync += blink.eq(blink - 1)
        m.d.comb += [self.led_activity.eq(blink != 0), self.led_error.eq(error_seen)]
        return m


class BoardTop(Elaboratable):
    """``BoardLink`` on a board: ``board`` (a ``platforms.Board``) supplies the clock domain and the
    pins; the link runs at ``board.clock_hz``."""

    def __init__(self, board, link: BoardLink):
        self.board, self.link = board, link

    def elaborate(self, platform):
        m = Module()
        if self.board.own_clock:
            m.domains.sync = ClockDomain("sync")
        m.submodules.clocks = self.board.clock_domain(platform)
        m.submodules.link = link = self.link
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [link.rx.eq(rx.i), tx.o.eq(link.tx)]
        for name, port in self.board.leds(platform).items():
            m.submodules[f"led_{name}"] = led = io.Buffer("o", port)
            m.d.comb += led.o.eq(getattr(link, f"led_{name}"))
        for k, port in enumerate(self.board.tie_high(platform)):
            m.submodules[f"high_{k}"] = high = io.Buffer("o", port)
            m.d.comb += high.o.eq(1)
        return m
