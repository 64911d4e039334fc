"""Streaming, event-driven BRF-RSNN accelerator (Amaranth 0.5).

Per time step: one input beat (the step's input values, and ``first`` to clear the state at a
sequence start) -> one output beat (LI potentials, argmax label, hidden spikes, cycles used, and
for a ``mean`` readout the argmax of the running sums, ``sum_label``).

Inputs (``layout``): spikes (b = 1, field ``spikes``) are events, the mask of the input sources as
it stands, each set bit one source of ACC; multi-bit values (b > 1, field ``inputs``: the I values
little-end first) are latched with the beat and weighted by the lanes in UPDATE (no ACC pass).
Readouts: per_step and last need nothing beyond ``label`` (for last, the class of a sequence is
the label of its last step); mean keeps O running sums s_j = sat(s_j + o_j) (``arith.sum_step``,
readout.sum_bits wide, cleared with ``first``) and their running argmax.

Phases of a step (cycle counts in ``cycle_model``):
  ACC     G cycles per input spike (lowest index first; none: skipped): the accumulators form a ring of G
          segments that turns one segment per cycle; the segment passing the A = C*P/G shared
          adders gets its slice of the source's weight row (one synapse-memory word). G = 1 adds
          a whole row per cycle; larger G trades cycles for adders. The previous step's hidden
          spikes were accumulated at its end (READOUT), so only the input spikes remain.
  UPDATE  P lanes run the neuron kind's integer step (``update``: ``fixed_ops`` terms in a 6-stage
          pipeline, for every kind) over the C chunks of neurons, one chunk per cycle (multi-bit
          inputs: each lane adds its neuron's w_in . x, one multiplier per input, beside the
          damping). The ring turns on (adding zeros) and each lane takes its sum from the segment at
          the adders (``layout``: segment g holds the chunks k = g mod G), so a lane reads one of A/P
          places, not one of C. u, v, q (RF: u, v) live in a state memory (read a chunk, write it
          back 6 cycles later). As the last chunk is issued every sum has been read: the sums are
          cleared and READOUT starts while the pipeline drains.
  READOUT G cycles per new hidden spike, the same datapath as ACC: a chunk's spikes join the source
          queue as they leave the pipeline; each spike's synapse row goes onto the (cleared)
          accumulators, for the next step, and its output-weight row (one word, with the first
          segment) onto the O output accumulators: the readout needs O adders, not P*O. It ends when
          the pipeline is drained and the queue empty (``readout_cycles``). A beat with ``first``
          clears the accumulators as it is accepted.
  LI      copies the O output sums (so READOUT of the next step may refill them), then the outputs
          one after another through one multiplier (select, multiply, round and saturate, compare
          for the argmax); a mean readout adds o onto its running sum one stage later and compares
          the sums (one more cycle).
Events K (``events``, default 1): the sources are dealt over K banks (source s to bank s mod K,
``layout``), each with its own synapse and output memory and source queue; ACC and READOUT go in
rounds of G cycles in which every bank with a waiting source takes its lowest, and the K row
segments of a cycle reach each accumulator through a balanced adder tree (log2 K adders deep).
A step's ACC then takes as many rounds as its busiest bank has input spikes, not as many as it has
input spikes; READOUT likewise (``_banked_readout``). K = 1 is the single-memory design, unchanged.
LI and the output beat run beside the next step: as READOUT ends, LI starts and the next beat
may be accepted, so in a stream a step occupies only accept + ACC + UPDATE + READOUT
(``period_model``). The beat is held until it is taken. Silent sources cost nothing: cycles grow
with spikes, not synapses. The hidden state is cleared without touching the memory: while ``fresh``
is set (after reset, or from a beat with ``first``) UPDATE reads zeros. Accumulators and data
registers have no reset: a register with two resets would cost a LUT per bit.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..fixed.spec import IntNetwork
from . import fixed_ops as ops
from .layout import acc_offset, banks, event_inputs, memory_images, multiplies_inputs
from .update import STAGES, UPDATE_STAGES, field, pipeline_reg

MIN_CYCLE_COUNTER_BITS = 16


def _pass(sources, segments: int, empty: int = 1):
    """Cycles of an ACC pass over ``sources`` set sources: take the first, G per source, two until
    its last row is added; ``empty`` when there are none."""
    sources = np.asarray(sources)
    return np.where(sources > 0, sources * segments + 3, empty)


def chunk_spikes(spikes, lanes: int, chunks: int) -> np.ndarray:
    """Hidden spikes [..., H] -> spikes per chunk [..., C] (neuron h in chunk h // lanes)."""
    spikes = np.asarray(spikes, dtype=np.int64)
    pad = chunks * lanes - spikes.shape[-1]
    padded = np.concatenate([spikes, np.zeros(spikes.shape[:-1] + (pad,), np.int64)], -1)
    return padded.reshape(spikes.shape[:-1] + (chunks, lanes)).sum(-1)


def bank_spikes(inputs, spikes, lanes: int, chunks: int, events: int):
    """The cycle model's view of steps with K = ``events`` banks: inputs [..., I] (the input
    sources' spikes; I = 0 where the lanes multiply) and hidden spikes [..., H] -> (input spikes per
    bank [..., K], hidden spikes per chunk and bank [..., C, K]); source s is in bank s mod K."""
    inputs, spikes = np.asarray(inputs, np.int64), np.asarray(spikes, np.int64)
    n_in = inputs.shape[-1]
    bank = np.arange(n_in + spikes.shape[-1]) % events
    per_bank = np.stack([inputs[..., bank[:n_in] == b].sum(-1) for b in range(events)], -1)
    per_chunk = np.zeros(spikes.shape[:-1] + (chunks, events), np.int64)
    for b in range(events):
        mine = bank[n_in:] == b
        per_chunk[..., b] = chunk_spikes(np.where(mine, spikes, 0), lanes, chunks)
    return per_bank, per_chunk


def _banked_readout(per_chunk, segments: int) -> int:
    """READOUT of one step with K banks ([C, K] spikes per chunk and bank): a round takes the lowest
    waiting source of every bank at once, G cycles, the next round as the last one's last segment
    is read, or as soon as a spike arrives when none is waiting (``readout_cycles`` is this
    process with one bank, where it has a closed form)."""
    c = per_chunk.shape[0]
    visible = np.maximum(1, np.arange(c) + STAGES + 1 - c)
    waiting = np.zeros(per_chunk.shape[1], np.int64)
    k, last = 0, None
    while True:
        t = 0 if last is None else last + segments
        while k < c and visible[k] <= t:
            waiting += per_chunk[k]
            k += 1
        if not waiting.any():
            while k < c and not per_chunk[k].any():
                k += 1
            if k == c:
                break
            t = visible[k]
            while k < c and visible[k] <= t:
                waiting += per_chunk[k]
                k += 1
        waiting -= waiting > 0
        last = t
    return STAGES if last is None else max(last + segments + 2, STAGES)


def readout_cycles(per_chunk, segments: int, events: int = 1) -> np.ndarray:
    """Cycles of READOUT, which starts as UPDATE has issued its last chunk and takes each chunk's
    spikes as they leave the pipeline: chunk k's can be taken from READOUT cycle v_k = max(1,
    k + 7 - C); a source is taken every G cycles while any is waiting, so the last take is at
    max over chunks k with spikes of v_k + G * (spikes in chunks k.. - 1); two cycles after its G
    segments the rows are added. Never before the pipeline has drained (cycle STAGES).
    ``per_chunk`` [..., C] spikes per chunk (``chunk_spikes``); K = ``events`` > 1: [..., C, K]
    per chunk and bank (``bank_spikes``), rounds of up to K sources (``_banked_readout``)."""
    s = np.asarray(per_chunk, dtype=np.int64)
    if events > 1:
        flat = s.reshape(-1, *s.shape[-2:])
        return np.array([_banked_readout(one, segments) for one in flat], np.int64).reshape(s.shape[:-2])
    c = s.shape[-1]
    from_here = np.cumsum(s[..., ::-1], -1)[..., ::-1]  # spikes in chunks k .. C-1
    visible = np.maximum(1, np.arange(c) + STAGES + 1 - c)
    last_take = np.where(s > 0, visible + (from_here - 1) * segments, 0).max(-1)
    return np.where(from_here[..., 0] > 0, np.maximum(last_take + segments + 2, STAGES), STAGES)


def li_cycles(outputs: int, mean: bool) -> int:
    """LI: copy the output sums, one output per cycle, four to the argmax (five for a mean readout)."""
    return outputs + 5 + int(mean)


def _own_cycles(input_sources, per_chunk, segments: int, events: int = 1) -> np.ndarray:
    """accept 1 + ACC + UPDATE (chunks + 1) + READOUT: a step's work before its LI. K > 1: ACC
    takes as many rounds as the busiest bank has input spikes."""
    per_chunk = np.asarray(per_chunk)
    chunks = per_chunk.shape[-1] if events == 1 else per_chunk.shape[-2]
    rounds = input_sources if events == 1 else np.asarray(input_sources).max(-1)
    return 1 + _pass(rounds, segments, 0) + chunks + 1 + readout_cycles(per_chunk, segments, events)


def cycle_model(input_sources, per_chunk, outputs: int, segments: int = 1, mean: bool = False,
                events: int = 1) -> np.ndarray:
    """Cycles from accepting an input beat to presenting its output beat (``cycles`` in the output
    payload); one more cycle hands the beat over. accept 1, ACC (input spikes) * segments + 3
    (skipped when there are none), UPDATE chunks + 1, READOUT (``readout_cycles``), LI
    (``li_cycles``). ``per_chunk`` [..., C]: the step's hidden spikes per chunk. K = ``events`` > 1:
    input_sources [..., K] and per_chunk [..., C, K] per bank (``bank_spikes``), ACC is the busiest
    bank's input spikes * segments + 3."""
    return _own_cycles(input_sources, per_chunk, segments, events) + li_cycles(outputs, mean)


def period_model(input_sources, per_chunk, outputs: int, segments: int = 1, mean: bool = False,
                 events: int = 1) -> np.ndarray:
    """Cycles from accepting a beat to accepting the next, in a stream whose next beat is waiting
    and whose beats are taken at once: accept 1, ACC, UPDATE, READOUT; the previous step's LI runs
    beside them and holds the step at READOUT's end only where it is longer (few chunks, many
    outputs: it must be done and its beat taken, LI + 2 cycles after the step was accepted)."""
    return np.maximum(_own_cycles(input_sources, per_chunk, segments, events), li_cycles(outputs, mean) + 2)


def cycle_counter_bits(inputs: int, lanes: int, n_out: int, chunks: int, segments: int, mean: bool = False) -> int:
    """Wide enough for the slowest possible step (every input bit set, every hidden neuron
    spiking; K banks are never slower than one), so the per-step counter can never wrap; at least
    16 bits. Output back-pressure is
    not counted (the count stops when the beat is presented), so no stream length or stall can
    overflow it."""
    slowest = cycle_model(inputs, np.full(chunks, lanes), n_out, segments, mean)
    return max(MIN_CYCLE_COUNTER_BITS, int(slowest).bit_length())


# Up to this many sources the priority encoder is one chain of comparisons (the ECG network's 40);
# beyond it, a two-level tree (a chain over 264 bits exhausts YoWASP Yosys's WebAssembly stack: its
# XAIGER pass recurses along the path, one frame per cell).
FLAT_ENCODER_MAX = 64


def _priority_chain(m: Module, vector, index: Signal) -> None:
    for i in reversed(range(len(vector))):  # later assignments win: the lowest set bit ends up
        with m.If(vector[i]):
            m.d.comb += index.eq(i)


def _source_queue(m: Module, n: int, name: str):
    """A mask of n sources, the index of its lowest set bit (combinational; 0 when none is set)
    and a function that emits, in the current context, the statements clearing that bit. Wide
    masks: groups of W = 2^ceil(log2(sqrt(n))) bits; a chain over the groups' any-set flags finds
    the lowest non-empty group, a mux takes it, a chain over its W bits the bit in it; the index is
    (group, bit). Each group computes its own word & (word - 1) (a W-bit carry chain beside the
    encoder, not after it) and only the lowest non-empty group takes it."""
    index = Signal(range(max(2, n)), name=name)
    if n <= FLAT_ENCODER_MAX:
        mask = Signal(n, name=f"{name}_mask")
        _priority_chain(m, mask, index)

        def take_flat():
            m.d.sync += mask.eq(mask & (mask - 1))
        return mask, index, take_flat
    width = 1 << ((n - 1).bit_length() + 1) // 2  # >= sqrt(n), a power of two
    groups = -(-n // width)
    mask = Signal(groups * width, name=f"{name}_mask")  # the padding bits are never set
    words = [mask.word_select(g, width) for g in range(groups)]
    group = Signal(range(groups), name=f"{name}_group")
    _priority_chain(m, Cat(*(w.any() for w in words)), group)
    word = Signal(width, name=f"{name}_word")
    m.d.comb += word.eq(Array(words)[group])
    bit = Signal(range(width), name=f"{name}_bit")
    _priority_chain(m, word, bit)
    m.d.comb += index.eq(Cat(bit, group))

    def take():
        with m.Switch(group):
            for g, w in enumerate(words):
                with m.Case(g):
                    m.d.sync += w.eq(w & (w - 1))
    return mask, index, take


def _chain_and(terms):
    """``a & b & ...`` left to right (K = 1: the very expression the design always had)."""
    out = terms[0]
    for t in terms[1:]:
        out = out & t
    return out


def _tree_sum(terms):
    """A balanced adder tree (K = 1: the term itself): log2(K) adders deep, not K."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def check_neuron(net: IntNetwork) -> None:
    """A kind without an update stage (``update.UPDATE_STAGES``) is refused by name: it must never
    be built as another kind's hardware, which would compute something else without a word."""
    from ..artifact import HARDWARE_NEURONS

    if net.neuron not in HARDWARE_NEURONS:
        raise ValueError(f"the accelerator implements neuron type(s) {', '.join(HARDWARE_NEURONS)}, "
                         f"not this network's {net.neuron!r}")


class BRFAccelerator(wiring.Component):
    """The streaming accelerator of one integer BRF network: one input beat per step in (spikes or
    multi-bit values and a sequence-start flag), one output beat per step out (hidden spikes,
    output potentials, label, cycles). ``lanes`` neurons are updated per cycle, accumulators are
    split in ``segments``, and ``events`` source events are accumulated per cycle over as many
    synapse-memory banks. Bit-exact with ``brf_hw.golden``; phases and cycle model in the docs."""

    def __init__(self, net: IntNetwork, lanes: int = 1, segments: int | None = None, events: int = 1):
        check_neuron(net)
        self.net = net
        self.images = memory_images(net, lanes, segments, events)
        self.events = events
        self.lanes, self.chunks, self.segments = lanes, self.images.chunks, self.images.segments
        n_in, n_hid, n_out = net.shape
        bits = net.spec.input.bits
        self.mean = net.readout.rule == "mean"
        self.multiply = multiplies_inputs(net.spec)
        self.sources = event_inputs(net) + n_hid
        # the lanes' sums: the synaptic current (events), or the raw recurrent sums (multiply)
        acc = Signal(signed(self.images.acc_bits))
        acc_shape = acc.shape() if self.multiply else ops.current(net.spec, acc).shape()
        self.update = UPDATE_STAGES[net.neuron](net, lanes, self.chunks, acc_shape, self.images.widths["constants"],
                                                self.multiply)
        self.update._MustUse__used = True  # emitted into this module (``update.emit``), never a submodule
        # spike networks keep the field name (and so their Verilog); multi-bit values are "inputs"
        self.input_field = "spikes" if bits == 1 else "inputs"
        self.input_layout = data.StructLayout({self.input_field: unsigned(n_in * bits), "first": unsigned(1)})
        label = unsigned(max(1, (n_out - 1).bit_length()))
        self.output_layout = data.StructLayout({
            "potentials": data.ArrayLayout(signed(net.spec.output.bits), n_out),
            "label": label,
            "spikes": unsigned(n_hid),
            "cycles": unsigned(cycle_counter_bits(event_inputs(net), lanes, n_out, self.chunks, self.segments, self.mean)),
            **({"sum_label": label} if self.mean else {}),
        })
        super().__init__({"inp": In(stream.Signature(self.input_layout)),
                          "out": Out(stream.Signature(self.output_layout))})

    def elaborate(self, platform):
        m = Module()
        net, spec, img = self.net, self.net.spec, self.images
        n_hid, n_out = net.shape[1:]
        P, C = self.lanes, self.chunks
        wb, cb, sb, ob, owb = img.row_bits, spec.coef.bits, spec.state.bits, spec.output.bits, spec.out_weight.bits
        # the accumulators start from ``acc_offset`` and hold any sum of these weights on top of it
        # (``layout.accumulator_bits``), so the slice below never drops a set bit
        offset, acc_bits = acc_offset(spec), img.acc_bits
        out_acc_bits = spec.out_acc_bits(n_hid)

        # block RAM even where a memory is small: a ROM or RAM in logic costs the LUTs we save for
        # the datapath (Yosys reads these attributes; simulators ignore them)
        block = {"ram_style": "block", "rom_style": "block"}
        width = img.widths
        G, A, stride = img.segments, img.segment_size, img.segment_stride
        # K banks (``layout``): bank b's sources b, b + K, ... in its own synapse and output
        # memories, so a cycle reads one row segment from each; K = 1 keeps the unsuffixed names
        K = self.events
        bank_sources = banks(self.sources, K)
        n_events = self.sources - n_hid
        named = (lambda name, b: name) if K == 1 else (lambda name, b: f"{name}_{b}")
        syn = []
        for b, words in enumerate(img.synapse_banks):
            m.submodules[named("synapses", b)] = mem = Memory(
                shape=unsigned(width["synapses"]), depth=len(bank_sources[b]) * stride, init=words, attrs=block)
            syn.append(mem)
        m.submodules.constants = const = Memory(shape=unsigned(width["constants"]), depth=C, init=img.constants,
                                                attrs=block)
        outw = {}  # banks with hidden sources only
        for b, words in enumerate(img.output_banks):
            if words:
                m.submodules[named("out_weights", b)] = outw[b] = Memory(
                    shape=unsigned(width["outputs"]), depth=len(words), init=words, attrs=block)
        m.submodules.state = state = Memory(shape=unsigned(self.update.state_bits), depth=C, init=[], attrs=block)
        # (one tuple: the ports' Verilog names are what they have always been, so K = 1 is unchanged)
        syn_rd, const_rd, outw_rd, state_rd = ([mem.read_port() for mem in syn], const.read_port(),
                                               {b: mem.read_port() for b, mem in outw.items()}, state.read_port())
        state_wr = state.write_port()

        def reg(expr, name, reset_less=True):
            return pipeline_reg(m, expr, name, reset_less)

        cycles = Signal(len(self.out.payload.cycles))
        x_step = Signal(self.input_layout.size - 1, name="x_step", reset_less=True)  # multiply: the step's inputs
        fresh = Signal(init=1)  # the state memory is to be read as zeros (reset, or a sequence start)

        # --- ACC: one row segment per cycle onto a ring of accumulator segments ---------------------
        acc = [Signal(signed(acc_bits), name=f"acc_{h}", init=offset, reset_less=True) for h in range(G * A)]
        ring = [acc[g * A:(g + 1) * A] for g in range(G)]
        # sources still to be accumulated; the next one is registered (``source``, ``have``) while
        # its G segments are read, so the encoder has a cycle of its own, off the address path
        # (one queue per bank; all banks take together, in rounds of G cycles, so their segments
        # reach the adders in step with the ring)
        queues = [_source_queue(m, len(bank), named("next_source", b)) for b, bank in enumerate(bank_sources)]
        masks = [q[0] for q in queues]
        sources = [Signal(range(max(2, len(bank))), name=named("source", b), reset_less=True)
                   for b, bank in enumerate(bank_sources)]
        haves = [Signal(name=named("have", b)) for b in range(K)]  # the bank's ``source`` is being read
        segment = Signal(max(1, (stride - 1).bit_length()))  # the row segment read this cycle
        fetcheds = [Signal(name=named("fetched", b)) for b in range(K)]  # the read port holds last cycle's segment
        have = haves[0] if K == 1 else Cat(*haves).any()
        fetched = fetcheds[0] if K == 1 else Cat(*fetcheds).any()
        rows = []
        for b in range(K):
            m.d.comb += syn_rd[b].addr.eq(Cat(segment, sources[b]) if G > 1 else sources[b])
            # registered before the adders (the block RAM's clock-to-output is most of a cycle); zero
            # when nothing was fetched, so UPDATE can turn the ring through the same adders
            rows.append(Signal(len(syn_rd[b].data), name=named("synapse_row", b), reset_less=True))
            m.d.sync += rows[b].eq(Mux(fetcheds[b], syn_rd[b].data, 0))
        adding = reg(fetched, "adding", reset_less=False)
        issuing = Signal()
        clear = Signal()  # zero the accumulators (after UPDATE, or accepting a beat with first)
        with m.If(adding | issuing):  # segments arrive in ring order, so after G adds the ring is home again
            for g in range(G - 1):
                m.d.sync += [a.eq(b) for a, b in zip(ring[g], ring[g + 1])]
            m.d.sync += [a.eq((b + _tree_sum([field(row, k, wb) for row in rows]))[:acc_bits])
                         for k, (a, b) in enumerate(zip(ring[-1], ring[0]))]
        with m.If(clear):  # after the adds: one sync reset and one enable per FF, no LUTs
            m.d.sync += [a.eq(offset) for a in acc]

        # READOUT's output rows: hidden source n_events + h reads its bank's output word with its
        # first segment (bank b's hidden sources follow its input sources); the row is zero unless
        # fetched, so the O adders run every cycle (no enable)
        acc_o = [Signal(signed(out_acc_bits), name=f"acc_o_{j}", reset_less=True) for j in range(n_out)]
        out_fetched, out_rows = {}, []
        for b, port in outw_rd.items():
            m.d.comb += port.addr.eq(sources[b] - len(range(b, n_events, K)))
            out_fetched[b] = Signal(name=named("out_fetched", b))  # the output read port holds a spiking neuron's row
            out_rows.append(Signal(len(port.data), name=named("out_row", b), reset_less=True))
            m.d.sync += out_rows[-1].eq(Mux(out_fetched[b], port.data, 0))
        m.d.sync += [a.eq(a + _tree_sum([field(row, j, owb) for row in out_rows])) for j, a in enumerate(acc_o)]
        clear_o = Signal()  # READOUT starts (LI copied the last step's sums as it started)
        with m.If(clear_o):
            m.d.sync += [a.eq(0) for a in acc_o]

        # --- UPDATE: the neuron kind's pipeline (``update``), emitted into this module --------------
        chunk = Signal(range(max(2, C)))
        place = Signal(range(max(2, A // P)))  # chunk // G: where in the segment at the adders
        m.d.comb += [state_rd.addr.eq(chunk), const_rd.addr.eq(chunk)]
        # events: the sums' top bits are the synaptic current (``acc_offset``); multiply: the raw
        # recurrent sums, the lanes add w_in . x and round in stage 3
        lane_sum = (lambda a: a) if self.multiply else (lambda a: ops.current(spec, a))
        out = self.update.emit(m, SimpleNamespace(
            valid=issuing, chunk=chunk, fresh=fresh, state=state_rd.data, constants=const_rd.data, inputs=x_step,
            acc=[Array(lane_sum(a) for a in ring[0][p::P])[place] for p in range(P)]))
        valid6, chunk6, z6 = out.valid, out.chunk, out.spikes
        m.d.comb += [state_wr.addr.eq(chunk6), state_wr.en.eq(valid6), state_wr.data.eq(out.new_state)]
        # spikes: a ring of C rows of P lanes that turns once per step, so row 0 is always the
        # chunk leaving the pipeline; after the step it holds the new spike vector in order
        z_ring = [Signal(P, name=f"z_{k}") for k in range(C)]
        z_flat = Cat(*z_ring)[:n_hid]
        with m.If(valid6):
            m.d.sync += [z_ring[k].eq(z_ring[k + 1]) for k in range(C - 1)] + [z_ring[C - 1].eq(Cat(*z6))]
        pipeline_busy = out.busy

        # --- LI: one output per cycle through one multiplier, then a running argmax -------------------
        o = [Signal(signed(ob), name=f"o_{j}") for j in range(n_out)]
        alpha = Array(Const(int(a), signed(cb)) for a in net.alpha)
        li_issuing = Signal()
        li_index = Signal(range(max(2, n_out)))
        # LI runs beside the next step's ACC and UPDATE, so a sequence start cannot zero o and the
        # sums as its beat is accepted: the LI that follows reads them as zero instead
        restart = Signal()  # a beat with ``first`` was accepted since the last LI started
        li_restart = Signal()  # this LI's step starts a sequence
        o_sel = reg(Mux(li_restart, 0, Array(o)[li_index]), "o_sel")
        alpha_sel = reg(alpha[li_index], "alpha_sel")
        # LI's copy of the output sums, taken in its first cycle: READOUT(t+1) may then start while
        # LI(t) runs (the copy is D -> Q with an enable, no LUTs)
        acc_o_li = [Signal.like(a, name=f"acc_o_li_{j}") for j, a in enumerate(acc_o)]
        li_copy = Signal()
        with m.If(li_copy):
            m.d.sync += [c.eq(a) for c, a in zip(acc_o_li, acc_o)]
        acc_o_sel, valid_sel, index_sel = (reg(Array(acc_o_li)[li_index], "acc_o_sel"), reg(li_issuing, "li_valid_sel", False),
                                           reg(li_index, "li_index_sel"))
        o_alpha_a, acc_o_a = reg(o_sel * alpha_sel, "o_alpha_a"), reg(acc_o_sel, "acc_o_a")
        valid_a, index_a = reg(valid_sel, "li_valid_a", False), reg(index_sel, "li_index_a")
        o_new = ops.li_update(spec, acc_o_a, o_alpha_a)
        o_b, valid_b, index_b = reg(o_new, "o_b"), reg(valid_a, "li_valid_b", False), reg(index_a, "li_index_b")
        with m.If(valid_a):
            m.d.sync += Array(o)[index_a].eq(o_new)
        label = Signal.like(self.out.payload.label)
        best = Signal(signed(ob))
        with m.If(valid_b & ((index_b == 0) | (o_b > best))):  # strictly greater: lowest index wins ties
            m.d.sync += [best.eq(o_b), label.eq(index_b)]
        li_busy = li_issuing | valid_sel | valid_a | valid_b
        sums = []
        if self.mean:  # s_j = sat(s_j + o_j), one stage after o_j; then a running argmax of the sums
            sum_bits = net.readout.sum_bits
            sums = [Signal(signed(sum_bits), name=f"sum_{j}") for j in range(n_out)]
            # s_j is selected a stage ahead, beside o_j's update: the O:1 multiplexer and the add
            # in one cycle were the SHD build's critical path (47.5 MHz). Safe: LI visits each j
            # once, so s_j is not rewritten between this read and the add
            s_old_b = reg(Mux(li_restart, 0, Array(sums)[index_a]), "sum_old_b")
            s_next = ops.running_sum(s_old_b, o_b, sum_bits)
            s_c, valid_c, index_c = reg(s_next, "sum_c"), reg(valid_b, "li_valid_c", False), reg(index_b, "li_index_c")
            with m.If(valid_b):
                m.d.sync += Array(sums)[index_b].eq(s_next)
            sum_label = Signal.like(label)
            sum_best = Signal(signed(sum_bits))
            with m.If(valid_c & ((index_c == 0) | (s_c > sum_best))):
                m.d.sync += [sum_best.eq(s_c), sum_label.eq(index_c)]
            li_busy = li_busy | valid_c

        def next_segment(on_wrap=()):
            """The row segment of the next cycle; ``on_wrap`` as it returns to 0 (every cycle at G = 1)."""
            if G > 1:
                with m.If(segment == G - 1):
                    m.d.sync += [segment.eq(0), *on_wrap]
                with m.Else():
                    m.d.sync += segment.eq(segment + 1)
            else:
                m.d.sync += list(on_wrap)

        def accumulate(done):
            """One pass over the set sources of ``mask``, G cycles each; ``done`` when the last row
            is added (this cycle, before the next phase reads the sums)."""
            m.d.sync += [cycles.eq(cycles + 1), *(f.eq(h) for f, h in zip(fetcheds, haves))]
            with m.If(have):
                next_segment()
            with m.If(~have | (segment == G - 1)):  # the sources' last segment: each bank takes its next one
                for b, (mask, lowest, take_lowest) in enumerate(queues):
                    with m.If(mask != 0):
                        m.d.sync += [sources[b].eq(lowest), haves[b].eq(1)]
                        take_lowest()
                    with m.Else():
                        m.d.sync += haves[b].eq(0)
                        if b == K - 1:  # every queue empty (READOUT: every spike arrived)
                            idle = [mk == 0 for mk in masks[:-1]] + [~have, ~fetched, ~pipeline_busy]
                            with m.If(_chain_and(idle)):
                                done()

        # LI and the output beat, beside the next step: LI(t) starts as READOUT(t) ends and the
        # next beat may be accepted; READOUT(t+1) may not hand over to LI before LI(t) is done and
        # beat t taken (HOLD). Cycles spent so waiting are not counted: ``cycles`` is the step's own
        # work, whatever the stream.
        li_running = Signal()
        out_pending = Signal()
        out_cycles = Signal.like(cycles)
        out_spikes = Signal(n_hid, name="out_spikes", reset_less=True)  # z changes in UPDATE(t+1)

        def start_li(count):
            m.d.sync += [li_copy.eq(1), li_index.eq(0), li_running.eq(1), li_restart.eq(restart),
                         restart.eq(0), out_cycles.eq(count), out_spikes.eq(z_flat)]

        with m.If(li_running):
            m.d.sync += out_cycles.eq(out_cycles + 1)
            with m.If(li_copy):
                m.d.sync += [li_copy.eq(0), li_issuing.eq(1)]
            with m.Elif(li_issuing):
                with m.If(li_index == n_out - 1):
                    m.d.sync += li_issuing.eq(0)
                with m.Else():
                    m.d.sync += li_index.eq(li_index + 1)
            with m.Elif(~li_busy):
                m.d.sync += [li_running.eq(0), out_pending.eq(1)]
        with m.If(self.out.valid & self.out.ready):
            m.d.sync += out_pending.eq(0)
        payload = self.out.payload
        m.d.comb += [self.out.valid.eq(out_pending), payload.label.eq(label), payload.spikes.eq(out_spikes),
                     payload.cycles.eq(out_cycles)]
        m.d.comb += [payload.potentials[j].eq(o[j]) for j in range(n_out)]
        if self.mean:
            m.d.comb += payload.sum_label.eq(sum_label)

        def to_update():
            m.d.sync += [issuing.eq(1), chunk.eq(0)]
            m.next = "UPDATE"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.inp.ready.eq(1)
                with m.If(self.inp.valid):
                    first = self.inp.payload.first
                    inputs = getattr(self.inp.payload, self.input_field)
                    m.d.sync += cycles.eq(1)
                    if self.multiply:
                        m.d.sync += x_step.eq(inputs)
                    else:  # bank b's input sources are inputs b, b + K, ...
                        m.d.sync += [mask.eq(inputs if K == 1 else inputs[b:n_events:K]) for b, mask in enumerate(masks)]
                    with m.If(first | fresh):  # the last step's spikes were accumulated for nothing
                        m.d.comb += clear.eq(1)  # (or, after a reset, whatever the sums hold)
                    with m.If(first):
                        m.d.sync += [fresh.eq(1), restart.eq(1)]
                    if self.multiply:  # the lanes weight the inputs: nothing to accumulate
                        to_update()
                    else:
                        with m.If(inputs == 0):  # no input spike: straight on to UPDATE
                            to_update()
                        with m.Else():
                            m.next = "ACC"

            with m.State("ACC"):
                accumulate(to_update)

            with m.State("UPDATE"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(issuing):
                    next_segment([place.eq(place + 1)])
                    with m.If(chunk == C - 1):  # C is a multiple of G: the ring is home again
                        m.d.sync += [issuing.eq(0), chunk.eq(0), place.eq(0)]
                    with m.Else():
                        m.d.sync += chunk.eq(chunk + 1)
                # every chunk has read its sums (stage 1 of the last one reads ``fresh`` now); its
                # spikes join the source queue as they leave the pipeline (below), READOUT takes them
                with m.Else():
                    m.d.comb += [clear.eq(1), clear_o.eq(1)]
                    m.d.sync += fresh.eq(0)
                    m.next = "READOUT"

            with m.State("READOUT"):
                m.d.sync += [f.eq(haves[b] & (segment == 0)) for b, f in out_fetched.items()]

                def to_li():
                    with m.If(out_pending | li_running):  # the last LI is running or its beat untaken
                        m.next = "HOLD"
                    with m.Else():
                        start_li(cycles + 1)
                        m.next = "IDLE"
                accumulate(to_li)

            with m.State("HOLD"):
                with m.If(~out_pending & ~li_running):
                    start_li(cycles)
                    m.next = "IDLE"
        # a chunk's spikes join the source queue as it leaves the pipeline (after the FSM: the bits
        # are clear until then, so this and a take of the same cycle touch different bits)
        for k in range(C):
            bits = min(P, n_hid - k * P)
            if bits > 0:
                with m.If(valid6 & (chunk6 == k)):
                    if K == 1:
                        m.d.sync += masks[0][n_events + k * P:n_events + k * P + bits].eq(Cat(*z6)[:bits])
                    else:  # source s to bank s mod K, bit s // K
                        m.d.sync += [masks[s % K][s // K].eq(z6[p])
                                     for p, s in enumerate(range(n_events + k * P, n_events + k * P + bits))]
        return m
