"""The accelerator's UPDATE stage: one Amaranth component per neuron kind (``UPDATE_STAGES``).

The stage takes a chunk of P neurons per cycle (its index, the lanes' synaptic sums, the chunk's
state and constants words from memory) and, STAGES cycles later, gives its new state word (for the
write-back) and its spikes. Everything around it (accumulators, memories, source queues, LI, the
cycle model) is shared, and the cycle model holds for every kind because every stage is STAGES
deep. A new kind is one component here (an ``UpdateStage``: ResonatorUpdate, AdaptiveUpdate) or
in a sibling module (``harmonic.HarmonicUpdate``), registered in ``UPDATE_STAGES`` (and named in
``artifact.HARDWARE_NEURONS``).

``BRFAccelerator`` emits its stage into its own module (``emit``) rather than as a submodule: a
submodule would be a Verilog module of its own, and the default design's Verilog (the committed
rtl/) stays what it was. ``elaborate`` builds the very same logic as a component of its own (for
tests of the stage alone, or other designs).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..fixed.spec import IntNetwork
from ..neurons.flags import RESONATOR_FLAGS
from . import fixed_ops as ops

# pipeline stages of UPDATE: a chunk issued in UPDATE cycle k + 1 has its spikes at stage 6 in cycle k + 7
STAGES = 6


def pipeline_reg(m: Module, expr, name: str, reset_less: bool = True) -> Signal:
    """A pipeline register: takes ``expr`` every cycle. Data needs no reset (valid bits do)."""
    r = Signal(expr.shape(), name=name, reset_less=reset_less)
    m.d.sync += r.eq(expr)
    return r


def field(word, index: int, width: int):
    return word.word_select(index, width).as_signed()


class UpdateStage(wiring.Component):
    """What every kind's stage shares: the ports, the state word (``state_names`` fields of the
    state format per lane), the stage-1/2 front (sums, memory words, the kind's coefficients
    ``net.kind.arrays``, one coef field per lane each, in that order) and the synaptic current of
    multi-bit inputs at stage 3.

    Ports: ``valid``, ``chunk`` of the chunk issued, ``fresh`` (read the state as zeros),
    ``acc`` the lanes' synaptic sums (multi-bit inputs: the raw recurrent sums, the lanes weight
    ``inputs``), ``state`` and ``constants`` the chunk's memory words (a cycle after ``chunk``);
    out, STAGES cycles later: ``out_valid``, ``out_chunk``, ``new_state``, ``spikes``; ``busy``
    while any chunk is in the pipeline."""

    def __init__(self, net: IntNetwork, lanes: int, chunks: int, acc_shape, constants_bits: int,
                 multiply: bool = False):
        self.net, self.lanes, self.multiply = net, lanes, multiply
        self.state_names = net.kind.stored_state
        n_in = net.shape[0]
        chunk = range(max(2, chunks))
        super().__init__({
            "valid": In(1), "chunk": In(chunk), "fresh": In(1),
            "acc": In(data.ArrayLayout(acc_shape, lanes)),
            "state": In(unsigned(self.state_bits)), "constants": In(unsigned(constants_bits)),
            **({"inputs": In(unsigned(n_in * net.spec.input.bits))} if multiply else {}),
            "out_valid": Out(1), "out_chunk": Out(chunk), "new_state": Out(unsigned(self.state_bits)),
            "spikes": Out(lanes), "busy": Out(1),
        })

    @property
    def state_bits(self) -> int:
        """Width of a chunk's word in the state memory."""
        return len(self.state_names) * self.lanes * self.net.spec.state.bits

    def elaborate(self, platform):
        m = Module()
        ports = SimpleNamespace(valid=self.valid, chunk=self.chunk, fresh=self.fresh, state=self.state,
                                constants=self.constants, acc=[self.acc[p] for p in range(self.lanes)],
                                inputs=getattr(self, "inputs", None))
        out = self.emit(m, ports)
        m.d.comb += [self.out_valid.eq(out.valid), self.out_chunk.eq(out.chunk), self.new_state.eq(out.new_state),
                     self.spikes.eq(Cat(*out.spikes)), self.busy.eq(out.busy)]
        return m

    @staticmethod
    def registers(m: Module):
        """reg(expr, name) and regs(names, lists, stage): pipeline registers in ``m``."""
        def reg(expr, name, reset_less=True):
            return pipeline_reg(m, expr, name, reset_less)

        def regs(names, lists, stage):
            return ([reg(x, f"{n}_s{stage}_{p}") for p, x in enumerate(xs)] for n, xs in zip(names, lists))

        return reg, regs

    def front(self, m: Module, ports, reg, regs) -> SimpleNamespace:
        """Stages 1 and 2: valid, chunk and the sums registered (stage 1), then the state words
        (zeros where ``fresh``), the kind's coefficients, the sums and, where the lanes weight
        multi-bit inputs, their input weights (stage 2)."""
        net, spec, P = self.net, self.net.spec, self.lanes
        cb, sb = spec.coef.bits, spec.state.bits
        valid1, chunk1 = reg(ports.valid, "valid_s1", reset_less=False), reg(ports.chunk, "chunk_s1")
        acc1 = [reg(a, f"acc_s1_{p}") for p, a in enumerate(ports.acc)]
        # stage 1: state and constants arrive from memory (registered before any arithmetic: the
        # block RAM's clock-to-output is most of a cycle)
        old = [[Mux(ports.fresh, 0, field(ports.state, i * P + p, sb)) for p in range(P)]
               for i in range(len(self.state_names))]
        stage2 = dict(zip(self.state_names, regs(self.state_names, old, 2)))  # u, v (, q); u (, a)
        for i, name in enumerate(net.kind.arrays):  # d, c; alpha_m (, rho)
            stage2[name] = [reg(field(ports.constants, i * P + p, cb), f"{name}_s2_{p}") for p in range(P)]
        stage2["acc"] = [reg(a, f"acc_s2_{p}") for p, a in enumerate(acc1)]
        w_in2 = None
        if self.multiply:  # lane p's input weights, registered like the coefficients
            n_in, wib = net.shape[0], spec.weight.bits
            base = len(net.kind.arrays) * P * cb
            w_in2 = [[reg(field(ports.constants[base:], p * n_in + i, wib), f"w_in_s2_{p}_{i}")
                      for i in range(n_in)] for p in range(P)]
        valid2, chunk2 = reg(valid1, "valid_s2", False), reg(chunk1, "chunk_s2")
        return SimpleNamespace(valid1=valid1, valid2=valid2, chunk2=chunk2, stage2=stage2, w_in2=w_in2)

    def current(self, ports, reg, acc3, w_in2):
        """The lanes' synaptic current at stage 3: the sums as they are (spike inputs), or w_in . x
        of the step's inputs (latched with its beat) registered and added to the recurrent sums."""
        if not self.multiply:
            return acc3
        spec, n_in = self.net.spec, self.net.shape[0]
        x_in = [ports.inputs.word_select(i, spec.input.bits) for i in range(n_in)]
        w_x3 = [reg(sum(w * x for w, x in zip(w_in2[p], x_in)), f"w_x_s3_{p}") for p in range(self.lanes)]
        ra, ia, ws = spec.rec_align, spec.in_align, spec.weight_shift
        if ra >= ws:  # the recurrent sum has no bits below the shift: round the input term alone
            return [(a << (ra - ws)) + ops.rshift(w_x3[p] << ia, ws) for p, a in enumerate(acc3)]
        return [ops.rshift((a << ra) + (w_x3[p] << ia), ws) for p, a in enumerate(acc3)]


class ResonatorUpdate(UpdateStage):
    """BRF, its ablations and RF: ``arith.resonator_step`` with the kind's ``q_mode``, cut into a
    6-stage pipeline of ``fixed_ops`` terms (stage 1 registers the sums, 2 the memory words, then
    dt*q, the damping, the rotation's products, new u and v, spike and new q). Where q enters
    neither the damping nor the threshold (RF) it never leaves 0: the state holds u and v only.
    Without the smooth reset e is d (d - rshift(dt*q*0) saturated, d being a coefficient already);
    without the refractory period the threshold is theta. Without the divergence boundary only d
    differs, which the artifact holds: that kind is BRF's pipeline."""

    def __init__(self, net: IntNetwork, lanes: int, chunks: int, acc_shape, constants_bits: int,
                 multiply: bool = False):
        q_mode = net.kind.q_mode
        self.damp, self.thresh = bool(q_mode & 1), bool(q_mode & 2)
        super().__init__(net, lanes, chunks, acc_shape, constants_bits, multiply)

    def emit(self, m: Module, ports) -> SimpleNamespace:
        """The pipeline's logic in ``m``, fed by ``ports`` (the In members' values, ``acc`` a list of
        the lanes' sums); returns the stage-6 valid, chunk, spikes (per lane) and new state word
        and the busy flag as values of ``m``."""
        net, spec, P = self.net, self.net.spec, self.lanes
        sb = spec.state.bits
        has_q = "q" in self.state_names
        reg, regs = self.registers(m)
        f = self.front(m, ports, reg, regs)
        stage2, valid1, valid2, chunk2 = f.stage2, f.valid1, f.valid2, f.chunk2
        # stage 2: dt * q, the smooth reset's share of the damping
        if self.damp:
            q_dt3 = [reg(q * net.dtq, f"q_dt_s3_{p}") for p, q in enumerate(stage2["q"])]
        stage3 = dict(zip(stage2, regs(stage2, stage2.values(), 3)))
        valid3, chunk3 = reg(valid2, "valid_s3", False), reg(chunk2, "chunk_s3")
        cur3 = self.current(ports, reg, stage3["acc"], f.w_in2)  # the synaptic current
        # stage 3: damping factor
        d3 = stage3["d"]
        e4 = [reg(ops.damping(spec, d3[p], q_dt3[p]) if self.damp else d3[p], f"e_s4_{p}") for p in range(P)]
        stage3["acc"] = cur3
        del stage3["d"]  # (e replaces it)
        stage4 = dict(zip(stage3, regs(stage3, stage3.values(), 4)))
        u4, v4, c4 = stage4["u"], stage4["v"], stage4["c"]
        valid4, chunk4 = reg(valid3, "valid_s4", False), reg(chunk3, "chunk_s4")
        # stage 4: the rotation's products
        e_u5 = [reg(e4[p] * u4[p], f"e_u_s5_{p}") for p in range(P)]
        c_v5 = [reg(c4[p] * v4[p], f"c_v_s5_{p}") for p in range(P)]
        e_v5 = [reg(e4[p] * v4[p], f"e_v_s5_{p}") for p in range(P)]
        c_u5 = [reg(c4[p] * u4[p], f"c_u_s5_{p}") for p in range(P)]
        late = {}  # what stage 6 needs beside u and v: gamma * q, the threshold (theta + q)
        if has_q:
            late["q_g"] = [reg(q * net.gamma, f"q_g_s5_{p}") for p, q in enumerate(stage4["q"])]
        if self.thresh:
            late["th_q"] = [reg(q + net.theta, f"th_q_s5_{p}") for p, q in enumerate(stage4["q"])]
        acc5 = [reg(a, f"acc_s5_{p}") for p, a in enumerate(stage4["acc"])]
        valid5, chunk5 = reg(valid4, "valid_s5", False), reg(chunk4, "chunk_s5")
        # stage 5: new u, v (acc5 holds the synaptic current)
        u6 = [reg(ops.next_u(spec, e_u5[p], c_v5[p], acc5[p]), f"u_s6_{p}") for p in range(P)]
        v6 = [reg(ops.next_v(spec, e_v5[p], c_u5[p]), f"v_s6_{p}") for p in range(P)]
        late = dict(zip(late, regs(late, late.values(), 6)))
        valid6, chunk6 = reg(valid5, "valid_s6", False), reg(chunk5, "chunk_s6")
        # stage 6: spike, new q, write-back
        threshold = late["th_q"] if self.thresh else [net.theta] * P
        z6 = [ops.spike(threshold[p], u6[p]) for p in range(P)]
        new = u6 + v6
        if has_q:
            new += [ops.next_q(spec, late["q_g"][p], z6[p]) for p in range(P)]
        return SimpleNamespace(valid=valid6, chunk=chunk6, spikes=z6,
                               new_state=Cat(*(x.as_signed()[:sb] for x in new)),
                               busy=ports.valid | valid1 | valid2 | valid3 | valid4 | valid5 | valid6)


class AdaptiveUpdate(UpdateStage):
    """ALIF and LIF: ``arith.adaptive_step`` in the same 6 stages (stage 1 registers the sums, 2
    the memory words, 3 the products alpha_m*u, beta*a and rho*a, 4 h and the threshold, 5 the
    spike and the soft reset, 6 the new a = z + rshift(rho*a - z*rho*2^sf): no product waits for
    the spike). The state word holds u and a (LIF: u only, its
    threshold is theta0, and only alpha_m*u is a product); the constants word alpha_m (and rho)."""

    def __init__(self, net: IntNetwork, lanes: int, chunks: int, acc_shape, constants_bits: int,
                 multiply: bool = False):
        self.adapt = net.kind.adapt
        super().__init__(net, lanes, chunks, acc_shape, constants_bits, multiply)

    def emit(self, m: Module, ports) -> SimpleNamespace:
        """As ``ResonatorUpdate.emit``."""
        net, spec, P = self.net, self.net.spec, self.lanes
        sb = spec.state.bits
        reg, regs = self.registers(m)
        f = self.front(m, ports, reg, regs)
        s2, valid1, valid2 = f.stage2, f.valid1, f.valid2
        lanes = range(P)
        # stage 2: the products of the old state
        alpha_u3 = [reg(s2["alpha_m"][p] * s2["u"][p], f"alpha_u_s3_{p}") for p in lanes]
        if self.adapt:
            beta_a3 = [reg(s2["a"][p] * net.beta, f"beta_a_s3_{p}") for p in lanes]
            rho_a3 = [reg(s2["rho"][p] * s2["a"][p], f"rho_a_s3_{p}") for p in lanes]
        keep = ["acc"] + (["rho"] if self.adapt else [])
        s3 = dict(zip(keep, regs(keep, [s2[k] for k in keep], 3)))
        valid3, chunk3 = reg(valid2, "valid_s3", False), reg(f.chunk2, "chunk_s3")
        cur3 = self.current(ports, reg, s3["acc"], f.w_in2)
        # stage 3: the membrane before the reset, and the threshold
        h4 = [reg(ops.membrane(spec, alpha_u3[p], cur3[p]), f"h_s4_{p}") for p in lanes]
        if self.adapt:
            th4 = [reg(ops.threshold(spec, net.theta0, beta_a3[p]), f"th_s4_{p}") for p in lanes]
            rho_a4, rho4 = regs(["rho_a", "rho"], [rho_a3, s3["rho"]], 4)
        else:
            th4 = [net.theta0] * P
        valid4, chunk4 = reg(valid3, "valid_s4", False), reg(chunk3, "chunk_s4")
        # stage 4: spike and soft reset
        z = [ops.spike(th4[p], h4[p]) for p in lanes]
        u5 = [reg(ops.soft_reset(spec, h4[p], z[p], th4[p]), f"u_s5_{p}") for p in lanes]
        z5 = [reg(z[p], f"z_s5_{p}") for p in lanes]
        if self.adapt:
            rho_a5, rho5 = regs(["rho_a", "rho"], [rho_a4, rho4], 5)
        valid5, chunk5 = reg(valid4, "valid_s5", False), reg(chunk4, "chunk_s5")
        # stage 5: the new adaptation (u and z wait a stage: every kind's stage is STAGES deep)
        new = [[reg(u5[p], f"u_s6_{p}") for p in lanes]]
        if self.adapt:
            new.append([reg(ops.next_a(spec, rho_a5[p], rho5[p], z5[p]), f"a_s6_{p}") for p in lanes])
        z6 = [reg(z5[p], f"z_s6_{p}") for p in lanes]
        valid6, chunk6 = reg(valid5, "valid_s6", False), reg(chunk5, "chunk_s6")
        return SimpleNamespace(valid=valid6, chunk=chunk6, spikes=z6,
                               new_state=Cat(*(x.as_signed()[:sb] for xs in new for x in xs)),
                               busy=ports.valid | valid1 | valid2 | valid3 | valid4 | valid5 | valid6)


from .harmonic import HarmonicUpdate  # noqa: E402  (a subclass of UpdateStage, above)

# the accelerator's update stage of each neuron kind (``fixed.kinds``) it implements
UPDATE_STAGES = {**{name: ResonatorUpdate for name in RESONATOR_FLAGS}, "alif": AdaptiveUpdate, "lif": AdaptiveUpdate,
                 "bhrf": HarmonicUpdate}
