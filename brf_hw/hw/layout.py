"""How an IntNetwork is laid out in the accelerator's memories (pure numpy; shared by the
generator, its memory-init files and the tests).

Inputs, two schemes, by the input format's bits b:
  b = 1 (spikes: ECG, SHD)  events: each input spike is a source like a hidden spike, its weight
                            row added in ACC, so cycles grow with spikes, not synapses.
  b > 1 (pixels: S-MNIST)   each lane multiplies the step's I input values by its neuron's I input
                            weights in UPDATE (I small multipliers per lane, the DSPs' job) and
                            adds them to the recurrent sum. Bit-serial events (a source per set
                            bit, rows shifted by the bit) would cost G cycles per set bit and rows
                            b - 1 bits wider in every accumulator and synapse-memory word (the
                            shipped 1-256-10, u8, lanes 8 on the ECP5: 24-bit accumulators,
                            9,964 LUT4, 125 block RAMs bit-serial; 14 bits, 8,382, 51 so).
Either way the sum is the golden model's: rshift((w_in @ x) << in_align + (w_rec @ z) << rec_align,
weight_shift), exactly.
Lanes: P neurons are updated per cycle, so hidden neuron h lives in chunk h // P, lane h % P;
C = ceil(H / P) chunks, rounded up to a multiple of G (padding: zero weights and constants, never
spikes).
Words pack fields little-end first, each in two's complement.
Segments: the C*P accumulators form a ring of G segments of A = (C / G) * P; one segment of a
source's row is added per cycle. Segment g holds the chunks k = g (mod G), chunk k at offsets
(k // G) * P .. + P - 1: UPDATE turns the ring one segment per chunk and reads chunk k from the
segment at the adders with an (A / P):1 multiplexer per lane, not a C:1 one over all
accumulators. A source's segments sit at a power-of-two stride S >= G, so the address is the
source index with the segment index below it (no multiplier).
  synapse memory  depth sources * S, word s*S + g = the row fields from source s onto segment g's
                  accumulators in offset order (words s*S + G .. s*S + S-1 unused, zero). Sources:
                  events: the I inputs (w_in aligned), then the H hidden neurons (w_rec aligned);
                  multiply: the H hidden neurons (w_rec as it is: the lanes align)
                                                                    width A * row_bits
  constant memory depth C, word k = d of lanes 0..P-1, then c of lanes 0..P-1 (coef.bits each),
                  multiply: then lane p's I input weights at p*I .. p*I + I-1 (weight.bits each)
  output memory   depth H, word h = the weights from hidden neuron h onto outputs 0..O-1
                                                                    width O * out_weight.bits
Events K (``banks``): the sources are dealt over K banks, source s to bank s mod K at local index
s // K, so the K sources a cycle reads (one per bank) never meet in one memory. Bank b has its own
synapse memory (words (s // K) * S + g) and output memory (its hidden sources in order, the first
at word 0), each a 1/K slice of the memories above; K = 1 is the single memory of each.
Accumulators are as wide as the sums these weights can reach (every source active, each row's
positive or each row's negative weights), from ``acc_offset``: never a wrap, no saturation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..fixed.spec import FixedSpec, IntNetwork

# Two segments halve the accumulator adders (the largest block of carry logic) for one more cycle
# per active source: on the ECP5 at lanes 1, 3,088 -> 2,728 LUTs and 14 -> 10 block RAMs,
# 103 -> 102 MHz (the ECG network on an earlier design).
DEFAULT_SEGMENTS = 2


def pack(fields, bits: int) -> int:
    word = 0
    for i, value in enumerate(fields):
        word |= (int(value) & ((1 << bits) - 1)) << (i * bits)
    return word


def multiplies_inputs(spec: FixedSpec) -> bool:
    """Multi-bit inputs are weighted by the lanes' multipliers, spikes are events (see above)."""
    return spec.input.bits > 1


def event_inputs(net: IntNetwork) -> int:
    """Inputs that are sources of the accumulation (their spikes queue like hidden spikes)."""
    return 0 if multiplies_inputs(net.spec) else net.shape[0]


def acc_offset(spec: FixedSpec) -> int:
    """rshift's rounding constant for the synaptic current in the event scheme: an accumulator that
    starts from it (not 0) holds acc + offset, whose top bits are rshift(acc, weight_shift) as they
    stand, so a lane reads weight_shift fewer bits and adds nothing. The multiply scheme's lanes add
    the input term before they shift, and round there (offset 0)."""
    if multiplies_inputs(spec) or spec.weight_shift <= 0:
        return 0
    return 1 << (spec.weight_shift - 1)


@dataclass(frozen=True)
class MemoryImages:
    lanes: int
    chunks: int
    segments: int
    segment_size: int  # A: accumulators per segment
    segment_stride: int  # S: synapse-memory words per source
    row_bits: int  # a synapse-row field
    acc_bits: int  # an accumulator (signed)
    synapse_banks: list[list[int]]  # per bank (``banks``)
    constants: list[int]
    output_banks: list[list[int]]
    widths: dict[str, int]  # word width of each memory kind: synapses, constants, outputs

    @property
    def events(self) -> int:
        return len(self.synapse_banks)

    @property
    def synapses(self) -> list[int]:
        """Every bank's synapse words, bank after bank (K = 1: the synapse memory)."""
        return [w for bank in self.synapse_banks for w in bank]

    @property
    def outputs(self) -> list[int]:
        return [w for bank in self.output_banks for w in bank]

    def memories(self) -> list[tuple[str, int, list[int]]]:
        """(name, word width, words) of each memory: K = 1 synapses, constants, outputs; else one
        synapses_b and outputs_b per bank b (an output bank without hidden sources has none)."""
        def named(kind, banks):
            if len(banks) == 1:
                return [(kind, self.widths[kind], banks[0])]
            return [(f"{kind}_{b}", self.widths[kind], words) for b, words in enumerate(banks) if words]
        return named("synapses", self.synapse_banks) + [("constants", self.widths["constants"], self.constants)] \
            + named("outputs", self.output_banks)


def geometry(hidden: int, lanes: int, segments: int | None = None) -> tuple[int, int]:
    """(chunks, segments) for ``hidden`` neurons, or a ValueError naming the bad parameter.
    ``segments`` None: DEFAULT_SEGMENTS, or fewer where there are fewer chunks. Chunks are rounded
    up to a multiple of the segments (a segment holds whole chunks)."""
    if not 1 <= lanes <= hidden:
        raise ValueError(f"lanes must be 1..{hidden} (hidden neurons), got {lanes}")
    chunks = math.ceil(hidden / lanes)
    if segments is None:
        segments = min(DEFAULT_SEGMENTS, chunks)
    if not 1 <= segments <= chunks:
        raise ValueError(f"segments must be 1..{chunks} (chunks of {lanes} lanes), got {segments}")
    return math.ceil(chunks / segments) * segments, segments


def check_events(sources: int, events: int) -> None:
    """A ValueError naming ``events`` unless 1 <= K <= sources (a bank without a source has no memory)."""
    if not 1 <= events <= sources:
        raise ValueError(f"events must be 1..{sources} (sources: input events + hidden neurons), got {events}")


def banks(sources: int, events: int) -> list[range]:
    """The global source indices of each bank (bank b: s = b, b + K, ...; local index s // K)."""
    return [range(b, sources, events) for b in range(events)]


def accumulator_order(chunks: int, lanes: int, segments: int) -> np.ndarray:
    """[C*P]: the hidden neuron at each accumulator position g*A + a (segment g, offset a)."""
    a = np.arange(chunks // segments * lanes)
    g = np.arange(segments)[:, None]
    return (((a // lanes) * segments + g) * lanes + a % lanes).reshape(-1)


def source_rows(net: IntNetwork) -> np.ndarray:
    """[H, sources]: column s = the synapse-memory row of source s (see the module docstring)."""
    if multiplies_inputs(net.spec):
        return np.asarray(net.w_rec, dtype=np.int64)
    return np.concatenate(net.aligned_weights(), axis=1)


def row_bits(spec: FixedSpec) -> int:
    """Width of a synapse-row field: an aligned input or recurrent weight (events), a recurrent
    weight as it is (multiply)."""
    if multiplies_inputs(spec):
        return spec.rec_weight.bits
    return max(spec.weight.bits + spec.in_align, spec.rec_weight.bits + spec.rec_align)


def signed_bits(low: int, high: int) -> int:
    """Two's-complement bits that hold every integer in [low, high]."""
    return max(int(high).bit_length(), int(-low - 1).bit_length() if low < 0 else 0) + 1


def accumulator_bits(net: IntNetwork) -> int:
    """Bits of an accumulator: the offset plus every positive (or every negative) row field of a
    neuron, the widest neuron; at least a row field's width."""
    rows = source_rows(net)
    offset = acc_offset(net.spec)
    high = offset + int(np.clip(rows, 0, None).sum(1).max(initial=0))
    low = offset + int(np.clip(rows, None, 0).sum(1).min(initial=0))
    return max(signed_bits(low, high), row_bits(net.spec))


def input_events(x: np.ndarray, bits: int) -> np.ndarray:
    """x [..., I] input values -> [...] the input sources a step accumulates in ACC: its input
    spikes (b = 1); none where the lanes multiply (b > 1)."""
    x = np.asarray(x, dtype=np.int64)
    return x.sum(-1) if bits == 1 else np.zeros(x.shape[:-1], np.int64)


def memory_images(net: IntNetwork, lanes: int, segments: int | None = None, events: int = 1) -> MemoryImages:
    n_in, n_hid, n_out = net.shape
    chunks, segments = geometry(n_hid, lanes, segments)
    n_sources = event_inputs(net) + n_hid
    check_events(n_sources, events)
    pad = chunks * lanes - n_hid
    size = chunks // segments * lanes
    spec = net.spec
    rb = row_bits(spec)
    sources = np.pad(source_rows(net), ((0, pad), (0, 0)))  # [C*P, sources]: column s = weights from s
    sources = sources[accumulator_order(chunks, lanes, segments)]  # rows in accumulator order
    stride = 1 << (segments - 1).bit_length()
    synapse_banks = [[pack(sources[g * size:(g + 1) * size, s], rb) if g < segments else 0
                      for s in bank for g in range(stride)] for bank in banks(n_sources, events)]
    # the kind's per-neuron coefficients (d, c; alpha_m, rho), one field per lane each, in that
    # order; padded lanes hold zeros and no weights
    coefs = [np.pad(getattr(net, name), (0, pad)) for name in net.kind.arrays]
    w_in = np.pad(net.w_in, ((0, pad), (0, 0)))
    multiply = multiplies_inputs(spec)
    coef_bits = len(coefs) * lanes * spec.coef.bits
    constants = [pack([x for a in coefs for x in a[k * lanes:(k + 1) * lanes]], spec.coef.bits)
                 | (pack(w_in[k * lanes:(k + 1) * lanes].reshape(-1), spec.weight.bits) << coef_bits if multiply else 0)
                 for k in range(chunks)]
    n_events = n_sources - n_hid
    output_banks = [[pack(net.w_out[:, s - n_events], spec.out_weight.bits) for s in bank if s >= n_events]
                    for bank in banks(n_sources, events)]
    widths = {"synapses": size * rb, "constants": coef_bits + (lanes * n_in * spec.weight.bits if multiply else 0),
              "outputs": n_out * spec.out_weight.bits}
    return MemoryImages(lanes, chunks, segments, size, stride, rb, accumulator_bits(net), synapse_banks, constants,
                        output_banks, widths)
