"""Scoring the integer network on a task: accuracy by the task's readout (with a bootstrap interval
over sequences), SOPs; one path for every task.

    python -m brf_hw.evaluate ARTIFACT.npz [--split test|val|train] [--limit N]   # = python -m brf_hw.golden
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NamedTuple

import numpy as np

from . import golden
from .fixed.spec import IntNetwork


class Evaluation(NamedTuple):
    """An integer network's score on sequences: metrics, the readout's classes (and spikes)."""

    metrics: dict[str, float]  # acc, acc_ci_low, acc_ci_high, sops, sops_per_step (, acc_annotated)
    predictions: np.ndarray  # the readout's classes: [T, B] per step, else [B]
    spikes: np.ndarray | None = None  # [T, B, H] hidden spikes, where asked for (``keep_spikes``)


def evaluate(net: IntNetwork, x: np.ndarray, target: np.ndarray, annotated: np.ndarray | None = None,
             chunk: int = 256, progress: bool = False, keep_spikes: bool = False) -> Evaluation:
    """Run sequences x [T, B, inputs] through the integer network ``chunk`` at a time (memory
    stays bounded on 10,000 S-MNIST images) and score the readout against ``target``: [T, B]
    per-step labels (``annotated`` [T, B] marks the labelled steps; unlabelled steps count as
    class 0 in ``acc``, the paper's way, and are left out of ``acc_annotated``), or [B] one label
    a sequence. Accuracy carries a 95 % bootstrap interval over sequences; SOPs = hidden spikes."""
    x, target = np.asarray(x), np.asarray(target)
    steps, batch = x.shape[:2]
    per_step = net.readout.per_step
    if target.shape != ((steps, batch) if per_step else (batch,)):
        raise ValueError(f"targets of shape {target.shape} do not fit a {net.readout.rule} readout of "
                         f"{batch} sequences of {steps} steps")
    preds, seq_acc, kept = [], [], []
    hits = spikes = ann_hits = ann_total = 0
    starts = range(0, batch, chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="golden model", unit="chunk", leave=False)
    for a in starts:
        b = min(a + chunk, batch)
        result = golden.run(net, x[:, a:b])
        pred = golden.sequence_predictions(net, result)
        hit = pred == target[..., a:b]
        preds.append(pred)
        seq_acc.append(100.0 * (hit.mean(0) if per_step else hit))
        hits += int(hit.sum())
        spikes += int(result.spikes.sum(dtype=np.int64))
        if keep_spikes:
            kept.append(result.spikes)
        if per_step and annotated is not None:
            ann_hits += int(hit[annotated[:, a:b]].sum())
            ann_total += int(annotated[:, a:b].sum())
    seq_acc = np.concatenate(seq_acc)
    low, high = bootstrap_interval(seq_acc)
    m = {"acc": 100.0 * hits / (batch * (steps if per_step else 1)), "acc_ci_low": low, "acc_ci_high": high,
         "sops": float(spikes) / batch, "sops_per_step": float(spikes) / (batch * steps)}
    if per_step and annotated is not None:
        m["acc_annotated"] = 100.0 * ann_hits / max(ann_total, 1)
    return Evaluation(m, np.concatenate(preds, axis=1 if per_step else 0),
                      np.concatenate(kept, axis=1) if keep_spikes else None)


def evaluate_task(net: IntNetwork, data, split: str, limit: int | None = None, progress: bool = False,
                  keep_spikes: bool = False) -> Evaluation:
    """``evaluate`` on a split of a task's data (``tasks.TaskData``), fed as the hardware is fed
    (``integer_sequences``); the first ``limit`` sequences where given."""
    check_task(net, data.spec)
    x, target, annotated = data.integer_sequences(split, limit)
    return evaluate(net, x, target, annotated, progress=progress, keep_spikes=keep_spikes)


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
        raise ValueError(f"the network's readout is {net.readout.rule.value!r}; task {task.name} is scored by "
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
    data = TaskData(name, args.data_dir)
    start = time.perf_counter()
    ev = evaluate_task(net, data, args.split, args.limit, progress=sys.stderr.isatty())
    seconds = time.perf_counter() - start
    count = ev.predictions.shape[-1]
    print(f"{args.artifact}: {name} {net.shape[0]}-{net.shape[1]}-{net.shape[2]}, readout {net.readout.rule.value}, "
          f"{net.spec.describe()}")
    print(f"{name} {args.split}: {describe_metrics(ev.metrics)}, {seconds:.2f} s for {count} sequences")


if __name__ == "__main__":
    from .cli_util import run_main

    run_main(main, "python -m brf_hw.evaluate")
