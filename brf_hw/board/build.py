"""Bitstream for a board: the accelerator behind a UART link (``brf_hw.board``), YoWASP tools only.

    brf-hw build --board icebreaker [--artifact PATH] [--baud 3000000] [--out DIR]
    brf-hw build --board ulx3s [--clock-mhz 75]      # ulx3s = the 85F; ulx3s-12f/-25f/-45f/-85f

Writes DIR/brf_board.bin (iCE40) or .bit (ECP5), the build logs (brf_board.rpt: Yosys,
brf_board.tim: nextpnr), nextpnr's report.json and DIR/build_report.json + build_report.md:
utilisation, Fmax against the board clock, baud rate, the network's identity, the flash command.
Exits non-zero if timing does not close at the board clock (the bitstream is still written, for
inspection, but do not flash it). Default out: build/board/BOARD. The baud rate is fixed in the
bitstream; the host must use the same one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ..artifact import load_artifact, shipped_artifact
from ..cli_util import NON_NEGATIVE_INT, POSITIVE_FLOAT, POSITIVE_INT, UserError, run_main
from ..hw.core import period_model
from ..hw.generate import check_design
from ..hw.simulate import expected_cycles
from ..hw.synth import PnrOptions, activity, add_pnr_arguments, tool as synth_tool
from . import protocol as P
from .platforms import BOARD_NAMES, get_board
from .top import DEFAULT_BAUD, DEFAULT_FIFO_DEPTH, BoardLink, BoardTop

NAME = "brf_board"
MAX_BAUD_ERROR = 0.01  # a UART receiver tolerates a few percent; keep the divisor's rounding well inside


def tool(name: str) -> str:
    """A YoWASP tool (yowasp-NAME) from this Python's environment, or PATH."""
    return synth_tool(f"yowasp-{name}")


def divisor_for(clock_hz: float, baud: int) -> int:
    div = round(clock_hz / baud)
    error = abs(clock_hz / max(div, 1) / baud - 1)
    if div < 3 or error > MAX_BAUD_ERROR:
        raise UserError(f"{baud} baud from a {clock_hz / 1e6:g} MHz clock: {clock_hz / baud:.2f} cycles per bit "
                         f"({'fewer than 3' if div < 3 else f'{error:.1%} off at {div}'}); pick a baud rate that "
                         "divides the clock (3,000,000, 1,000,000, 115,200, ...)")
    return div


def artifact_task(net, manifest: dict, artifact: Path) -> str:
    """The task whose test data give the activity figures: the artifact's own; one line if it is
    not a task brf-hw knows or the network does not fit it."""
    from ..evaluate import check_task
    from ..tasks import get_task

    task = manifest.get("task")
    if task is None:
        raise UserError(f"{artifact.name} names no task: its activity figures need the task's test data")
    try:
        check_task(net, get_task(task))
    except ValueError as exc:
        raise UserError(f"{artifact.name} (task {task!r}): {exc}") from None
    return task


def link_figures(net, task: str, core, clock_hz: float, baud: int, data_dir=None) -> dict:
    """Steps per second of the accelerator (the cycles a step occupies in a stream at ``task``'s
    measured activity, as the synthesis report) and of the link (bytes per step each way)."""
    act = activity(net, task, data_dir)
    cycles = float(expected_cycles(net, act.x, act.spikes, core.lanes, core.segments, period_model, core.events).mean())
    label_bytes = P.frame_bytes(P.result_bits(net))
    step_bytes = P.frame_bytes(net.shape[0] * net.spec.input.bits)
    return {"task": task, "activity": act.measured, "cycles_per_step_mean": cycles,
            "accelerator_steps_per_s": clock_hz / cycles,
            "bytes_per_step": {"in": step_bytes, "out_label": label_bytes,
                               "out_full": P.frame_bytes(core.output_layout.size)},
            "link_steps_per_s_label_mode": baud / 10 / max(label_bytes, step_bytes)}


def _parse_report(path: Path) -> dict:
    report = json.loads(path.read_text())
    used = {k: (v["used"], v["available"]) for k, v in report["utilization"].items() if v["used"]}
    clocks = {name: {"achieved_mhz": v["achieved"], "constraint_mhz": v["constraint"]}
              for name, v in report["fmax"].items()}
    return {"utilization": used, "clocks": clocks}


def build(board_name: str, artifact: Path, out: Path, *, baud: int = DEFAULT_BAUD, clock_mhz: float | None = None,
          lanes: int = 1, segments: int | None = None, seed: int = 1, fifo_depth: int = DEFAULT_FIFO_DEPTH,
          data_dir=None, events: int = 1, pnr: PnrOptions = PnrOptions()) -> dict:
    board = get_board(board_name, clock_mhz)
    net, manifest = load_artifact(artifact)
    task = artifact_task(net, manifest, artifact)
    check_design(net, lanes, segments, events, artifact.name)  # before anything is written
    divisor = divisor_for(board.clock_hz, baud)
    out.mkdir(parents=True, exist_ok=True)
    board.prepare(out, tool)
    link = BoardLink(net, manifest["sha256"], clock_hz=board.clock_hz, divisor=divisor, lanes=lanes,
                     segments=segments, fifo_depth=fifo_depth, events=events)
    platform = board.platform()
    family_opts = {"synth_opts": "-dsp"} if board_name == "icebreaker" else {}
    plan = platform.build(BoardTop(board, link), name=NAME, do_build=False,
                          nextpnr_opts=" ".join([f"--seed {seed} --report report.json --timing-allow-fail", *pnr.args()]),
                          **family_opts)
    env = dict(os.environ)
    env.update({"YOSYS": tool("yosys"), "NEXTPNR_ICE40": tool("nextpnr-ice40"), "NEXTPNR_ECP5": tool("nextpnr-ecp5"),
                "ICEPACK": tool("icepack"), "ECPPACK": tool("ecppack")})
    start = time.perf_counter()
    # YoWASP tools see the working directory only: the script runs inside OUT with relative names
    rel = Path(os.path.relpath(out.resolve(), Path.cwd()))
    plan.extract(str(rel))
    proc = subprocess.run(["sh", f"build_{NAME}.sh"], cwd=rel, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        errors = [line for log in ("brf_board.rpt", "brf_board.tim") if (rel / log).exists()
                  for line in (rel / log).read_text().splitlines() if "ERROR" in line]
        raise SystemExit(f"build failed (exit {proc.returncode}): {(errors or [proc.stderr.strip()[-2000:]])[0]}; "
                         f"logs in {rel}")
    parsed = _parse_report(rel / "report.json")
    fmax = min(c["achieved_mhz"] for c in parsed["clocks"].values())
    board_mhz = board.clock_hz / 1e6
    for name, c in parsed["clocks"].items():  # nextpnr must have timed the design at the board clock
        if abs(c["constraint_mhz"] / board_mhz - 1) > 1e-3:
            raise RuntimeError(f"nextpnr timed clock {name} at {c['constraint_mhz']:.2f} MHz, not the board's "
                               f"{board_mhz:g} MHz: a missing clock constraint; see {rel / 'brf_board.tim'}")
    core = link.core
    result = {
        "board": board.name, "description": board.description, "device": board.device,
        "bitstream": str(rel / board.bitstream_name), "clock_mhz": board_mhz, "fmax_mhz": fmax,
        "timing_closed": fmax >= board_mhz, "baud": baud, "divisor": divisor,
        "utilization": {k: {"used": u, "available": a} for k, (u, a) in parsed["utilization"].items()},
        "clocks": parsed["clocks"],
        "artifact": {"file": artifact.name, "sha256": manifest["sha256"],
                     "shape": dict(zip(("inputs", "hidden", "outputs"), net.shape))},
        "lanes": core.lanes, "segments": core.segments, "events": core.events, "fifo_depth": fifo_depth,
        **link_figures(net, task, core, board.clock_hz, baud, data_dir),
        "flash": [c.format(bitstream=rel / board.bitstream_name) for c in board.flash],
        "uart_port": board.uart_port, "seed": seed, "build_seconds": round(seconds, 1),
    }
    (rel / "build_report.json").write_text(json.dumps(result, indent=2) + "\n")
    (rel / "build_report.md").write_text(report_text(result) + "\n")
    return result


def _resource_rows(u: dict) -> list[tuple[str, str]]:
    names = {"ICESTORM_LC": "logic cells (LUT4+FF)", "TRELLIS_COMB": "LUT4", "TRELLIS_FF": "flip-flops",
             "ICESTORM_DSP": "DSP (16x16)", "MULT18X18D": "DSP (18x18)", "ICESTORM_RAM": "block RAM (4 kbit)",
             "DP16KD": "block RAM (18 kbit)", "SB_IO": "I/O", "TRELLIS_IO": "I/O", "EHXPLLL": "PLL",
             "SB_GB": "global buffers", "DCCA": "global buffers"}
    return [(names[k], f"{v['used']} / {v['available']} ({100 * v['used'] / v['available']:.0f} %)")
            for k, v in u.items() if k in names]


def report_text(r: dict) -> str:
    lines = [f"# {r['board']}: {r['description']}", "",
             f"bitstream `{r['bitstream']}`, {r['artifact']['file']} ({r['artifact']['sha256'][:16]}), "
             f"lanes {r['lanes']}, segments {r['segments']}", "",
             "| resource | used |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in _resource_rows(r["utilization"])]
    lines += ["", f"Fmax {r['fmax_mhz']:.1f} MHz at a {r['clock_mhz']:g} MHz board clock: timing "
              f"{'closed' if r['timing_closed'] else 'NOT closed'} (nextpnr seed {r['seed']}).",
              f"UART {r['baud']:,} baud ({r['divisor']} cycles per bit); {r['bytes_per_step']['in']} byte(s) per step "
              f"in, {r['bytes_per_step']['out_label']} out (label) or {r['bytes_per_step']['out_full']} (full): "
              f"the link carries {r['link_steps_per_s_label_mode']:,.0f} steps/s, the accelerator computes "
              f"{r['accelerator_steps_per_s']:,.0f} ({r['cycles_per_step_mean']:.1f} cycles per step on average over "
              f"{r['activity']}).",
              f"Flash: `{r['flash'][0]}`" + (f" (SRAM; to the flash chip: `{r['flash'][1]}`)" if len(r['flash']) > 1
                                               else " (SPI flash)") + f"; serial port usually {r['uart_port']}.",
              f"Built in {r['build_seconds']:.0f} s."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", required=True, choices=BOARD_NAMES)
    parser.add_argument("--artifact", type=Path, help="integer network (default: the shipped ECG network)")
    parser.add_argument("--baud", type=POSITIVE_INT, default=DEFAULT_BAUD, help=f"UART baud rate (default {DEFAULT_BAUD:,})")
    parser.add_argument("--clock-mhz", type=POSITIVE_FLOAT, help="design clock (ULX3S: from the PLL, default 75)")
    parser.add_argument("--lanes", type=POSITIVE_INT, default=1)
    parser.add_argument("--segments", type=POSITIVE_INT, help="accumulator segments (default 2)")
    parser.add_argument("--events", type=POSITIVE_INT, default=1, help="source events per cycle K (default 1)")
    parser.add_argument("--fifo-depth", type=POSITIVE_INT, default=DEFAULT_FIFO_DEPTH, help="receive FIFO, bytes")
    parser.add_argument("--seed", type=NON_NEGATIVE_INT, default=1, help="nextpnr placement seed")
    add_pnr_arguments(parser)
    parser.add_argument("--out", type=Path, help="output folder (default build/board/BOARD)")
    parser.add_argument("--data-dir", help="the task's data, for the activity figures (default BRF_HW_DATA)")
    args = parser.parse_args(argv)
    artifact = args.artifact or shipped_artifact()
    out = args.out or Path("build") / "board" / args.board
    try:
        r = build(args.board, artifact, out, baud=args.baud, clock_mhz=args.clock_mhz, lanes=args.lanes,
                  segments=args.segments, seed=args.seed, fifo_depth=args.fifo_depth, data_dir=args.data_dir,
                  events=args.events, pnr=PnrOptions(args.placer, args.router))
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from None
    print(report_text(r))
    if not r["timing_closed"]:
        raise SystemExit(f"timing NOT closed: Fmax {r['fmax_mhz']:.1f} MHz < {r['clock_mhz']:g} MHz; "
                         "try another --seed or fewer --lanes")


if __name__ == "__main__":
    run_main(main, "brf-hw build")
