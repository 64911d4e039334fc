"""Cycles per step of the SHD shape (700-128-20) against K, from the exact cycle model
(``core.period_model``, which tests hold equal to the simulated accelerator): each step has
``--inputs`` input spikes and ``--hidden`` hidden spikes at uniformly random places (a trained SHD
network at 5 % input density spikes about 20 hidden neurons per step; issue 21).

    python bench/kevents_cycles.py [--lanes 8 16] [--segments 1 2] [--events 1 2 4 8] [--fmax 35]
"""

from __future__ import annotations

import argparse

import numpy as np

from brf_hw.hw.core import bank_spikes, chunk_spikes, period_model
from brf_hw.hw.layout import geometry


def mean_period(lanes: int, segments: int, events: int, inputs: int, hidden: int, steps: int = 2000,
                shape=(700, 128, 20)) -> float:
    rng = np.random.default_rng(0)
    n_in, n_hid, n_out = shape
    x = np.zeros((steps, n_in), np.int64)
    z = np.zeros((steps, n_hid), np.int64)
    for t in range(steps):
        x[t, rng.choice(n_in, inputs, replace=False)] = 1
        z[t, rng.choice(n_hid, hidden, replace=False)] = 1
    chunks, segments = geometry(n_hid, lanes, segments)
    if events == 1:
        return float(period_model(x.sum(-1), chunk_spikes(z, lanes, chunks), n_out, segments, True).mean())
    a, s = bank_spikes(x, z, lanes, chunks, events)
    return float(period_model(a, s, n_out, segments, True, events).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lanes", type=int, nargs="+", default=[8])
    parser.add_argument("--segments", type=int, nargs="+", default=[2])
    parser.add_argument("--events", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--inputs", type=int, default=35, help="input spikes per step (5 %% of 700)")
    parser.add_argument("--hidden", type=int, default=20, help="hidden spikes per step")
    parser.add_argument("--steps-per-inference", type=int, default=250)
    parser.add_argument("--fmax", type=float, nargs="+", default=[35.0], help="clock (MHz) for us per inference")
    args = parser.parse_args()
    print("| lanes | segments | K | cycles/step | " + " | ".join(f"us/inference at {f:g} MHz" for f in args.fmax) + " |")
    print("|---|---|---|---|" + "---|" * len(args.fmax))
    for lanes in args.lanes:
        for segments in args.segments:
            for events in args.events:
                c = mean_period(lanes, segments, events, args.inputs, args.hidden)
                us = [c * args.steps_per_inference / f for f in args.fmax]
                print(f"| {lanes} | {segments} | {events} | {c:.1f} | " + " | ".join(f"{u:,.0f}" for u in us) + " |")


if __name__ == "__main__":
    main()
