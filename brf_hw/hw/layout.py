"""How an IntNetwork is laid out in the accelerator's memories (pure numpy; shared by the
generator, its memory-init files and the tests).

Lanes: P neurons are processed per cycle, so hidden neuron h lives in chunk h // P, lane h % P;
C = ceil(H / P) chunks. Words pack lanes little-end first, each field in two's complement.
  synapse memory  depth (I + H) * C, word s*C + k = weights onto chunk k from source s
                  (sources 0..I-1: inputs, I..I+H-1: hidden neurons)   width P * weight.bits
  constant memory depth C, word k = d of lanes 0..P-1, then c of lanes 0..P-1  width 2*P*coef.bits
  output memory   depth H, word j = weights from hidden j onto outputs 0..O-1  width O * out_weight.bits
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


def memory_images(net: IntNetwork, lanes: int) -> MemoryImages:
    n_in, n_hid, n_out = net.shape
    if not 1 <= lanes <= n_hid:
        raise ValueError(f"lanes must be 1..{n_hid} (hidden neurons), got {lanes}")
    chunks = math.ceil(n_hid / lanes)
    pad = chunks * lanes - n_hid
    spec = net.spec
    sources = np.concatenate([net.w_in, net.w_rec], axis=1)  # [H, I+H]: column s = weights from s
    sources = np.pad(sources, ((0, pad), (0, 0)))
    synapses = [pack(sources[k * lanes:(k + 1) * lanes, s], spec.weight.bits)
                for s in range(n_in + n_hid) for k in range(chunks)]
    d, c = np.pad(net.d, (0, pad)), np.pad(net.c, (0, pad))  # padded lanes: d = c = 0, never spike
    constants = [pack(list(d[k * lanes:(k + 1) * lanes]) + list(c[k * lanes:(k + 1) * lanes]), spec.coef.bits)
                 for k in range(chunks)]
    outputs = [pack(net.w_out[:, j], spec.out_weight.bits) for j in range(n_hid)]
    return MemoryImages(lanes, chunks, synapses, constants, outputs)
