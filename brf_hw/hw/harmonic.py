"""BHRF's UPDATE stage (``arith.bhrf_step``), in the shared 6-stage slot (``update.UpdateStage``).

Stage 1 registers the sums, 2 the memory words (u, y, q; d, c); then the products of the old
state dt*q and c*u (registered at 3), the damping e = d - 2 dt q and the new y = y + c*u (4), the
products e*u, c*y' and gamma*q and the threshold theta + q (5), the new u (6), and at stage 6
the spike and the new q. Like BRF's rotation, two products deep on every path: u' waits for
y' (the float step's NEW v) as e waits for dt*q.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module

from . import fixed_ops as ops
from .update import UpdateStage


class HarmonicUpdate(UpdateStage):
    """BHRF: the state word holds u, y = omega*v, q; the constants word d = 1 - 2 dt b0, c = dt omega."""

    def emit(self, m: Module, ports) -> SimpleNamespace:
        """As ``ResonatorUpdate.emit``."""
        net, spec, P = self.net, self.net.spec, self.lanes
        sb = spec.state.bits
        lanes = range(P)
        reg, regs = self.registers(m)
        f = self.front(m, ports, reg, regs)
        s2, valid1, valid2 = f.stage2, f.valid1, f.valid2
        # stage 2: the products of the old state
        q_dt3 = [reg(s2["q"][p] * net.dtq, f"q_dt_s3_{p}") for p in lanes]
        c_u3 = [reg(s2["c"][p] * s2["u"][p], f"c_u_s3_{p}") for p in lanes]
        s3 = dict(zip(s2, regs(s2, s2.values(), 3)))
        valid3, chunk3 = reg(valid2, "valid_s3", False), reg(f.chunk2, "chunk_s3")
        cur3 = self.current(ports, reg, s3["acc"], f.w_in2)
        # stage 3: damping factor and the new y
        e4 = [reg(ops.harmonic_damping(spec, s3["d"][p], q_dt3[p]), f"e_s4_{p}") for p in lanes]
        y4 = [reg(ops.next_y(spec, s3["y"][p], c_u3[p]), f"y_s4_{p}") for p in lanes]
        keep = {"u": s3["u"], "q": s3["q"], "c": s3["c"], "acc": cur3}
        s4 = dict(zip(keep, regs(keep, keep.values(), 4)))
        valid4, chunk4 = reg(valid3, "valid_s4", False), reg(chunk3, "chunk_s4")
        # stage 4: e*u and c*y' (the NEW y), gamma*q, theta + q
        e_u5 = [reg(e4[p] * s4["u"][p], f"e_u_s5_{p}") for p in lanes]
        c_y5 = [reg(s4["c"][p] * y4[p], f"c_y_s5_{p}") for p in lanes]
        late = {"y": y4, "q_g": [q * net.gamma for q in s4["q"]], "th_q": [q + net.theta for q in s4["q"]]}
        late = dict(zip(late, regs(late, late.values(), 5)))
        acc5 = [reg(a, f"acc_s5_{p}") for p, a in enumerate(s4["acc"])]
        valid5, chunk5 = reg(valid4, "valid_s5", False), reg(chunk4, "chunk_s5")
        # stage 5: new u (acc5 holds the synaptic current)
        u6 = [reg(ops.next_u(spec, e_u5[p], c_y5[p], acc5[p]), f"u_s6_{p}") for p in lanes]
        late = dict(zip(late, regs(late, late.values(), 6)))
        valid6, chunk6 = reg(valid5, "valid_s6", False), reg(chunk5, "chunk_s6")
        # stage 6: spike, new q, write-back
        z6 = [ops.spike(late["th_q"][p], u6[p]) for p in lanes]
        new = u6 + late["y"] + [ops.next_q(spec, late["q_g"][p], z6[p]) for p in lanes]
        return SimpleNamespace(valid=valid6, chunk=chunk6, spikes=z6,
                               new_state=Cat(*(x.as_signed()[:sb] for x in new)),
                               busy=ports.valid | valid1 | valid2 | valid3 | valid4 | valid5 | valid6)
