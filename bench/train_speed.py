"""Training speed of the fused BPTT kernel against the reference autograd loop, side by side.

    python bench/train_speed.py                              # ECG 4-36-6 (batch 16), S-MNIST 1-256-10 (batch 256)
    python bench/train_speed.py --threads 1 2 --repeat 3     # each at 1 and 2 threads, min of 3
    python bench/train_speed.py --device cuda                # the same on a GPU
    python bench/train_speed.py --weights shipped            # the shipped networks' weights

``--weights init`` (default) starts every model from the same seed-0 initial weights, which barely
spike (S-MNIST: none in the first batch); ``--weights shipped`` from the float network the shipped
8-bit artifact of the task stands for (S-MNIST: ~7 hidden spikes per step and image), the
activity a network has for most of its training. The event-driven parts of the kernel cost more there.

ECG rows are one training epoch (forward, backward, Adam step; 35 batches) on real data; S-MNIST
rows a fixed number of batches (--smnist-batches), and "fwd+bwd/batch" the forward and backward of
one batch alone (no optimiser step), the figure the issue-14 target (<= 0.6 s) is about. Every model
starts from the same initial weights. Also reported: the bytes autograd keeps for the backward pass,
per time step and hidden neuron.

Threads: each --threads value goes through brf_hw.threads.set_threads (numba gets n threads, torch
one, as in training); the header line states torch's and numba's settings, the BLAS the fused
kernel uses and the load average, because on a shared machine timings are noisy: every figure is
the minimum over --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np
import torch

from brf_hw.kernels import cpu_resonator
from brf_hw.model import build_model
from brf_hw.threads import set_threads
from brf_hw.train.metrics import sequence_loss
try:
    from brf_hw.tasks import TASKS, TaskData
except ImportError:  # brf_hw before tasks had their own module (benchmarks compare versions)
    from brf_hw.train.tasks import TASKS, TaskData
from brf_hw.train.trainer import TrainConfig, model_config_for


def saved_bytes(model, batch, mode: str) -> int:
    """Bytes of the distinct tensors autograd saves for one forward pass."""
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sequence_loss(model(batch.x).outputs, batch, mode)
    return sum(storages.values())


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def epoch_time(model, batches, mode, device) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    start = time.perf_counter()
    for batch in batches:
        loss = sequence_loss(model(batch.x).outputs, batch, mode)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - start


def batch_time(model, batch, mode, device) -> float:
    """Forward and backward of one batch, no optimiser step."""
    start = time.perf_counter()
    loss = sequence_loss(model(batch.x).outputs, batch, mode)
    model.zero_grad()
    loss.backward()
    _sync(device)
    return time.perf_counter() - start


def header(device) -> str:
    gemm, _ = cpu_resonator.blas(np.float32)  # the default; a fused-mkl row says its own
    return (f"torch {torch.__version__} ({torch.get_num_threads()} intra-op thread(s)), numba {numba.__version__} "
            f"({numba.get_num_threads()} of {numba.config.NUMBA_NUM_THREADS} threads, layer "
            f"{numba.config.THREADING_LAYER}), device {device}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f}, fused recurrent adjoint via "
            f"{'MKL sgemm' if gemm else 'compiled loops'}")


def shipped_weights(task: str) -> dict:
    """The state dict of the float network the task's shipped 8-bit artifact stands for."""
    from brf_hw.analyze.common import float_model_from_artifact, load_int_artifact
    from brf_hw.artifact import shipped_artifact

    return float_model_from_artifact(*load_int_artifact(shipped_artifact(task))).state_dict()


def bench_task(task: str, kernels: list[str], device: torch.device, max_batches: int | None, data_dir,
               repeat: int, threads: int, weights: str = "init") -> dict:
    spec = TASKS[task]
    data = TaskData(spec, data_dir)
    limit = None if max_batches is None else max_batches * spec.batch_size
    batches = [type(b)(*(t.to(device) if t is not None else None for t in b))
               for b in data.batches("train", spec.batch_size, limit=limit)]
    cfg = model_config_for(spec, TrainConfig(task=task))
    results = {}
    for kernel in kernels:
        cpu_resonator.use_blas(True if kernel == "fused-mkl" else None)
        model = build_model(cfg, seed=0, kernel=kernel.removesuffix("-mkl"))
        if weights == "shipped":
            model.load_state_dict(shipped_weights(task))
        model = model.to(device)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():  # the activity the timed runs start from
            spikes = float(model(batches[0].x).spikes_per_step.mean())
        epoch_time(model, batches[:1], spec.loss_mode, device)  # warm-up: compilation, caches
        seconds, per_batch = float("inf"), float("inf")
        for _ in range(repeat):
            model.load_state_dict(init)  # every repeat trains from the same weights
            seconds = min(seconds, epoch_time(model, batches, spec.loss_mode, device))
            if task != "ecg":
                per_batch = min(per_batch, batch_time(model, batches[0], spec.loss_mode, device))
        per_step_neuron = saved_bytes(model, batches[0], spec.loss_mode) / (
            batches[0].x.shape[0] * batches[0].x.shape[1] * spec.hidden)
        cpu_resonator.use_blas(None)
        results[kernel] = seconds
        extra = f"  fwd+bwd/batch {per_batch:6.3f} s" if task != "ecg" else ""
        print(f"{task:7s} {spec.inputs}-{spec.hidden}-{spec.outputs} batch {spec.batch_size:3d} "
              f"x{len(batches):3d}  {device.type:4s} threads {threads}  {kernel:9s} {seconds:8.2f} s{extra}  "
              f"{per_step_neuron:6.1f} B saved / step / neuron  {weights} weights, {spikes:.2f} spikes / step",
              flush=True)
    if "reference" in results and "fused" in results:
        print(f"{task:7s} threads {threads}  speed-up fused vs reference: "
              f"{results['reference'] / results['fused']:.1f}x", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["ecg", "smnist"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kernels", nargs="+", default=["fused", "reference"],
                        choices=["fused", "fused-mkl", "reference"],
                        help="fused-mkl: the fused kernel with MKL's sgemm for the recurrent adjoint")
    parser.add_argument("--smnist-batches", type=int, default=2, help="S-MNIST batches per measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[None],
                        help="thread counts to run (default: brf_hw.threads' choice)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; the minimum is reported")
    parser.add_argument("--weights", choices=["init", "shipped"], default="init",
                        help="seed-0 initial weights, or the float network of the task's shipped 8-bit artifact")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    device = torch.device(args.device)
    for n in args.threads:
        used = set_threads(n)
        print(header(device), flush=True)
        for task in args.tasks:
            max_batches = None if task == "ecg" else args.smnist_batches
            bench_task(task, args.kernels, device, max_batches, args.data_dir, args.repeat, used, args.weights)


if __name__ == "__main__":
    main()
