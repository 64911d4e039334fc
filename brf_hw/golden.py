"""Golden model: the integer network (BRF, or another ``fixed.kinds`` kind) in numpy, batched over sequences, bit-exact with the
hardware. Runs ``fixed.arith`` on arrays; weights, constants and formats come from an artifact.
Scoring it on a task is ``brf_hw.evaluate``:

    python -m brf_hw.golden ARTIFACT.npz [--data-dir DIR]   # its task's test accuracy (95 % interval), SOPs
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .fixed.arith import event_matmul, li_step, sum_step
from .fixed.spec import IntNetwork
from .stream import sequence_starts


class GoldenResult(NamedTuple):
    """What the golden model computed for a batch of sequences, time first."""

    spikes: np.ndarray  # [T, B, H] hidden spikes (0/1, int8)
    outputs: np.ndarray  # [T, B, O] LI potentials, output format integers
    predictions: np.ndarray  # [T, B] argmax of the outputs (lowest index wins ties)
    traces: dict[str, np.ndarray] | None  # the kind's state (u, v, q; ALIF u, a) [T, B, H] when asked for
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
    kind = net.kind  # the hidden neurons' integer step
    state = kind.initial_state(batch, n_hidden)
    z = np.zeros((batch, n_hidden), np.int64)
    o = np.zeros((batch, n_out), np.int64)
    consts, li_consts = net.step_constants(), net.li_constants()
    w_in, w_rec = net.aligned_weights()
    # the input synapses do not depend on the state: x @ w_in is the sum of the rows of x's set bits
    input_acc = event_matmul(x.reshape(-1, n_in), w_in).reshape(steps, batch, n_hidden)
    mean = net.readout.keeps_sums
    s = np.zeros((batch, n_out), np.int64)
    slo, shi = net.readout.sum_bounds if mean else (0, 0)
    spikes = np.empty((steps, batch, n_hidden), np.int8)
    outputs = np.empty((steps, batch, n_out), np.int64)
    sums = np.empty_like(outputs) if mean else None
    traces = {k: np.empty((steps, batch, n_hidden), np.int64) for k in kind.state_names} if record else None
    for t in range(steps):
        acc = input_acc[t] + event_matmul(z, w_rec)
        state, z = kind.step(net, acc, state, consts)
        o = li_step(event_matmul(z, net.w_out), o, net.alpha, *li_consts)
        spikes[t], outputs[t] = z, o
        if mean:
            s = sum_step(s, o, slo, shi)
            sums[t] = s
        if record:
            for name, value in zip(kind.state_names, state):
                traces[name][t] = value
    return GoldenResult(spikes, outputs, outputs.argmax(-1), traces, sums)


def sequence_predictions(net: IntNetwork, result: GoldenResult) -> np.ndarray:
    """The class the readout rule reads: [T, B] per step, else [B] for each sequence."""
    return net.readout.classes(result.predictions, None if result.sums is None else result.sums.argmax(-1))


def run_stream(net: IntNetwork, x: np.ndarray, first: np.ndarray | None = None) -> GoldenResult:
    """One input stream x [T, inputs] of sequences back to back, the state (and running sums)
    cleared where ``first`` (default: step 0 only), as the accelerator's input beats carry it.
    Arrays are [T, ...]."""
    if first is None:
        first = sequence_starts(len(x))
    starts = list(np.flatnonzero(first)) + [len(x)]
    parts = [run(net, x[a:b, None, :]) for a, b in zip(starts[:-1], starts[1:])]
    fields = ("spikes", "outputs", "predictions") + (("sums",) if net.readout.keeps_sums else ())
    joined = {f: np.concatenate([getattr(p, f)[:, 0] for p in parts]) for f in fields}
    return GoldenResult(joined["spikes"], joined["outputs"], joined["predictions"], None, joined.get("sums"))


if __name__ == "__main__":  # the documented command; the evaluation lives in brf_hw.evaluate
    from .cli_util import run_main
    from .evaluate import main

    run_main(main, "python -m brf_hw.golden")
