"""Energy per step and per inference of the accelerator: an ESTIMATE (no board here to measure;
open FPGA flows have no power estimator). The model and its sources: docs/hardware/energy.md.

    E_step = P_static * cycles / f                               static, while the step runs
           + cycles * (E_clock + N_LUT * e_LUT)                  clock tree and logic, every cycle
           + e_BRAM * sum over memories of accesses * blocks read per access
           + e_DSP * multiplies

per step, averaged over the golden model's steps on real test sequences (the event counts):
cycles from ``core.period_model`` (a step in a stream at Fmax); synapse-memory reads G per
source (input spikes and hidden spikes), constants one per chunk, state one read and one write
per chunk, output weights one per hidden spike; multiplies 6 per neuron update (BRF; BHRF 5, ALIF 3, LIF 1; + one per input
where the lanes weight multi-bit inputs) over all C*P lanes and one per output in LI. N_LUT and
f come from nextpnr (or the pre-Yosys estimate). Each coefficient is a (low, central, high)
triple; the range reported takes every coefficient low, then every one high.

    python -m brf_hw.hw.energy --artifact A --target ice40 --lanes 1 --fmax 24.4 [--luts 2540]
    python -m brf_hw.hw.energy --shape 700-128-20 --target ecp5 --lanes 8 --fmax 35
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .layout import geometry, input_events, multiplies_inputs
from .resources import BLOCK_SHAPES, estimate_network

# (low, central, high). iCE40 UP5K from tinyvision-ai ice40_power (UP5K-SG48 on the Lattice
# breakout board, every rail measured with a Joulescope; core at 1.219 V):
#   static  core with the clock halted 92.1 uA (blank design 85.6) + PLL 4.4 uA -> 0.10-0.15 mW
#           (the high end also takes the 151 uW "minimal functional FPGA" figure, banks included)
#   clock   external 12 MHz counter 613.5 uA vs halted 92.1: 43.4 uA/MHz -> 53 pJ a cycle
#   LUT     a logic cell a cycle: 32 -> 228 counter LCs +27.8 uA at 12 MHz -> 0.014 pJ (counter
#           bits, little toggling); an 8x8 multiplier in 180 LCs +351 uA -> 0.20 pJ (busy logic)
#   DSP     the same multiply in one SB_MAC16: +237 uA at 12 MHz -> 24 pJ a multiply (counters
#           included); 16x16 products toggle more bits: up to 2x
#   BRAM    not measured there: a 4-kbit EBR read of 16 bits, Horowitz (ISSCC 2014) SRAM
#           ~0.16 pJ/bit at 45 nm -> 2.5 pJ, x2 for the FPGA's routing to the block; 2.5-10 pJ
# ECP5 (40 nm like the UP5K, 1.1 V core, a larger die): the iCE40 figures times (1.1/1.2)^2 for the
# voltage and 1-3x for longer wires (clock tree 2-6x: 5-16x the UP5K's logic); an 18-kbit block read
# of 36 bits ~2x the iCE40's; static from the ECP5 data sheet's standby supply currents (core and
# auxiliary rails), which could not be re-read here: 0.5-1.5x the central value, to be checked
COEFFICIENTS = {
    "ice40": {"static_mw": (0.104, 0.117, 0.151), "clock_pj": (52.0, 53.0, 55.0), "lut_pj": (0.014, 0.053, 0.20),
              "bram_pj": (2.5, 5.0, 10.0), "dsp_pj": (15.0, 24.0, 48.0)},
    "ecp5": {"static_mw": (0.5, 1.0, 1.5), "clock_pj": (89.0, 178.0, 267.0), "lut_pj": (0.012, 0.076, 0.50),
             "bram_pj": (4.2, 8.4, 17.0), "dsp_pj": (12.6, 20.0, 40.0)},
}
# central static power by device (mW); ECP5 values scale the family's low/high factors above
STATIC_MW = {"ECP5 LFE5U-25F": 40.0, "ECP5 LFE5U-45F": 55.0, "ECP5 LFE5U-85F": 80.0}
# published anchors (per inference), shown beside the estimate
ANCHORS = {"ESTU (iCE40 UP5K, 3.76 mW)": 4.28, "Spiker+ (SHD, 430 mW)": 23.0}


@dataclass(frozen=True)
class StepEvents:
    """Mean events per step (the golden model's activity on real sequences)."""
    cycles: float
    synapse_reads: float
    constant_reads: float
    state_accesses: float
    output_reads: float
    multiplies: float


def step_events(net, x: np.ndarray, spikes: np.ndarray, lanes: int, segments: int | None = None) -> StepEvents:
    """Event counts per step from inputs x [T, B, I] and the golden model's hidden spikes [T, B, H]."""
    from .core import period_model
    from .simulate import expected_cycles

    chunks, segments = geometry(net.shape[1], lanes, segments)
    n_in, _, n_out = net.shape
    sources = float(input_events(x, net.spec.input.bits).mean())
    hidden = float(np.asarray(spikes).sum(-1).mean())
    per_neuron = net.kind.multipliers + (n_in if multiplies_inputs(net.spec) else 0)
    return StepEvents(cycles=float(expected_cycles(net, x, spikes, lanes, segments, period_model).mean()),
                      synapse_reads=(sources + hidden) * segments, constant_reads=chunks, state_accesses=2 * chunks,
                      output_reads=hidden, multiplies=chunks * lanes * per_neuron + n_out)


def blocks_per_access(net, lanes: int, segments: int | None, family: str) -> dict[str, int]:
    """Blocks one word of each memory spans (the blocks a read or write enables)."""
    out = {}
    for m in estimate_network(net, lanes, segments).memories:
        best = min(BLOCK_SHAPES[family], key=lambda wd: math.ceil(m.width / wd[0]) * math.ceil(m.depth / wd[1]))
        out[m.name] = math.ceil(m.width / best[0]) if m.width else 0
    return out


@dataclass(frozen=True)
class EnergyEstimate:
    per_step_nj: tuple[float, float, float]  # (low, central, high)
    steps: int  # per inference
    fmax_mhz: float
    cycles: float  # per step
    parts_nj: dict[str, float]  # central, per step: static, clock, logic, bram, dsp

    @property
    def per_inference_uj(self) -> tuple[float, ...]:
        return tuple(e * self.steps / 1000 for e in self.per_step_nj)

    @property
    def power_mw(self) -> float:
        """Central power while running back to back at Fmax."""
        return self.per_step_nj[1] * self.fmax_mhz / self.cycles

    def as_dict(self) -> dict:
        return {"estimate": True, "per_step_nj": list(self.per_step_nj), "per_inference_uj": list(self.per_inference_uj),
                "steps_per_inference": self.steps, "cycles_per_step": self.cycles, "power_mw": self.power_mw,
                "parts_nj": self.parts_nj}


def energy(events: StepEvents, blocks: dict[str, int], luts: float, fmax_mhz: float, family: str,
           device: str | None = None, steps: int = 1) -> EnergyEstimate:
    """The model above for one design: ``blocks`` per access of each memory (``blocks_per_access``),
    ``luts`` (iCE40: logic cells), ``fmax_mhz``, the family's coefficients (ECP5: the device's
    static power); ``steps`` per inference."""
    coef = COEFFICIENTS[family]
    seconds = events.cycles / (fmax_mhz * 1e6)
    bram_accesses = (events.synapse_reads * blocks["synapses"] + events.constant_reads * blocks["constants"]
                     + events.state_accesses * blocks["state"] + events.output_reads * blocks["output weights"])

    def at(i: int) -> dict[str, float]:
        static_mw = coef["static_mw"][i] * (STATIC_MW[device] if family == "ecp5" else 1.0)
        return {"static": static_mw * 1e-3 * seconds * 1e9, "clock": events.cycles * coef["clock_pj"][i] / 1e3,
                "logic": events.cycles * luts * coef["lut_pj"][i] / 1e3, "bram": bram_accesses * coef["bram_pj"][i] / 1e3,
                "dsp": events.multiplies * coef["dsp_pj"][i] / 1e3}

    return EnergyEstimate(tuple(sum(at(i).values()) for i in range(3)), steps, fmax_mhz, events.cycles, at(1))


def describe(e: EnergyEstimate, what: str) -> str:
    lo, mid, hi = e.per_inference_uj
    anchors = ", ".join(f"{name} {uj:g} uJ" for name, uj in ANCHORS.items())
    return (f"{what}: energy ESTIMATE {e.per_step_nj[1]:.1f} nJ per step ({e.per_step_nj[0]:.1f}-{e.per_step_nj[2]:.1f}), "
            f"{mid:.2f} uJ per {e.steps}-step inference ({lo:.2f}-{hi:.2f}) at {e.fmax_mhz:.1f} MHz, "
            f"{e.power_mw:.1f} mW while running; published: {anchors}")


def for_design(net, act, lanes: int, segments: int | None, family: str, device: str, fmax_mhz: float,
               luts: float | None = None, cycles: float | None = None) -> EnergyEstimate:
    """The estimate for ``net`` at ``lanes`` on ``device`` at ``act`` (synth's Activity: the golden
    model's inputs and spikes on real sequences); ``luts`` None: the pre-Yosys estimate;
    ``cycles`` per step None: from the cycle model here."""
    if luts is None:
        luts = estimate_network(net, lanes, segments).need(family)["lut"]
    events = step_events(net, act.x, act.spikes, lanes, segments)
    if cycles is not None:
        events = replace(events, cycles=cycles)
    return energy(events, blocks_per_access(net, lanes, segments, family), luts, fmax_mhz, family, device,
                  act.x.shape[0])


def for_synth_row(net, act, row: dict, family: str) -> EnergyEstimate:
    """The estimate for a placed and routed design (a row of ``synth.synthesize``): its logic
    cells and Fmax as nextpnr reported them, its cycles per step as synth measured them."""
    used = row["utilization"]
    luts = used.get("TRELLIS_COMB", used.get("ICESTORM_LC"))
    return for_design(net, act, row["lanes"], row["segments"], family, row["target"], row["fmax_mhz"], luts,
                      row.get("cycles_per_step"))


def main(argv=None) -> None:
    from ..artifact import load_artifact, shipped_artifact
    from ..cli_util import POSITIVE_INT, UserError, float_range
    from .resources import refusal
    from .synth import DEVICES, RANDOM_DENSITY, _shape, activity

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, help="integer network (default: the shipped ECG one)")
    parser.add_argument("--shape", type=_shape, help="an untrained network of this shape instead (generate.shape_network)")
    parser.add_argument("--task", help="task whose test data gives the activity (default: the artifact's, or by shape)")
    parser.add_argument("--target", choices=("ecp5", "ice40"), default="ice40")
    parser.add_argument("--device", help="ECP5 device (default: the smallest the pre-Yosys estimate fits)")
    parser.add_argument("--lanes", type=POSITIVE_INT, default=1)
    parser.add_argument("--segments", type=POSITIVE_INT)
    parser.add_argument("--fmax", type=float_range(0.0, low_open=True), required=True, help="clock (MHz), e.g. synth's Fmax")
    parser.add_argument("--luts", type=float_range(0.0, low_open=True), help="LUT4 / logic cells (default: the estimate)")
    parser.add_argument("--sequences", type=POSITIVE_INT, default=8)
    parser.add_argument("--data-dir")
    parser.add_argument("--input-density", type=float_range(0.0, 1.0, low_open=True), default=RANDOM_DENSITY)
    args = parser.parse_args(argv)
    if args.shape:
        from ..tasks import get_task, task_for_shape
        from .generate import shape_network

        spec = get_task(args.task) if args.task else task_for_shape(args.shape[0], args.shape[2])
        if spec is None:
            raise UserError(f"shape {'-'.join(map(str, args.shape))}: no task of this shape; give --task")
        net, task = shape_network(*args.shape, input_bits=spec.input_format().bits, rule=spec.readout_rule,
                                  steps=spec.steps or 1300), spec.name
    else:
        net, manifest = load_artifact(args.artifact or shipped_artifact())
        task = args.task or manifest.get("task")
    try:
        est = estimate_network(net, args.lanes, args.segments)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    devices = [d for d in DEVICES if d["family"] == args.target and (args.device in (None, d["name"]))]
    if not devices:
        raise UserError(f"--device {args.device!r}: not a listed {args.target} device "
                        f"({', '.join(d['name'] for d in DEVICES if d['family'] == args.target)})")
    fitting = [d for d in devices if refusal([est], [d], args.target) is None]
    if not fitting:
        raise UserError(f"{'-'.join(map(str, net.shape))} (lanes {args.lanes}) cannot fit: "
                        f"{refusal([est], devices, args.target)}")
    act = activity(net, task, args.data_dir, args.sequences, args.input_density)
    e = for_design(net, act, args.lanes, args.segments, args.target, fitting[0]["name"], args.fmax, args.luts)
    print(describe(e, f"{'-'.join(map(str, net.shape))} lanes {args.lanes} on {fitting[0]['name']} ({act.measured})"))
    print(json.dumps(e.as_dict()))


if __name__ == "__main__":
    from ..cli_util import run_main

    run_main(main, "python -m brf_hw.hw.energy")
