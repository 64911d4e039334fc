"""Forward + backward of the fused CPU kernel (hidden layer) against the kernel it replaced, in
ns per neuron-step, over a sweep of hidden sizes.

    python bench/kernel_speed.py                         # H = 36 128 256 512, 1 and 2 threads
    python bench/kernel_speed.py --hidden 256 --threads 2 --repeat 5

Both kernels get the same random network and inputs (float32, batch B, T steps; input currents
scaled so that a few percent of the neurons spike per step) and the same gradient at every spike.
"old" is the kernel before issue 14 (bench/legacy_kernel.py: one sequence per thread, the
recurrent adjoint W_rec^T gI as a GEMV per sequence and step, the weight gradient accumulated with
a stride of H); "new" is brf_hw.kernels.cpu_resonator (blocks of sequences, the recurrent adjoint
as one product per block and step in compiled loops, the default; "new-mkl" the same with MKL's
sgemm for that product, where torch links MKL).
Each figure is the minimum over --repeat runs (this is a shared machine: the minimum is the
least disturbed run). Before timing, each kernel runs the same network in float64 (8 sequences):
same spikes and gradients equal to 1e-9 relative, or the benchmark stops. (In float32 a random
network whose gradients grow over the sequence can differ by more between any two correct
implementations, the reference included, so the check is made where rounding cannot hide a bug.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import legacy_kernel  # noqa: E402

from brf_hw.kernels import cpu_resonator as cpu  # noqa: E402
from brf_hw.threads import set_threads  # noqa: E402

DT, THETA, GAMMA = 0.01, 1.0, 0.9


def network(hidden: int, batch: int, steps: int, drive: float = 30.0, seed: int = 0):
    """A stable BRF layer (b0 = p(omega) - b_offset) under Gaussian input currents of standard
    deviation ``drive``: 30 makes ~6 % of the neurons spike per step, 100 ~18 %."""
    rng = np.random.default_rng(seed)
    f = np.float32
    i_in = (rng.standard_normal((steps, batch, hidden)) * drive).astype(f)
    w_rec = (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(f)
    omega = rng.uniform(5, 60, hidden)
    b0 = ((-1 + np.sqrt(1 - (DT * omega) ** 2)) / DT - rng.uniform(0, 1, hidden)).astype(f)
    omega = omega.astype(f)
    grad_z = (rng.standard_normal((steps, batch, hidden)) * 0.01).astype(f)
    return i_in, w_rec, omega, b0, grad_z


def run_old(net):
    i_in, w_rec, omega, b0, grad_z = net
    u, v, q, z = legacy_kernel.resonator_forward(i_in, w_rec, omega, b0, DT, THETA, GAMMA, True)
    grads = legacy_kernel.resonator_backward(grad_z, u, v, q, z, w_rec, omega, b0, DT, THETA, GAMMA, True, 0, 0)
    return z, grads


def run_new(net):
    i_in, w_rec, omega, b0, grad_z = net
    brf = cpu.Q_DAMP | cpu.Q_THRESH  # q in the damping and the threshold: the legacy kernel's True
    u, v, q, z = cpu.resonator_forward(i_in, w_rec, omega, b0, DT, THETA, GAMMA, brf)
    grads = cpu.resonator_backward(grad_z, u, v, q, z, w_rec, omega, b0, DT, THETA, GAMMA, brf, 0, 0)
    return z, grads


def check(net, kernels) -> None:
    """Every kernel on the first 8 sequences in float64: same spikes, gradients to 1e-9."""
    small = tuple(np.ascontiguousarray(a[:, :8] if a.ndim == 3 else a).astype(np.float64) for a in net)
    results = []
    for kernel in kernels:
        cpu.use_blas(kernel == "new-mkl")
        results.append((kernel, *(run_old if kernel == "old" else run_new)(small)))
    cpu.use_blas(None)
    _, ref_z, ref_grads = results[0]
    for kernel, z, grads in results[1:]:
        assert np.array_equal(z, ref_z), f"{kernel}: spikes differ from {results[0][0]}"
        for a, b in zip(grads, ref_grads):
            scale = max(float(np.abs(b).max()), 1e-300)
            assert float(np.abs(a - b).max()) / scale < 1e-9, f"{kernel}: gradients differ from {results[0][0]}"


def timed(fn, net, repeat: int) -> tuple[float, object]:
    result = fn(net)  # warm-up: compilation, first-touch of memory
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(net)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, nargs="+", default=[36, 128, 256, 512])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--drive", type=float, default=30.0,
                        help="input current standard deviation (30: ~6%% spikes per step, 100: ~18%%)")
    parser.add_argument("--kernels", nargs="+", default=["old", "new", "new-mkl"],
                        choices=["old", "new", "new-mkl"])
    args = parser.parse_args()
    cpu.use_blas(True)
    gemm, _ = cpu.blas(np.float32)
    cpu.use_blas(None)
    set_threads(args.threads[0])  # before the header: it picks numba's threading layer
    print(f"torch {torch.__version__}, numba {numba.__version__} (threading layer "
          f"{numba.threading_layer()}, pool {numba.config.NUMBA_NUM_THREADS}), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; MKL for new-mkl: "
          f"{'sgemm (torch)' if gemm else 'none (new-mkl runs the compiled loops)'}")
    print(f"batch {args.batch}, {args.steps} steps, float32, forward + backward, min of {args.repeat}")
    print(f"{'H':>4s} {'threads':>7s} {'spikes':>7s} " + " ".join(f"{k + ' ns/n-step':>20s}" for k in args.kernels)
          + "  speed-up new vs old")
    for hidden in args.hidden:
        net = network(hidden, args.batch, args.steps, args.drive)
        check(net, args.kernels)
        neuron_steps = args.batch * args.steps * hidden
        for n in args.threads:
            used = set_threads(n)
            times, results = {}, {}
            for kernel in args.kernels:
                cpu.use_blas(kernel == "new-mkl")
                fn = run_old if kernel == "old" else run_new
                times[kernel], results[kernel] = timed(fn, net, args.repeat)
            cpu.use_blas(None)
            ref_z = results[args.kernels[0]][0]
            line = f"{hidden:4d} {used:7d} {ref_z.mean():7.3f} " + " ".join(
                f"{times[k] / neuron_steps * 1e9:20.1f}" for k in args.kernels)
            if "old" in times and "new" in times:
                line += f"  {times['old'] / times['new']:.1f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
