"""Cycles per step of the SHD shape (700-128-20) against K, from the exact cycle model
(``core.period_model``, which tests hold equal to the simulated accelerator), and us per
inference at the given clocks. Two activities:

- default: each step has ``--inputs`` input spikes and ``--hidden`` hidden spikes at uniformly
  random places (issue 21: a trained SHD network at 5 % input density spikes about 20 per step);
- ``--artifact``: a trained network's own hidden spikes (the golden model) on random inputs at
  ``--density``; its spikes bunch into fewer chunks than uniform ones, which READOUT takes later.

    python bench/kevents_cycles.py [--lanes 8 16] [--segments 1 2] [--events 1 2 4 8] [--fmax 35]
    python bench/kevents_cycles.py --artifact runs/shd-demo/brf_shd.npz --lanes 16 --segments 1 --events 4 --fmax 54.4

(a trained 700-128-20 artifact without the SHD files: ``python -m brf_hw.data.shd_synthetic DIR``,
then ``brf-hw qat --task shd --data-dir DIR --epochs 8 --qat-epochs 1 --batch-size 8 --run-dir
runs/shd-demo``.)
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


def trained_period(net, lanes: int, segments: int, events: int, density: float, steps: int = 250,
                   sequences: int = 40) -> tuple:
    """(mean cycles per step, mean hidden spikes per step) of ``net`` on random input spikes."""
    from brf_hw import golden
    from brf_hw.hw.simulate import expected_cycles

    rng = np.random.default_rng(0)
    x = (rng.random((steps, sequences, net.shape[0])) < density).astype(np.int64)
    spikes = golden.run(net, x).spikes
    c = expected_cycles(net, x, spikes, lanes, segments, period_model, events)
    return float(c.mean()), float(spikes.sum(-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lanes", type=int, nargs="+", default=[8])
    parser.add_argument("--segments", type=int, nargs="+", default=[2])
    parser.add_argument("--events", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--inputs", type=int, default=35, help="input spikes per step (5 %% of 700)")
    parser.add_argument("--hidden", type=int, default=20, help="hidden spikes per step")
    parser.add_argument("--steps-per-inference", type=int, default=250)
    parser.add_argument("--fmax", type=float, nargs="+", default=[35.0], help="clock (MHz) for us per inference")
    parser.add_argument("--artifact", help="a trained network: its own hidden spikes on random inputs")
    parser.add_argument("--density", type=float, default=0.05, help="--artifact: probability of each input spike")
    args = parser.parse_args()
    net = None
    if args.artifact:
        from brf_hw.artifact import load_artifact

        net, _ = load_artifact(args.artifact)
        print(f"{args.artifact}: {'-'.join(map(str, net.shape))}, random inputs at {args.density:g}")
    else:
        print(f"{args.inputs} input and {args.hidden} hidden spikes per step at uniformly random places")
    print("| lanes | segments | K | hidden spikes/step | cycles/step | "
          + " | ".join(f"us/inference at {f:g} MHz" for f in args.fmax) + " |")
    print("|---|---|---|---|---|" + "---|" * len(args.fmax))
    for lanes in args.lanes:
        for segments in args.segments:
            for events in args.events:
                if net is not None:
                    c, hidden = trained_period(net, lanes, segments, events, args.density, args.steps_per_inference)
                else:
                    c, hidden = mean_period(lanes, segments, events, args.inputs, args.hidden), args.hidden
                us = [c * args.steps_per_inference / f for f in args.fmax]
                print(f"| {lanes} | {segments} | {events} | {hidden:.1f} | {c:.1f} | "
                      + " | ".join(f"{u:,.0f}" for u in us) + " |")


if __name__ == "__main__":
    main()
