"""How an IntNetwork is laid out in the accelerator's memories (pure numpy; shared by the
generator, its memory-init files and the tests).

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
  synapse memory  depth (I*b + H) * S, word s*S + g = weights from source s onto segment g's
                  accumulators in offset order (words s*S + G .. s*S + S-1 unused, zero), aligned to
                  the accumulator (sources 0..I*b-1: the bits of the b-bit inputs, bit k of input i
                  is source i*b + k with row w_in[:, i] << k (bit-serial: the input values
                  concatenated little-end first are the inputs' source bits); I*b..I*b+H-1:
                  hidden neurons)                                   width A * synapse_bits
  constant memory depth C, word k = d of lanes 0..P-1, then c of lanes 0..P-1  width 2*P*coef.bits
  output memory   depth H, word h = the weights from hidden neuron h onto outputs 0..O-1
                                                                    width O * out_weight.bits
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..fixed.spec import IntNetwork

# Two segments halve the accumulator adders (the largest block of carry logic) for one more cycle
# per active source: on the ECP5 at lanes 1, 3,088 -> 2,728 LUTs and 14 -> 10 block RAMs,
# 103 -> 102 MHz (the ECG network on the previous design).
DEFAULT_SEGMENTS = 2


def pack(fields, bits: int) -> int:
    word = 0
    for i, value in enumerate(fields):
        word |= (int(value) & ((1 << bits) - 1)) << (i * bits)
    return word


@dataclass(frozen=True)
class MemoryImages:
    lanes: int
    chunks: int
    segments: int
    segment_size: int  # A: accumulators per segment
    segment_stride: int  # S: synapse-memory words per source
    synapses: list[int]
    constants: list[int]
    outputs: list[int]
    widths: dict[str, int]  # word width of each memory, by the names above


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


def accumulator_order(chunks: int, lanes: int, segments: int) -> np.ndarray:
    """[C*P]: the hidden neuron at each accumulator position g*A + a (segment g, offset a)."""
    a = np.arange(chunks // segments * lanes)
    g = np.arange(segments)[:, None]
    return (((a // lanes) * segments + g) * lanes + a % lanes).reshape(-1)


def source_rows(net: IntNetwork) -> np.ndarray:
    """[H, I*b + H]: column s = the aligned weights from source s (input bit rows, then hidden)."""
    w_in, w_rec = net.aligned_weights()
    bits = net.spec.input.bits
    w_bits = (w_in[:, :, None] << np.arange(bits, dtype=np.int64)).reshape(w_in.shape[0], -1)
    return np.concatenate([w_bits, w_rec], axis=1)


def active_sources(x: np.ndarray, bits: int) -> np.ndarray:
    """x [..., I] input values -> [...] the set input bits: the input sources a step accumulates."""
    x = np.asarray(x, dtype=np.int64)
    return sum(((x >> k) & 1).sum(-1) for k in range(bits))


def memory_images(net: IntNetwork, lanes: int, segments: int | None = None) -> MemoryImages:
    n_in, n_hid, n_out = net.shape
    chunks, segments = geometry(n_hid, lanes, segments)
    pad = chunks * lanes - n_hid
    size = chunks // segments * lanes
    spec = net.spec
    sources = np.pad(source_rows(net), ((0, pad), (0, 0)))  # [C*P, I*b+H]: column s = weights from s
    sources = sources[accumulator_order(chunks, lanes, segments)]  # rows in accumulator order
    stride = 1 << (segments - 1).bit_length()
    synapses = [pack(sources[g * size:(g + 1) * size, s], spec.synapse_bits) if g < segments else 0
                for s in range(sources.shape[1]) for g in range(stride)]
    d, c = np.pad(net.d, (0, pad)), np.pad(net.c, (0, pad))  # padded lanes: d = c = 0, never spike
    constants = [pack(list(d[k * lanes:(k + 1) * lanes]) + list(c[k * lanes:(k + 1) * lanes]), spec.coef.bits)
                 for k in range(chunks)]
    outputs = [pack(net.w_out[:, h], spec.out_weight.bits) for h in range(n_hid)]
    widths = {"synapses": size * spec.synapse_bits, "constants": 2 * lanes * spec.coef.bits,
              "outputs": n_out * spec.out_weight.bits}
    return MemoryImages(lanes, chunks, segments, size, stride, synapses, constants, outputs, widths)
