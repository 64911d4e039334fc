"""What the accelerator needs of an FPGA, estimated before Yosys runs (numpy only, milliseconds),
so a shape that cannot fit a target is refused at once instead of after minutes of synthesis.

  block RAM  exact from ``layout``: each memory (synapses, constants, output weights, state) in the
             fewest blocks of one aspect ratio (ECP5 DP16KD: 16384x1 .. 512x36; iCE40 SB_RAM40_4K:
             2048x2 .. 256x16); a ROM's bit columns that are equal in every word are dropped, as
             Yosys does. Matches all seven measured builds in the README (ECG lanes 1/2/4 on the
             ECP5, lanes 1 on the UP5K, S-MNIST lanes 8, the SHD shape at lanes 8 and 16).
  DSP        one multiplier per product: six per lane (dt*q, the four rotation products, gamma*q;
             ALIF three: alpha_m*u, beta*a, rho*(a - z); LIF one),
             one per input per lane where the lanes weight multi-bit inputs, one for LI (ECP5: the
             six measured builds exactly; the UP5K maps one fewer, measured at lanes 1).
  LUT4       a linear fit to the six measured ECP5 builds (packed LUTs from nextpnr): a fixed part,
             one per lane (the BRF datapath), one per accumulator bit at the adders (the adders
             and the lanes' (A/P):1 multiplexers) and one per source (the queue and its encoder);
             within 6 % of every measured row. iCE40 logic cells are 1.32x the ECP5 figure (the
             one measured UP5K build). Extrapolated, so a refusal on LUTs only where even
             ``LUT_ERROR`` below the estimate does not fit.
The iCE40 UP5K's four 256-kbit SPRAMs are not counted: they cannot be initialized (the weights
are ROMs) and this flow does not infer them for the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .layout import geometry, memory_images, multiplies_inputs

# block RAM aspect ratios (width, depth) that Yosys maps to, and the block's size in kbit
BLOCK_SHAPES = {"ecp5": ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512)),
                "ice40": ((2, 2048), (4, 1024), (8, 512), (16, 256))}
BLOCK_KBIT = {"ecp5": 18, "ice40": 4}
# LUT4 ~ fixed + per lane * P + per accumulator bit * A * acc_bits + per source * sources (least
# squares over the README's ECP5 rows: 1,826 / 2,237 / 3,211 ECG, 9,440 S-MNIST, 10,936 / 16,108 SHD)
LUT_FIT = {"fixed": 877.0, "lane": 370.0, "acc_bit": 2.29, "source": 5.68}
BANK_SHARE = 0.65  # the per-accumulator-bit LUTs of each further bank of K, relative to the first
ICE40_LC_PER_LUT = 2541 / 1927  # the UP5K's logic cells over the fit's ECP5 figure, ECG lanes 1
LUT_ERROR = 0.15  # the residuals are <= 6 %; room for extrapolating to other shapes
STATE_BITS, WEIGHT_BITS = 16, 8  # the formats of an untrained --shape network


@dataclass(frozen=True)
class Memory:
    name: str
    depth: int
    width: int  # bits that reach a block (a ROM's constant columns dropped)

    def blocks(self, family: str) -> int:
        if self.width == 0:
            return 0
        return min(math.ceil(self.width / w) * math.ceil(self.depth / d) for w, d in BLOCK_SHAPES[family])


@dataclass(frozen=True)
class Estimate:
    lanes: int
    segments: int
    memories: tuple[Memory, ...]
    lut_ecp5: float
    multipliers: int  # ECP5 MULT18X18D

    def need(self, family: str) -> dict[str, float]:
        """{"lut", "dsp", "bram"} in the family's units (iCE40: logic cells, SB_MAC16, 4-kbit EBR)."""
        ice40 = family == "ice40"
        return {"lut": self.lut_ecp5 * (ICE40_LC_PER_LUT if ice40 else 1),
                "dsp": self.multipliers - 1 if ice40 else self.multipliers,
                "bram": sum(m.blocks(family) for m in self.memories)}

    def memory_kbit(self) -> float:
        return sum(m.depth * m.width for m in self.memories) / 1024


def _varying_columns(words: list[int], width: int) -> int:
    """Bit columns of a ROM that differ between words (Yosys drops the others)."""
    if not words:
        return width
    ones, zeros = 0, (1 << width) - 1
    for w in words:
        ones |= w
        zeros &= w
    return bin(ones & ~zeros).count("1")


def _lut(lanes: int, segment_size: int, acc_bits: int, sources: int, events: int = 1) -> float:
    """K = ``events`` banks: an accumulator bit takes K adders (a tree over the K row segments and
    the add onto the ring); each bank beyond the first costs ``BANK_SHARE`` of the per-bit term
    (fitted to the three measured K > 1 builds, Yosys counts: SHD lanes 8 G 2 K 4 15,713 LUT4,
    lanes 16 G 1 K 4 24,464, S-MNIST lanes 8 G 2 K 2 11,881; all three within 4 %)."""
    f = LUT_FIT
    return (f["fixed"] + f["lane"] * lanes + f["acc_bit"] * segment_size * acc_bits * (1 + BANK_SHARE * (events - 1))
            + f["source"] * sources)


def estimate_network(net, lanes: int, segments: int | None = None, events: int = 1) -> Estimate:
    """The estimate for an integer network as the generator would lay it out (exact memories; K
    = ``events`` banks each round their synapse and output memories up to whole blocks)."""
    img = memory_images(net, lanes, segments, events)
    n_in, n_hid, _ = net.shape
    multiply = multiplies_inputs(net.spec)
    sources = n_hid + (0 if multiply else n_in)
    banked = tuple(Memory("synapses", len(words), _varying_columns(words, img.widths["synapses"]))
                   for words in img.synapse_banks) \
        + tuple(Memory("output weights", len(words), _varying_columns(words, img.widths["outputs"]))
                for words in img.output_banks if words)
    memories = banked + (Memory("constants", img.chunks, _varying_columns(img.constants, img.widths["constants"])),
                # the kind's stored state: u, v and q (q only where it enters the step, not in RF); ALIF u, a
                Memory("state", img.chunks, len(net.kind.stored_state) * lanes * net.spec.state.bits))
    return Estimate(lanes, img.segments, memories, _lut(lanes, img.segment_size, img.acc_bits, sources, events),
                    lanes * (net.kind.multipliers + (n_in if multiply else 0)) + 1)


def estimate_shape(shape: tuple[int, int, int], lanes: int, segments: int | None, input_bits: int,
                   events: int = 1) -> Estimate:
    """The estimate for an untrained network of ``shape`` without building it: a lower bound, so a
    refusal from it is safe (the network's exact memories are checked again before Yosys). 8-bit
    weight fields with every bit in use (random weights; trained rows are 8-9 bits), accumulators
    no wider than a field, and the constants' d and c left out (Yosys trims their columns by
    content: 140 of 256 bits for the SHD shape at lanes 8)."""
    n_in, n_hid, n_out = shape
    chunks, segments = geometry(n_hid, lanes, segments)
    size = chunks // segments * lanes
    stride = 1 << (segments - 1).bit_length()
    multiply = input_bits > 1
    sources = n_hid + (0 if multiply else n_in)
    events = max(1, min(events, sources))
    per_bank = [len(range(b, sources, events)) for b in range(events)]
    hidden_per_bank = [len([s for s in range(b, sources, events) if s >= sources - n_hid]) for b in range(events)]
    memories = tuple(Memory("synapses", n * stride, size * WEIGHT_BITS) for n in per_bank) \
        + tuple(Memory("output weights", n, n_out * WEIGHT_BITS) for n in hidden_per_bank if n) \
        + (Memory("constants", chunks, lanes * n_in * WEIGHT_BITS if multiply else 0),
           Memory("state", chunks, 3 * lanes * STATE_BITS))
    return Estimate(lanes, segments, memories, _lut(lanes, size, WEIGHT_BITS, sources, events),
                    lanes * (6 + (n_in if multiply else 0)) + 1)


def refusal(estimates: list[Estimate], devices: list[dict], family: str) -> str | None:
    """None if some device of ``family`` holds one of the ``estimates`` (alternatives: a shape
    whose input format is not known yet is estimated both ways); else the reason, naming each
    resource of the first estimate that the family's largest device lacks, and the numbers."""
    family_devices = [d for d in devices if d["family"] == family]

    def fits(need, d):
        return need["bram"] <= d["bram"] and need["dsp"] <= d["dsp"] and need["lut"] * (1 - LUT_ERROR) <= d["lut"]

    if any(fits(e.need(family), d) for e in estimates for d in family_devices):
        return None
    estimate, big = estimates[0], family_devices[-1]
    need = estimate.need(family)
    reasons = []
    if need["bram"] > big["bram"]:
        reasons.append(f"block RAM: needs {need['bram']:,} {BLOCK_KBIT[family]}-kbit blocks for "
                       f"{estimate.memory_kbit():,.0f} kbit of memories, the {big['name']} has {big['bram']:,}")
    if need["dsp"] > big["dsp"]:
        reasons.append(f"multipliers: needs {need['dsp']:,}, the {big['name']} has {big['dsp']:,}")
    if need["lut"] * (1 - LUT_ERROR) > big["lut"]:
        unit = "logic cells" if family == "ice40" else "LUT4"
        reasons.append(f"{unit}: needs about {need['lut']:,.0f} (at least {need['lut'] * (1 - LUT_ERROR):,.0f}), "
                       f"the {big['name']} has {big['lut']:,}")
    return "; ".join(reasons)
