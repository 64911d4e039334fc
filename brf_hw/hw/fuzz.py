"""Fuzzing the accelerator against the golden model: random integer networks drawn from everything
an artifact may hold, streamed with random resets, gaps and stalls.

    python -m brf_hw.hw.fuzz --n 1000 --jobs 2 --verilator-every 50     # make fuzz N=1000

A case is a pure function of its seed (``random_case``): formats of any word length 2..32 that
the spec accepts (every fraction the artifact loader accepts, 64-bit headroom included), weights,
d, c, alpha and the scalars anywhere in their formats, with a share pinned to the format's
corners (saturation), 1..64 hidden neurons, 1..200 steps, mid-stream resets, lanes and accumulator
segments of any legal value (log-uniform; long steps get shorter sequences, see CYCLE_BUDGET);
half the cases take 2..8-bit inputs (weighted by the lanes' multipliers) and a random readout rule, mean with a
narrow running sum that saturates (``_widen``, its own random stream: the other draws of a seed
are those of the spike-only fuzzer); K source events per cycle, 1..min(sources, MAX_EVENTS)
log-uniform (a third stream, so the seeds above keep their networks); the neuron kind, BRF in half
the cases and one of the other kinds with an update stage (``artifact.HARDWARE_NEURONS``) in the
rest (a fourth stream: the arrays stay those of the seed; ALIF and LIF draw their decays and
thresholds from a fifth, ``with_kind``). Each case runs in Amaranth's simulator and must equal the golden
model bit for bit (spikes, potentials, labels) and the cycle model exactly; every k-th case also
runs as Verilog under Verilator through cocotb. A failure prints the seed; ``--seed S --n 1``
replays it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from .. import golden
from ..cli_util import NON_NEGATIVE_INT, POSITIVE_INT, run_main
from ..fixed.formats import Format, FormatError
from ..fixed.spec import READOUT_RULES, FixedSpec, InputFormat, IntNetwork, Readout
from .core import cycle_model
from .layout import event_inputs, geometry, input_events
from .simulate import expected_cycles, simulate

MAX_HIDDEN, MAX_STEPS = 64, 200
MAX_EVENTS = 16  # K: more banks are the same logic again, and slow Amaranth's simulator
CYCLE_BUDGET = 12_000  # simulated cycles per case, about 5 s


class FuzzCase(NamedTuple):
    seed: int
    net: IntNetwork
    x: np.ndarray  # [T, inputs] input values (spikes, or input.bits-bit integers)
    first: np.ndarray  # [T] sequence starts (step 0 and random resets)
    lanes: int
    segments: int
    gap_prob: float
    stall_prob: float
    events: int = 1

    def describe(self) -> str:
        n_in, n_hid, n_out = self.net.shape
        return (f"seed {self.seed}: {self.net.neuron} {n_in}-{n_hid}-{n_out}, {len(self.x)} steps, "
                f"{int(self.first.sum())} starts, lanes {self.lanes}, segments {self.segments}, events {self.events}, {self.net.spec.describe()}")


def _format(rng, low_bits: int, high_bits: int, frac_low, frac_high) -> Format:
    bits = int(rng.integers(low_bits, high_bits + 1))
    return Format(bits, int(rng.integers(frac_low(bits), frac_high(bits) + 1)))


def random_spec(rng, n_in: int, n_hid: int) -> FixedSpec:
    """Formats from the whole space the spec accepts; drawn again until the 64-bit check passes."""
    while True:
        wide = rng.random() < 0.25  # a quarter of the cases near the 32-bit limit
        top = 32 if wide else 16
        try:
            spec = FixedSpec(
                weight=_format(rng, 2, top, lambda b: b - 6, lambda b: b + 4),
                rec_weight=_format(rng, 2, top, lambda b: b - 6, lambda b: b + 4),
                out_weight=_format(rng, 2, top, lambda b: b - 6, lambda b: b + 4),
                # coefficients hold values up to 1 (d, gamma, alpha): at least one integer bit
                coef=_format(rng, 4, top, lambda b: 2, lambda b: b - 2),
                # the state holds theta = 1 at least: frac <= bits - 2
                state=_format(rng, 4, top, lambda b: 1, lambda b: b - 2),
                output=_format(rng, 2, top, lambda b: 0, lambda b: b - 1),
            )
            spec.check_int64(n_in, n_hid)
            return spec
        except FormatError:
            continue


def _values(rng, fmt: Format, shape, corners: float, low: int | None = None, high: int | None = None):
    """Uniform integers in [low, high] (default: the whole format), a share ``corners`` pinned to
    the ends, where saturation and sign corners live."""
    low = fmt.min_int if low is None else low
    high = fmt.max_int if high is None else high
    a = rng.integers(low, high + 1, size=shape, dtype=np.int64)
    pin = rng.random(shape) < corners
    return np.where(pin, np.where(rng.random(shape) < 0.5, low, high), a)


def _log_uniform(rng, low: int, high: int) -> int:
    """Integers in [low, high], small ones as likely as large ones per octave."""
    return min(high, max(low, int(np.exp(rng.uniform(math.log(low), math.log(high + 1))))))


def random_case(seed: int, kind: str | None = None) -> FuzzCase:
    """The case of ``seed``; ``kind`` overrides the drawn neuron kind (the rest stays the seed's)."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.integers(1, 9))
    n_hid = _log_uniform(rng, 1, MAX_HIDDEN)
    n_out = int(rng.integers(1, 9))
    spec = random_spec(rng, n_in, n_hid)
    corners = float(rng.choice([0.0, 0.1, 0.5]))
    cf, sf = spec.coef.frac, spec.state.frac
    one = 1 << cf  # 1.0 in the coefficient format
    if rng.random() < 0.5:  # plausible neurons: d near 1, small rotation, theta 1, gamma 0.9
        d = np.clip(one - rng.integers(0, max(2, one // 8), n_hid), spec.coef.min_int, spec.coef.max_int)
        c = rng.integers(0, max(1, one // 4), n_hid)
        theta = min(1 << sf, spec.state.max_int)
        gamma = min(int(0.9 * one), spec.coef.max_int)
        dtq = int(rng.integers(0, max(1, one // 16)))
    else:  # anywhere the artifact loader accepts
        d = _values(rng, spec.coef, n_hid, corners)
        c = _values(rng, spec.coef, n_hid, corners, 0, min(one - 1, spec.coef.max_int))
        theta = int(_values(rng, spec.state, (), corners))
        gamma = int(_values(rng, spec.coef, (), corners))
        dtq = int(_values(rng, spec.coef, (), corners))
    net = IntNetwork(
        spec=spec,
        w_in=_values(rng, spec.weight, (n_hid, n_in), corners),
        w_rec=_values(rng, spec.rec_weight, (n_hid, n_hid), corners) * (rng.random((n_hid, n_hid)) < rng.random()),
        w_out=_values(rng, spec.out_weight, (n_out, n_hid), corners),
        d=d.astype(np.int64), c=c.astype(np.int64),
        alpha=_values(rng, spec.coef, n_out, corners),
        dtq=dtq, gamma=gamma, theta=theta)
    lanes = _log_uniform(rng, 1, n_hid)
    segments = _log_uniform(rng, 1, -(-n_hid // lanes))
    chunks, _ = geometry(n_hid, lanes, segments)
    density = rng.uniform(0.0, 0.8)
    # Amaranth's simulator runs 1-4 k cycles/s: a step with many active sources and many segments
    # costs thousands of cycles, so the sequence is shortened to keep each case near CYCLE_BUDGET
    per_step = int(cycle_model(round(density * n_in), _spread(0.3 * n_hid, chunks), n_out, segments)) + 1
    steps = min(int(rng.integers(1, MAX_STEPS + 1)), max(1, CYCLE_BUDGET // per_step))
    x = (rng.random((steps, n_in)) < density).astype(np.int64)
    first = rng.random(steps) < rng.choice([0.0, 0.02, 0.2])
    first[0] = True
    net, x, first = _widen(seed, net, x, first, chunks, segments)
    events = _log_uniform(np.random.default_rng([seed, 2]), 1, min(MAX_EVENTS, event_inputs(net) + n_hid))
    net = with_kind(net, kind or _kind(seed), np.random.default_rng([seed, 4]))
    return FuzzCase(seed, net, x, first, lanes, segments, float(rng.choice([0.0, 0.3])),
                    float(rng.choice([0.0, 0.3])), events)


def with_kind(net: IntNetwork, kind: str, rng) -> IntNetwork:
    """``net`` as ``kind``: a resonator kind keeps the drawn d, c, dtq, gamma, theta (BHRF d no lower
    than its stability allows, no higher than 1); ALIF and LIF
    get their own fields from ``rng`` (its own stream: the other draws of a seed stay), plausible
    decays and thresholds in half the cases, else anywhere the artifact loader accepts (decays in
    [0, 1]), with a share at the corners."""
    from ..fixed import kinds

    spec, n_hid = net.spec, net.shape[1]
    if kind == "bhrf":  # d raised where the oscillator would diverge at rest (``kinds.harmonic.check``)
        one = 1 << spec.coef.frac
        d = np.clip(net.d, net.c * net.c // (2 * one) - one + 1, min(one, spec.coef.max_int))
        return dataclasses.replace(net, neuron=kind, d=d)
    if not hasattr(kinds.get(kind), "adapt"):
        return dataclasses.replace(net, neuron=kind)
    one = min(1 << spec.coef.frac, spec.coef.max_int)
    corners = float(rng.choice([0.0, 0.1, 0.5]))
    if rng.random() < 0.5:  # tau_m ~ 20, tau_adp ~ 200 steps, theta0 near 0.01..0.1, beta 1.8
        alpha_m = np.round(one * np.exp(-1 / rng.uniform(5, 40, n_hid))).astype(np.int64)
        rho = np.round(one * np.exp(-1 / rng.uniform(50, 400, n_hid))).astype(np.int64)
        theta0 = min(spec.state.max_int, max(1, int(rng.uniform(0.01, 0.1) * (1 << spec.state.frac))))
        beta = min(spec.coef.max_int, int(1.8 * (1 << spec.coef.frac)))
    else:
        alpha_m = _values(rng, spec.coef, n_hid, corners, 0, one)
        rho = _values(rng, spec.coef, n_hid, corners, 0, one)
        theta0 = int(_values(rng, spec.state, (), corners))
        beta = int(_values(rng, spec.coef, (), corners))
    adapt = kind == "alif"
    return dataclasses.replace(net, neuron=kind, d=None, c=None, dtq=None, gamma=None, theta=None, alpha_m=alpha_m,
                               rho=rho if adapt else None, theta0=theta0, beta=beta if adapt else None)


def _kind(seed: int) -> str:
    """BRF half the time, else one of the other kinds the accelerator implements."""
    from ..artifact import HARDWARE_NEURONS

    rng = np.random.default_rng([seed, 3])
    return "brf" if rng.random() < 0.5 else str(rng.choice([k for k in HARDWARE_NEURONS if k != "brf"]))


def _spread(spikes: float, chunks: int) -> np.ndarray:
    """About ``spikes`` hidden spikes per step spread over the chunks (for the cycle estimate)."""
    return np.full(chunks, round(spikes) // chunks) + (np.arange(chunks) < round(spikes) % chunks)


def _widen(seed: int, net: IntNetwork, x, first, chunks: int, segments: int):
    """Half the cases: b-bit inputs (the spike pattern keeps its zeros, set steps get random
    values) and a random readout; the case is cut to keep near CYCLE_BUDGET."""
    rng = np.random.default_rng([seed, 1])
    if rng.random() < 0.5:
        return net, x, first
    bits = int(rng.integers(2, 9))
    spec = dataclasses.replace(net.spec, input=InputFormat(bits, 1.0))
    rule = str(rng.choice(READOUT_RULES))
    sum_bits = int(rng.integers(max(2, spec.output.bits - 2), spec.output.bits + 8)) if rule == "mean" else 0
    try:
        net = dataclasses.replace(net, spec=spec, readout=Readout(rule, sum_bits))
    except FormatError:  # the wider input rows no longer fit 64-bit arithmetic: stay with spikes
        return net, x, first
    x = np.where(x > 0, rng.integers(0, 1 << bits, x.shape), 0)
    per_step = int(cycle_model(int(input_events(x, bits).mean()), _spread(0.3 * net.shape[1], chunks),
                               net.shape[2], segments)) + 1
    steps = max(1, min(len(x), CYCLE_BUDGET // per_step))
    return net, x[:steps], first[:steps]


def check_amaranth(case: FuzzCase) -> str | None:
    """None if the accelerator equals the golden model and the cycle model; else what differs."""
    hw = simulate(case.net, case.x, case.first, lanes=case.lanes, segments=case.segments,
                  gap_prob=case.gap_prob, stall_prob=case.stall_prob, seed=case.seed, events=case.events)
    gold = golden.run_stream(case.net, case.x, case.first)
    cycles = expected_cycles(case.net, case.x, gold.spikes, case.lanes, case.segments, events=case.events)
    pairs = [("spikes", hw.spikes, gold.spikes), ("potentials", hw.outputs, gold.outputs),
             ("labels", hw.labels, gold.predictions), ("cycles", hw.cycles, cycles)]
    if gold.sums is not None:
        pairs.append(("sum labels", hw.sum_labels, gold.sums.argmax(-1)))
    for name, got, want in pairs:
        bad = np.flatnonzero((np.asarray(got) != np.asarray(want)).reshape(len(case.x), -1).any(1))
        if len(bad):
            t = int(bad[0])
            return f"{name} differ first at step {t}: expected {np.asarray(want)[t]}, got {np.asarray(got)[t]}"
    return None


def check_verilator(case: FuzzCase, work: Path) -> str | None:
    """The same case as generated Verilog under Verilator (cocotb, ``hw.rtl_sim``)."""
    from ..artifact import save_artifact
    from . import rtl_sim as simrun

    artifact = work / f"fuzz_{case.seed}.npz"
    save_artifact(artifact, case.net, task="fuzz", dt=0.0, theta=0.0, gamma=0.0)
    design = simrun.build("verilator", artifact, case.lanes, work / f"v{case.seed}", segments=case.segments,
                          events=case.events)
    try:
        simrun.run_stream(design, case.x, case.first, "fuzz", gap_prob=case.gap_prob,
                          stall_prob=case.stall_prob, seed=case.seed)
    except simrun.Mismatch as exc:
        return str(exc)
    return None


def run_case(seed: int, verilator: bool, work: str) -> tuple[int, int, int, str | None, str]:
    case = random_case(seed)
    try:
        problem = check_amaranth(case)
        if problem is None and verilator:
            problem = check_verilator(case, Path(work))
            if problem:
                problem = "Verilator: " + problem
    except Exception as exc:  # a crash on some network is a finding like a mismatch: keep its seed
        problem = f"crashed: {type(exc).__name__}: {exc}"
    return seed, len(case.x), int(verilator), problem, case.describe()


def fuzz(n: int, start: int = 0, jobs: int = 1, verilator_every: int = 0, progress: bool = True) -> dict:
    seeds = range(start, start + n)
    started = time.perf_counter()
    steps = verilated = 0
    failures = []
    with tempfile.TemporaryDirectory(prefix="fuzz_", dir=Path.cwd()) as work, \
            ProcessPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_case, s, bool(verilator_every) and (s - start) % verilator_every == 0, work)
                   for s in seeds]
        on_terminal = progress and sys.stderr.isatty()
        bar = tqdm(futures, total=n, desc="fuzz", disable=not on_terminal)
        for done, future in enumerate(bar, 1):
            seed, t, v, problem, described = future.result()
            steps += t
            verilated += v
            if problem:
                failures.append((seed, problem, described))
                tqdm.write(f"MISMATCH {described}\n  {problem}", file=sys.stdout)
                sys.stdout.flush()
            if progress and not on_terminal and (done % 50 == 0 or done == n):  # a log: a line now and then
                print(f"fuzz: {done}/{n} networks, {steps} steps, {len(failures)} mismatches, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    return {"networks": n, "steps": steps, "verilator_networks": verilated, "mismatches": len(failures),
            "first_failing_seed": min((f[0] for f in failures), default=None), "failures": failures,
            "seconds": time.perf_counter() - started}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=POSITIVE_INT, default=100, help="random networks (default 100)")
    parser.add_argument("--seed", type=NON_NEGATIVE_INT, default=0, help="first seed (default 0)")
    parser.add_argument("--jobs", type=POSITIVE_INT, default=1, help="parallel processes")
    parser.add_argument("--verilator-every", type=NON_NEGATIVE_INT, default=0,
                        help="also run every k-th network under Verilator (0: none)")
    args = parser.parse_args(argv)
    if args.verilator_every:
        _sim_runner().require("verilator")
    r = fuzz(args.n, args.seed, args.jobs, args.verilator_every)
    print(f"fuzz: {r['networks']} networks, {r['steps']} steps ({r['verilator_networks']} networks also under "
          f"Verilator), {r['mismatches']} mismatches, first failing seed {r['first_failing_seed']}, "
          f"{r['seconds']:.0f} s")
    if r["mismatches"]:
        sys.exit(1)


if __name__ == "__main__":
    run_main(main, "python -m brf_hw.hw.fuzz")
