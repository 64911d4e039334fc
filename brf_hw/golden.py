"""Golden model: the integer BRF network in numpy, batched over sequences, bit-exact with the
hardware. Runs ``fixed.arith`` on arrays; weights, constants and formats come from an artifact.

    python -m brf_hw.golden ARTIFACT.npz [--data-dir DIR]   # its task's test accuracy (95 % interval), SOPs
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NamedTuple

import numpy as np

from .fixed.arith import brf_step, event_matmul, li_step, sum_step
from .fixed.spec import IntNetwork


class GoldenResult(NamedTuple):
    spikes: np.ndarray  # [T, B, H] hidden spikes (0/1, int8)
    outputs: np.ndarray  # [T, B, O] LI potentials, output format integers
    predictions: np.ndarray  # [T, B] argmax of the outputs (lowest index wins ties)
    traces: dict[str, np.ndarray] | None  # u, v, q [T, B, H] when asked for
    sums: np.ndarray | None = None  # [T, B, O] running sums of o (``mean`` readout), else None


def check_inputs(net: IntNetwork, x) -> np.ndarray:
    """x [T, B, inputs] of integers in the network's input format; returns it as an array."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != net.shape[0]:
        raise ValueError(f"expected x of shape [T, B, {net.shape[0]}], got {x.shape}")
    if x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
        raise ValueError(f"the golden model takes integer inputs ({net.spec.input.describe()}); got fractions")
    net.spec.input.check(x)
    return x


def run(net: IntNetwork, x: np.ndarray, record: bool = False) -> GoldenResult:
    """x [T, B, inputs] integer inputs (spikes, or input-format values) -> per-step spikes,
    potentials, predictions (and the running sums of a ``mean`` readout)."""
    x = check_inputs(net, x)
    steps, batch, n_in = x.shape
    n_hidden, n_out = net.shape[1], net.shape[2]
    u = np.zeros((batch, n_hidden), np.int64)
    v, q, z = u.copy(), u.copy(), u.copy()
    o = np.zeros((batch, n_out), np.int64)
    consts, li_consts = net.step_constants(), net.li_constants()
    w_in, w_rec = net.aligned_weights()
    # the input synapses do not depend on the state: x @ w_in is the sum of the rows of x's set bits
    input_acc = event_matmul(x.reshape(-1, n_in), w_in).reshape(steps, batch, n_hidden)
    mean = net.readout.rule == "mean"
    s = np.zeros((batch, n_out), np.int64)
    slo, shi = net.readout.sum_bounds if mean else (0, 0)
    spikes = np.empty((steps, batch, n_hidden), np.int8)
    outputs = np.empty((steps, batch, n_out), np.int64)
    sums = np.empty_like(outputs) if mean else None
    traces = {k: np.empty((steps, batch, n_hidden), np.int64) for k in "uvq"} if record else None
    for t in range(steps):
        acc = input_acc[t] + event_matmul(z, w_rec)
        u, v, q, z = brf_step(acc, u, v, q, net.d, net.c, *consts)
        o = li_step(event_matmul(z, net.w_out), o, net.alpha, *li_consts)
        spikes[t], outputs[t] = z, o
        if mean:
            s = sum_step(s, o, slo, shi)
            sums[t] = s
        if record:
            traces["u"][t], traces["v"][t], traces["q"][t] = u, v, q
    return GoldenResult(spikes, outputs, outputs.argmax(-1), traces, sums)


def sequence_predictions(net: IntNetwork, result: GoldenResult) -> np.ndarray:
    """The class the readout rule reads: [T, B] per step, else [B] for each sequence."""
    rule = net.readout.rule
    if rule == "per_step":
        return result.predictions
    if rule == "last":
        return result.predictions[-1]
    return result.sums[-1].argmax(-1)


def run_stream(net: IntNetwork, x: np.ndarray, first: np.ndarray | None = None) -> GoldenResult:
    """One input stream x [T, inputs] of sequences back to back, the state (and running sums)
    cleared where ``first`` (default: step 0 only), as the accelerator's input beats carry it.
    Arrays are [T, ...]."""
    if first is None:
        first = np.eye(1, len(x), dtype=bool)[0]
    starts = list(np.flatnonzero(first)) + [len(x)]
    parts = [run(net, x[a:b, None, :]) for a, b in zip(starts[:-1], starts[1:])]
    fields = ("spikes", "outputs", "predictions") + (("sums",) if net.readout.rule == "mean" else ())
    joined = {f: np.concatenate([getattr(p, f)[:, 0] for p in parts]) for f in fields}
    return GoldenResult(joined["spikes"], joined["outputs"], joined["predictions"], None, joined.get("sums"))


class Evaluation(NamedTuple):
    metrics: dict[str, float]
    predictions: np.ndarray  # the readout's classes: [T, B] per step, else [B]


def _metrics(per_sequence_acc: np.ndarray, hits: int, total: int, spikes: int, steps: int,
             annotated: tuple[int, int] | None = None) -> dict[str, float]:
    low, high = bootstrap_interval(per_sequence_acc)
    batch = per_sequence_acc.size
    m = {"acc": 100.0 * hits / total, "acc_ci_low": low, "acc_ci_high": high,
         "sops": float(spikes) / batch, "sops_per_step": float(spikes) / (batch * steps)}
    if annotated is not None:
        m["acc_annotated"] = 100.0 * annotated[0] / max(annotated[1], 1)
    return m


def evaluate(net: IntNetwork, x: np.ndarray, target: np.ndarray, annotated: np.ndarray | None = None,
             chunk: int = 256, progress: bool = False) -> Evaluation:
    """Run sequences x [T, B, inputs] through the integer network ``chunk`` at a time (memory
    stays bounded on 10,000 S-MNIST images) and score the readout against ``target``: [T, B]
    per-step labels (``annotated`` [T, B] marks the labelled steps), or [B] one label a sequence.
    Accuracy carries a 95 % bootstrap interval over sequences; SOPs = hidden spikes."""
    x, target = np.asarray(x), np.asarray(target)
    steps, batch = x.shape[:2]
    per_step = net.readout.rule == "per_step"
    if target.shape != ((steps, batch) if per_step else (batch,)):
        raise ValueError(f"targets of shape {target.shape} do not fit a {net.readout.rule} readout of "
                         f"{batch} sequences of {steps} steps")
    preds, seq_acc = [], []
    hits = spikes = ann_hits = ann_total = 0
    starts = range(0, batch, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="golden model", unit="chunk", leave=False)
    for a in starts:
        b = min(a + chunk, batch)
        result = run(net, x[:, a:b])
        pred = sequence_predictions(net, result)
        hit = pred == (target[:, a:b] if per_step else target[a:b])
        preds.append(pred)
        seq_acc.append(100.0 * (hit.mean(0) if per_step else hit))
        hits += int(hit.sum())
        spikes += int(result.spikes.sum(dtype=np.int64))
        if per_step and annotated is not None:
            ann_hits += int(hit[annotated[:, a:b]].sum())
            ann_total += int(annotated[:, a:b].sum())
    total = batch * (steps if per_step else 1)
    m = _metrics(np.concatenate(seq_acc), hits, total, spikes, steps,
                 (ann_hits, ann_total) if per_step and annotated is not None else None)
    return Evaluation(m, np.concatenate(preds, axis=1 if per_step else 0))


def evaluate_task(net: IntNetwork, data, split: str, limit: int | None = None, progress: bool = False) -> Evaluation:
    """``evaluate`` on a split of a task's data (``tasks.TaskData``), fed as the hardware is
    fed (``integer_sequences``); the first ``limit`` sequences where given."""
    check_task(net, data.spec)
    x, target, annotated = data.integer_sequences(split, limit)
    return evaluate(net, x, target, annotated, progress=progress)


def ecg_metrics(result: GoldenResult, labels: np.ndarray, annotated: np.ndarray) -> dict[str, float]:
    """labels, annotated: [T, B]. Accuracy the paper's way and on annotated steps, with a 95 %
    bootstrap interval over sequences; SOPs."""
    hit = result.predictions == labels
    return _metrics(100.0 * hit.mean(0), int(hit.sum()), hit.size, int(result.spikes.sum(dtype=np.int64)),
                    labels.shape[0], (int(hit[annotated].sum()), int(annotated.sum())))


def evaluate_ecg(net: IntNetwork, split) -> tuple[dict[str, float], GoldenResult]:
    """Run an ECG split (``data.ecg.ECGSplit``: inputs [B, T, I], labels and annotated [B, T])
    through the integer network: its ``ecg_metrics`` and the run itself."""
    result = run(net, split.inputs.numpy().transpose(1, 0, 2))
    return ecg_metrics(result, split.labels.numpy().T, split.annotated.numpy().T), result


def bootstrap_interval(per_sequence: np.ndarray, level: float = 0.95, resamples: int = 4000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over sequences. Steps of one sequence are not
    independent, so sequences are the unit resampled: on the 141 ECG test sequences the interval is
    about +-1.5 points, which is what a difference between two networks has to beat."""
    x = np.asarray(per_sequence, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (resamples, x.size))].mean(1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def check_task(net: IntNetwork, task) -> None:
    """The network must take the task's inputs, in its input format, and be read its way."""
    n_in, _, n_out = net.shape
    if (n_in, n_out) != (task.inputs, task.outputs) or net.spec.input.bits != task.input_bits:
        raise ValueError(f"the network takes {n_in} inputs of {net.spec.input.describe()} and has {n_out} "
                         f"outputs; task {task.name} feeds {task.inputs} inputs of u{task.input_bits} into "
                         f"{task.outputs} classes")
    if net.readout.rule != task.readout_rule:
        raise ValueError(f"the network's readout is {net.readout.rule!r}; task {task.name} is scored by "
                         f"{task.readout_rule!r}")


def describe_metrics(m: dict[str, float]) -> str:
    annotated = f"; annotated steps {m['acc_annotated']:.2f}%" if "acc_annotated" in m else ""
    return (f"accuracy {m['acc']:.2f}% (95% interval over sequences {m['acc_ci_low']:.2f}-{m['acc_ci_high']:.2f}"
            f"{annotated}), SOPs {m['sops']:.1f} ({m['sops_per_step']:.2f}/step)")


def main(argv=None) -> None:
    from .artifact import load_artifact
    from .cli_util import POSITIVE_INT, UserError
    from .tasks import TASKS, TaskData

    parser = argparse.ArgumentParser(description="Evaluate an integer BRF artifact on its task's test set "
                                                 "(the task the artifact names) with the task's metric.")
    parser.add_argument("artifact")
    parser.add_argument("--data-dir")
    parser.add_argument("--split", choices=("test", "val", "train"), default="test")
    parser.add_argument("--limit", type=POSITIVE_INT, help="only the first N sequences")
    args = parser.parse_args(argv)
    net, manifest = load_artifact(args.artifact)
    name = manifest["task"]
    if name not in TASKS:
        raise UserError(f"{args.artifact} holds a network for task {name!r}, which brf-hw does not know "
                        f"({', '.join(sorted(TASKS))})")
    try:
        check_task(net, TASKS[name])
    except ValueError as exc:
        raise UserError(f"{args.artifact} (task {name!r}): {exc}") from exc
    data = TaskData(TASKS[name], args.data_dir)
    start = time.perf_counter()
    ev = evaluate_task(net, data, args.split, args.limit, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - start
    count = ev.predictions.shape[-1]
    print(f"{args.artifact}: {name} {net.shape[0]}-{net.shape[1]}-{net.shape[2]}, readout {net.readout.rule}, "
          f"{net.spec.describe()}")
    print(f"{name} {args.split}: {describe_metrics(ev.metrics)}, {seconds:.2f} s for {count} sequences")


if __name__ == "__main__":
    from .cli_util import run_main

    run_main(main, "python -m brf_hw.golden")
