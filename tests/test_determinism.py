"""Results do not depend on the thread count.

The fused CPU kernels add every sum across sequences (weight, omega, b0, alpha gradients) in a
fixed block order whatever the number of threads, and training pins torch's own pool to one thread
(``brf_hw.threads``), so one command and seed give the same numbers on a laptop and on a server.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numba
import pytest
import torch

from brf_hw import threads
from brf_hw.kernels import cpu_resonator as cpu
from brf_hw.kernels.fused import FusedNetworkCPU, FusedResonatorCPU

ROOT = Path(__file__).resolve().parents[1]

needs_two_threads = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                                       reason="numba's pool has one thread (NUMBA_NUM_THREADS=1)")


@pytest.fixture
def restore_threads():
    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    yield
    torch.set_num_threads(torch_threads)
    numba.set_num_threads(numba_threads)
    cpu.use_blas(None)


def network_run(dtype, tbptt=0, batch=37, hidden=40, steps=60, inputs=3, outputs=4, seed=0):
    """Outputs and every gradient of a random spiking network through the fused CPU Function.
    batch 37 makes 5 blocks of 9 sequences, the last one short."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, inputs, generator=g) < 0.3).to(dtype)
    omega = torch.rand(hidden, generator=g, dtype=dtype) * 50 + 5
    b0 = (-1 + torch.sqrt(1 - (0.01 * omega) ** 2)) / 0.01 - torch.rand(hidden, generator=g, dtype=dtype)
    params = [torch.randn(hidden, inputs, generator=g, dtype=dtype) * 40,
              torch.randn(hidden, hidden, generator=g, dtype=dtype) * 8,
              omega, b0,  # a stable BRF layer: b0 = p(omega) - b_offset
              torch.randn(outputs, hidden, generator=g, dtype=dtype),
              torch.rand(outputs, generator=g, dtype=dtype) * 0.1 + 0.85]
    leaves = [p.requires_grad_() for p in params]
    o, z, counts, u, v, q = FusedNetworkCPU.apply(x, *leaves, 0.01, 1.0, 0.9, True, "double_gaussian", tbptt)
    loss = ((o * torch.linspace(-1, 1, outputs, dtype=dtype)).sum() + 0.1 * (o**2).sum() + 0.01 * z.sum()
            + 0.003 * (counts**2).sum())
    grads = torch.autograd.grad(loss, leaves)
    return [o, z, u, v, q, *grads]


@needs_two_threads
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("blas", [True, False], ids=["blas", "loops"])
@pytest.mark.parametrize("tbptt", [0, 7])
def test_fused_gradients_bit_identical_for_1_and_2_threads(dtype, blas, tbptt, restore_threads):
    cpu.use_blas(blas)
    runs = {}
    for numba_threads, torch_threads in ((1, 1), (2, 1), (2, 2)):
        numba.set_num_threads(numba_threads)
        torch.set_num_threads(torch_threads)
        runs[numba_threads, torch_threads] = network_run(dtype, tbptt)
    base = runs[1, 1]
    assert 0 < base[1].mean() < 0.5, "the test network should spike, but not always"
    for key, run in runs.items():
        for i, (a, b) in enumerate(zip(base, run)):
            assert torch.equal(a, b), f"output/gradient {i} differs between (1, 1) and {key} threads"


@needs_two_threads
def test_hidden_layer_function_bit_identical_for_1_and_2_threads(restore_threads):
    g = torch.Generator().manual_seed(3)
    steps, batch, hidden = 50, 21, 24
    leaves = [(torch.randn(steps, batch, hidden, generator=g) * 80).requires_grad_(),
              (torch.randn(hidden, hidden, generator=g) * 30).requires_grad_(),
              (torch.rand(hidden, generator=g) * 60 + 5).requires_grad_(),
              (-torch.rand(hidden, generator=g)).requires_grad_()]
    results = []
    for n in (1, 2):
        numba.set_num_threads(n)
        z, u, v, q = FusedResonatorCPU.apply(*leaves, 0.01, 1.0, 0.9, True, "multi_gaussian", 0)
        loss = (z * torch.linspace(-1, 1, hidden)).sum() + (u**2).sum() * 0  # z reaches everything
        results.append([z, *torch.autograd.grad(loss, leaves)])
    assert results[0][0].sum() > 0
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_set_threads(restore_threads, monkeypatch):
    monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
    assert threads.set_threads(1) == 1
    assert numba.get_num_threads() == 1 and torch.get_num_threads() == 1
    expected = min(threads.available_cpus(), numba.config.NUMBA_NUM_THREADS)
    assert threads.set_threads(None) == expected == numba.get_num_threads()
    assert torch.get_num_threads() == 1  # torch's pool stays at one thread whatever n is
    assert threads.set_threads(10_000) == numba.config.NUMBA_NUM_THREADS  # capped at numba's pool
    assert threads.current_threads() == numba.config.NUMBA_NUM_THREADS
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    assert threads.default_threads() == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="positive integer"):
            threads.set_threads(bad)


def _train(run_dir: Path, env_threads: int, extra: list[str]) -> None:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(env_threads), OMP_NUM_THREADS=str(env_threads),
               MKL_NUM_THREADS=str(env_threads))
    cmd = [sys.executable, str(ROOT / "training" / "train.py"), "--task", "ecg", "--epochs", "2",
           "--train-limit", "64", "--eval-limit", "16", "--no-progress", "--run-dir", str(run_dir), *extra]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def _metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row.pop("epoch_seconds")
    return rows


def _tensors(obj, prefix=""):
    """Every tensor in a checkpoint, by path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


def test_training_identical_with_1_and_2_threads(tmp_path, ecg_splits):
    """A short real ECG training, once with one thread everywhere and once with two (environment
    and --threads): the same metrics (all but the wall-clock column) and bit-identical weights and
    optimizer state."""
    _train(tmp_path / "one", 1, [])
    _train(tmp_path / "two", 2, ["--threads", "2"])
    one, two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert len(one) == 2 and one == two
    a = dict(_tensors(torch.load(tmp_path / "one" / "last.pt", weights_only=True)))
    b = dict(_tensors(torch.load(tmp_path / "two" / "last.pt", weights_only=True)))
    assert a.keys() == b.keys() and any(k.startswith("/model/") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs between 1 and 2 threads"
