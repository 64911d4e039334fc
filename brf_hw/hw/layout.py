"""How an IntNetwork is laid out in the accelerator's memories (pure numpy; shared by the
generator, its memory-init files and the tests).

Lanes: P neurons are updated per cycle, so hidden neuron h lives in chunk h // P, lane h % P;
C = ceil(H / P) chunks, padded to C*P neurons (padding: zero weights and constants, never spikes).
Words pack fields little-end first, each in two's complement.
  synapse memory  depth I + H, word s = weights from source s onto all C*P neurons, aligned to
                  the accumulator (sources 0..I-1: inputs, I..I+H-1: hidden neurons)
                                                                    width C*P * synapse_bits
  constant memory depth C, word k = d of lanes 0..P-1, then c of lanes 0..P-1  width 2*P*coef.bits
  output memory   depth C, word k = for lanes 0..P-1, the weights from hidden neuron k*P+p onto
                  outputs 0..O-1                                    width P*O * out_weight.bits
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..fixed.spec import IntNetwork


def pack(fields, bits: int) -> int:
    word = 0
    for i, value in enumerate(fields):
        word |= (int(value) & ((1 << bits) - 1)) << (i * bits)
    return word


@dataclass(frozen=True)
class MemoryImages:
    lanes: int
    chunks: int
    synapses: list[int]
    constants: list[int]
    outputs: list[int]
    widths: dict[str, int]  # word width of each memory, by the names above


def memory_images(net: IntNetwork, lanes: int) -> MemoryImages:
    n_in, n_hid, n_out = net.shape
    if not 1 <= lanes <= n_hid:
        raise ValueError(f"lanes must be 1..{n_hid} (hidden neurons), got {lanes}")
    chunks = math.ceil(n_hid / lanes)
    pad = chunks * lanes - n_hid
    spec = net.spec
    sources = np.concatenate(net.aligned_weights(), axis=1)  # [H, I+H]: column s = weights from s
    sources = np.pad(sources, ((0, pad), (0, 0)))
    synapses = [pack(sources[:, s], spec.synapse_bits) for s in range(n_in + n_hid)]
    d, c = np.pad(net.d, (0, pad)), np.pad(net.c, (0, pad))  # padded lanes: d = c = 0, never spike
    constants = [pack(list(d[k * lanes:(k + 1) * lanes]) + list(c[k * lanes:(k + 1) * lanes]), spec.coef.bits)
                 for k in range(chunks)]
    w_out = np.pad(net.w_out.T, ((0, pad), (0, 0)))  # [C*P, O]
    outputs = [pack(w_out[k * lanes:(k + 1) * lanes].reshape(-1), spec.out_weight.bits) for k in range(chunks)]
    widths = {"synapses": chunks * lanes * spec.synapse_bits, "constants": 2 * lanes * spec.coef.bits,
              "outputs": lanes * n_out * spec.out_weight.bits}
    return MemoryImages(lanes, chunks, synapses, constants, outputs, widths)
