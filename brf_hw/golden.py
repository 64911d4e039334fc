"""Golden model: the integer BRF network in numpy, batched over sequences, bit-exact with the
hardware. Runs ``fixed.arith`` on arrays; weights, constants and formats come from an artifact.

    python -m brf_hw.golden ARTIFACT.npz [--data-dir DIR]      # ECG test-set accuracy and SOPs
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import numpy as np

from .fixed.arith import brf_step, li_step
from .fixed.spec import IntNetwork


class GoldenResult(NamedTuple):
    spikes: np.ndarray  # [T, B, H] hidden spikes (0/1)
    outputs: np.ndarray  # [T, B, O] LI potentials, output format integers
    predictions: np.ndarray  # [T, B] argmax of the outputs (lowest index wins ties)
    traces: dict[str, np.ndarray] | None  # u, v, q [T, B, H] when asked for


def run(net: IntNetwork, x: np.ndarray, record: bool = False) -> GoldenResult:
    """x [T, B, inputs] integer inputs (spikes) -> per-step spikes, potentials, predictions."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[2] != net.shape[0]:
        raise ValueError(f"expected x of shape [T, B, {net.shape[0]}], got {x.shape}")
    if not np.array_equal(x, np.round(x)):
        raise ValueError("the golden model takes integer inputs (spikes)")
    x = x.astype(np.int64)
    steps, batch, _ = x.shape
    n_hidden, n_out = net.shape[1], net.shape[2]
    u = np.zeros((batch, n_hidden), np.int64)
    v, q, z = u.copy(), u.copy(), u.copy()
    o = np.zeros((batch, n_out), np.int64)
    consts, li_consts = net.step_constants(), net.li_constants()
    w_in, w_rec = net.aligned_weights()
    input_acc = x @ w_in.T  # [T, B, H]: the input synapses do not depend on the state
    spikes = np.empty((steps, batch, n_hidden), np.int64)
    outputs = np.empty((steps, batch, n_out), np.int64)
    traces = {k: np.empty_like(spikes) for k in "uvq"} if record else None
    for t in range(steps):
        acc = input_acc[t] + z @ w_rec.T
        u, v, q, z = brf_step(acc, u, v, q, net.d, net.c, *consts)
        o = li_step(z @ net.w_out.T, o, net.alpha, *li_consts)
        spikes[t], outputs[t] = z, o
        if record:
            traces["u"][t], traces["v"][t], traces["q"][t] = u, v, q
    return GoldenResult(spikes, outputs, outputs.argmax(-1), traces)


def run_stream(net: IntNetwork, x: np.ndarray, first: np.ndarray | None = None) -> GoldenResult:
    """One input stream x [T, inputs] of sequences back to back, the state cleared where ``first``
    (default: step 0 only), as the accelerator's input beats carry it. Arrays are [T, ...]."""
    if first is None:
        first = np.eye(1, len(x), dtype=bool)[0]
    starts = list(np.flatnonzero(first)) + [len(x)]
    parts = [run(net, x[a:b, None, :]) for a, b in zip(starts[:-1], starts[1:])]
    return GoldenResult(*(np.concatenate([getattr(p, f)[:, 0] for p in parts])
                          for f in ("spikes", "outputs", "predictions")), None)


def ecg_metrics(result: GoldenResult, labels: np.ndarray, annotated: np.ndarray) -> dict[str, float]:
    """labels, annotated: [T, B]. Accuracy the paper's way and on annotated steps, with a 95 %
    bootstrap interval over sequences; SOPs."""
    hit = result.predictions == labels
    batch = labels.shape[1]
    low, high = bootstrap_interval(100.0 * hit.mean(0))
    return {"acc": 100.0 * hit.mean(), "acc_annotated": 100.0 * hit[annotated].mean(),
            "acc_ci_low": low, "acc_ci_high": high,
            "sops": float(result.spikes.sum()) / batch,
            "sops_per_step": float(result.spikes.sum()) / (batch * labels.shape[0])}


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


def main(argv=None) -> None:
    from .artifact import load_artifact
    from .cli_util import UserError
    from .data import load_ecg

    parser = argparse.ArgumentParser(description="Evaluate an integer BRF artifact on the ECG test set.")
    parser.add_argument("artifact")
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    net, manifest = load_artifact(args.artifact)
    if manifest.get("task") != "ecg":
        raise UserError(f"{args.artifact} holds a network for task {manifest.get('task')!r}; this command "
                        f"evaluates ECG networks")
    test = load_ecg(args.data_dir)["test"]
    if test.inputs.shape[-1] != net.shape[0]:
        raise UserError(f"{args.artifact} takes {net.shape[0]} inputs; the ECG data has {test.inputs.shape[-1]}")
    start = time.perf_counter()
    m, result = evaluate_ecg(net, test)
    seconds = time.perf_counter() - start
    print(f"{args.artifact}: {manifest['task']} {net.shape[0]}-{net.shape[1]}-{net.shape[2]}, "
          f"{net.spec.describe()}")
    print(f"ECG test: accuracy {m['acc']:.2f}% (95% interval over sequences {m['acc_ci_low']:.2f}-"
          f"{m['acc_ci_high']:.2f}; annotated steps {m['acc_annotated']:.2f}%), "
          f"SOPs {m['sops']:.1f} ({m['sops_per_step']:.2f}/step), {seconds:.2f} s for "
          f"{result.spikes.shape[1]} sequences")


if __name__ == "__main__":
    from .cli_util import run_main

    run_main(main, "python -m brf_hw.golden")
