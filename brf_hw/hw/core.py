"""Streaming, event-driven BRF-RSNN accelerator (Amaranth 0.5).

Per time step: one input beat (the step's input spikes, and ``first`` to clear the state at a
sequence start) -> one output beat (LI potentials, argmax label, hidden spikes, cycles used).

Phases, each a sweep over the C = ceil(H/P) chunks of P lanes:
  ACC      for every active source (input spike, or hidden spike of the previous step, lowest
           index first): add its weight row onto the accumulators, C cycles per source.
           Silent sources cost nothing: cycles grow with spikes, not synapses.
  UPDATE   the integer BRF step for P neurons per cycle (``fixed_ops.brf_update``).
  READOUT  for every new hidden spike: add its output-weight row onto the output accumulators.
  LI       all LI potentials at once; then OUTPUT holds the beat until it is taken.
State lives in rings of C rows (row = P lanes) that rotate once per processed chunk, so the
current chunk is always row 0 and no wide multiplexers are needed; every sweep is a whole turn.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..fixed.spec import IntNetwork
from .fixed_ops import brf_update, li_update
from .layout import memory_images

CYCLE_COUNTER_BITS = 16


def _lowest_set_bit(m: Module, vector: Signal, name: str) -> Signal:
    index = Signal(range(max(2, len(vector))), name=name)
    for i in reversed(range(len(vector))):  # later assignments win: the lowest set bit ends up
        with m.If(vector[i]):
            m.d.comb += index.eq(i)
    return index


class BRFAccelerator(wiring.Component):
    def __init__(self, net: IntNetwork, lanes: int = 1):
        self.net = net
        self.images = memory_images(net, lanes)
        self.lanes, self.chunks = lanes, self.images.chunks
        n_in, n_hid, n_out = net.shape
        self.input_layout = data.StructLayout({"spikes": unsigned(n_in), "first": unsigned(1)})
        self.output_layout = data.StructLayout({
            "potentials": data.ArrayLayout(signed(net.spec.output.bits), n_out),
            "label": unsigned(max(1, (n_out - 1).bit_length())),
            "spikes": unsigned(n_hid),
            "cycles": unsigned(CYCLE_COUNTER_BITS),
        })
        super().__init__({"inp": In(stream.Signature(self.input_layout)),
                          "out": Out(stream.Signature(self.output_layout))})

    def elaborate(self, platform):
        m = Module()
        net, spec, img = self.net, self.net.spec, self.images
        n_in, n_hid, n_out = net.shape
        P, C = self.lanes, self.chunks
        wb, cb, sb, ob, owb = (spec.weight.bits, spec.coef.bits, spec.state.bits, spec.output.bits,
                               spec.out_weight.bits)
        acc_bits = spec.acc_bits(n_in + n_hid)
        out_acc_bits = spec.acc_bits(n_hid, spec.out_weight)

        m.submodules.synapses = syn = Memory(shape=unsigned(P * wb), depth=len(img.synapses), init=img.synapses)
        m.submodules.constants = const = Memory(shape=unsigned(2 * P * cb), depth=C, init=img.constants)
        m.submodules.out_weights = outw = Memory(shape=unsigned(n_out * owb), depth=n_hid, init=img.outputs)
        syn_rd, const_rd, outw_rd = syn.read_port(), const.read_port(), outw.read_port()

        def ring(name, width):
            return [Signal(P * width, name=f"{name}_{r}") for r in range(C)]

        acc_ring, u_ring, v_ring, q_ring = ring("acc", acc_bits), ring("u", sb), ring("v", sb), ring("q", sb)
        z_ring = ring("z", 1)

        def rotate(rows, new_row):
            return [rows[r].eq(rows[r + 1]) for r in range(C - 1)] + [rows[C - 1].eq(new_row)]

        def lane(row, p, width):
            return row.word_select(p, width).as_signed()

        z_flat = Cat(*z_ring)[:n_hid]
        o = [Signal(signed(ob), name=f"o_{k}") for k in range(n_out)]
        acc_o = [Signal(signed(out_acc_bits), name=f"acc_o_{k}") for k in range(n_out)]

        mask = Signal(n_in + n_hid)  # sources still to be accumulated
        source = _lowest_set_bit(m, mask, "source")
        chunk = Signal(range(max(2, C)))
        stage1 = Signal()  # a memory word requested last cycle is on the read port now
        issuing = Signal()
        cycles = Signal(CYCLE_COUNTER_BITS)
        m.d.comb += [syn_rd.addr.eq(source * C + chunk), const_rd.addr.eq(chunk), outw_rd.addr.eq(source)]

        # argmax: strictly greater replaces, so the lowest index wins ties (as numpy's argmax)
        label = Signal.like(self.out.payload.label)
        best = [Signal(signed(ob), name=f"best_{k}") for k in range(n_out)]
        best_idx = [Signal.like(label, name=f"best_idx_{k}") for k in range(n_out)]
        m.d.comb += [best[0].eq(o[0]), best_idx[0].eq(0)]
        for k in range(1, n_out):
            m.d.comb += [best[k].eq(Mux(o[k] > best[k - 1], o[k], best[k - 1])),
                         best_idx[k].eq(Mux(o[k] > best[k - 1], k, best_idx[k - 1]))]
        m.d.comb += label.eq(best_idx[n_out - 1])

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.inp.ready.eq(1)
                with m.If(self.inp.valid):
                    first = self.inp.payload.first
                    m.d.sync += [mask.eq(Cat(self.inp.payload.spikes, Mux(first, 0, z_flat))),
                                 chunk.eq(0), stage1.eq(0), cycles.eq(1)]
                    m.d.sync += [a.eq(0) for a in acc_o]
                    with m.If(first):
                        m.d.sync += [r.eq(0) for r in u_ring + v_ring + q_ring + z_ring + o]
                    m.next = "ACC"

            with m.State("ACC"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(mask != 0):
                    m.d.sync += stage1.eq(1)
                    with m.If(chunk == C - 1):
                        m.d.sync += [chunk.eq(0), mask.eq(mask & (mask - 1))]
                    with m.Else():
                        m.d.sync += chunk.eq(chunk + 1)
                with m.Else():
                    m.d.sync += stage1.eq(0)
                    with m.If(~stage1):
                        m.d.sync += [issuing.eq(1), chunk.eq(0)]
                        m.next = "UPDATE"
                with m.If(stage1):
                    # acc_bits holds any sum of fan-in weights: the slice never drops a set bit
                    summed = Cat(*((lane(acc_ring[0], p, acc_bits) + lane(syn_rd.data, p, wb))[:acc_bits]
                                   for p in range(P)))
                    m.d.sync += rotate(acc_ring, summed)

            with m.State("UPDATE"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(issuing):
                    m.d.sync += stage1.eq(1)
                    with m.If(chunk == C - 1):
                        m.d.sync += [issuing.eq(0), chunk.eq(0)]
                    with m.Else():
                        m.d.sync += chunk.eq(chunk + 1)
                with m.Else():
                    m.d.sync += stage1.eq(0)
                with m.If(stage1):
                    lanes = [brf_update(spec, net.dtq, net.gamma, net.theta,
                                        lane(acc_ring[0], p, acc_bits), lane(u_ring[0], p, sb),
                                        lane(v_ring[0], p, sb), lane(q_ring[0], p, sb),
                                        lane(const_rd.data, p, cb), lane(const_rd.data, P + p, cb))
                             for p in range(P)]
                    m.d.sync += rotate(u_ring, Cat(*(l[0].as_signed()[:sb] for l in lanes)))
                    m.d.sync += rotate(v_ring, Cat(*(l[1].as_signed()[:sb] for l in lanes)))
                    m.d.sync += rotate(q_ring, Cat(*(l[2].as_signed()[:sb] for l in lanes)))
                    m.d.sync += rotate(z_ring, Cat(*(l[3] for l in lanes)))
                    m.d.sync += rotate(acc_ring, 0)
                with m.If(~issuing & ~stage1):
                    m.d.sync += mask.eq(z_flat)
                    m.next = "READOUT"

            with m.State("READOUT"):
                m.d.sync += cycles.eq(cycles + 1)
                m.d.sync += [stage1.eq(mask != 0)]
                with m.If(mask != 0):
                    m.d.sync += mask.eq(mask & (mask - 1))
                with m.If(stage1):
                    m.d.sync += [acc_o[k].eq(acc_o[k] + lane(outw_rd.data, k, owb)) for k in range(n_out)]
                with m.Elif(mask == 0):
                    m.next = "LI"

            with m.State("LI"):
                m.d.sync += cycles.eq(cycles + 1)
                m.d.sync += [o[k].eq(li_update(spec, acc_o[k], o[k], int(net.alpha[k])).as_signed()[:ob])
                             for k in range(n_out)]
                m.next = "OUTPUT"

            with m.State("OUTPUT"):
                payload = self.out.payload
                m.d.comb += [self.out.valid.eq(1), payload.label.eq(label), payload.spikes.eq(z_flat),
                             payload.cycles.eq(cycles)]
                m.d.comb += [payload.potentials[k].eq(o[k]) for k in range(n_out)]
                with m.If(self.out.ready):
                    m.next = "IDLE"
        return m
