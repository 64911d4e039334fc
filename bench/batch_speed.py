"""Forward + backward of one training batch (no optimiser step), wall clock and CPU time.

    python bench/batch_speed.py --task smnist --threads 1 2 --repeat 5
    PYTHONPATH=/path/to/older/checkout python bench/batch_speed.py --task smnist --threads 1 2

Uses only what every version of brf_hw has (build_model, sequence_loss, TaskData), so the same
script times an older checkout through PYTHONPATH. Threads are set here, not by brf_hw.threads
(older checkouts lack it): numba gets n threads and torch ``--torch-threads`` (default n, what an
older checkout did with OMP_NUM_THREADS=n; training with brf_hw.threads uses 1). The CPU time is
that of the whole process (all threads): on a shared machine it is the steadier number, the wall
clock the one that counts. Each figure is the minimum over --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import torch

from brf_hw.model import build_model
from brf_hw.train.metrics import sequence_loss
try:
    from brf_hw.tasks import TASKS, TaskData
except ImportError:  # brf_hw before tasks had their own module (benchmarks compare versions)
    from brf_hw.train.tasks import TASKS, TaskData
from brf_hw.train.trainer import TrainConfig, model_config_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="smnist")
    parser.add_argument("--kernel", default="fused")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--torch-threads", type=int, help="torch intra-op threads (default: as --threads)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    spec = TASKS[args.task]
    batch = next(TaskData(spec, args.data_dir).batches("train", spec.batch_size, limit=spec.batch_size))
    model = build_model(model_config_for(spec, TrainConfig(task=args.task)), seed=0, kernel=args.kernel)
    import brf_hw

    print(f"brf_hw from {os.path.dirname(brf_hw.__file__)}; {args.task} {spec.inputs}-{spec.hidden}-{spec.outputs}, "
          f"batch {spec.batch_size} x {batch.x.shape[0]} steps, kernel {args.kernel}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    for n in args.threads:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
        torch.set_num_threads(args.torch_threads or n)  # after numba: its OpenMP start-up resets it
        walls, cpus = [], []
        for i in range(args.repeat + 1):  # the first run warms up (compilation, first-touch memory)
            wall, cpu = time.perf_counter(), time.process_time()
            loss = sequence_loss(model(batch.x).outputs, batch, spec.loss_mode)
            model.zero_grad()
            loss.backward()
            if i:
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
        layer = numba.threading_layer() if getattr(numba.np.ufunc.parallel, "_is_initialized", False) else "-"
        print(f"numba {numba.get_num_threads()} thread(s) ({layer}), torch {torch.get_num_threads()}: "
              f"fwd+bwd {min(walls):.3f} s wall, {min(cpus):.3f} s CPU (min of {args.repeat}; "
              f"median wall {sorted(walls)[len(walls) // 2]:.3f} s)", flush=True)


if __name__ == "__main__":
    main()
