"""Training speed of the fused BPTT kernel against the reference autograd loop, side by side.

    python bench/train_speed.py                    # ECG 4-36-6 (batch 16) and S-MNIST 1-256-10 (batch 256)
    python bench/train_speed.py --device cuda      # the same on a GPU

Each row is one training epoch (forward, backward, Adam step) on real data with the same
initial weights; for S-MNIST a fixed number of batches. Also reported: the bytes autograd keeps
for the backward pass, per time step and hidden neuron.
"""

from __future__ import annotations

import argparse
import time

import torch

from brf_hw.model import build_model
from brf_hw.train.metrics import sequence_loss
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


def epoch_time(model, batches, mode, device) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    start = time.perf_counter()
    for batch in batches:
        loss = sequence_loss(model(batch.x).outputs, batch, mode)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_task(task: str, kernels: list[str], device: torch.device, max_batches: int | None, data_dir):
    spec = TASKS[task]
    data = TaskData(spec, data_dir)
    limit = None if max_batches is None else max_batches * spec.batch_size
    batches = [type(b)(*(t.to(device) if t is not None else None for t in b))
               for b in data.batches("train", spec.batch_size, limit=limit)]
    cfg = model_config_for(spec, TrainConfig(task=task))
    results = {}
    for kernel in kernels:
        model = build_model(cfg, seed=0, kernel=kernel).to(device)
        epoch_time(model, batches[:1], spec.loss_mode, device)  # warm-up: compilation, caches
        seconds = epoch_time(model, batches, spec.loss_mode, device)
        per_step_neuron = saved_bytes(model, batches[0], spec.loss_mode) / (
            batches[0].x.shape[0] * batches[0].x.shape[1] * spec.hidden)
        results[kernel] = seconds
        print(f"{task:7s} {spec.inputs}-{spec.hidden}-{spec.outputs} batch {spec.batch_size:3d} "
              f"x{len(batches):3d}  {device.type:4s} {kernel:9s} {seconds:8.2f} s  "
              f"{per_step_neuron:6.1f} B saved / step / neuron", flush=True)
    if "reference" in results and "fused" in results:
        print(f"{task:7s} speed-up fused vs reference: {results['reference'] / results['fused']:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["ecg", "smnist"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kernels", nargs="+", default=["fused", "reference"])
    parser.add_argument("--smnist-batches", type=int, default=2, help="S-MNIST batches per measurement")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    for task in args.tasks:
        max_batches = None if task == "ecg" else args.smnist_batches
        bench_task(task, args.kernels, device, max_batches, args.data_dir)


if __name__ == "__main__":
    main()
