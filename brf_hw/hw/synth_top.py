"""The pin-light wrapper synthesis maps (its own module: Amaranth is imported only when a design
is synthesized, not for a refusal)."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .core import BRFAccelerator


class SynthTop(wiring.Component):
    """Pin-light wrapper: serial input beat, output payload XOR-folded to one pin."""

    def __init__(self, core: BRFAccelerator):
        self.core = core
        super().__init__({"in_bit": In(1), "in_load": In(1), "out_ready": In(1), "out_valid": Out(1),
                          "label": Out(len(core.out.payload.label)), "fold": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        shift = Signal(len(core.inp.payload.as_value()))
        m.d.sync += shift.eq((shift << 1) | self.in_bit)
        m.d.comb += [core.inp.payload.as_value().eq(shift), core.inp.valid.eq(self.in_load),
                     core.out.ready.eq(self.out_ready), self.out_valid.eq(core.out.valid),
                     self.label.eq(core.out.payload.label), self.fold.eq(core.out.payload.as_value().xor())]
        return m
