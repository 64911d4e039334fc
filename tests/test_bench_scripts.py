"""The benchmark scripts run (they are not imported anywhere else, and one had stopped working
unnoticed): kernel_speed's own check compares the legacy and current kernels (same spikes,
gradients to 1e-9 in float64) before it times them; train_speed prints a row per kernel, from the shipped network's weights where asked."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_kernel_speed_checks_legacy_against_current_kernel():
    out = run_bench("bench/kernel_speed.py", "--hidden", "13", "--threads", "1", "--repeat", "1",
                    "--steps", "30", "--batch", "4")
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("13 ")]
    assert len(rows) == 1 and len(rows[0]) == 7, out  # H, threads, spikes, old, new, new-mkl, speed-up


def test_train_speed_prints_a_row_per_kernel():
    out = run_bench("bench/train_speed.py", "--tasks", "ecg", "--kernels", "fused", "fused-mkl",
                    "--threads", "1", "--repeat", "1", "--weights", "shipped")
    rows = [line.split() for line in out.splitlines() if line.startswith("ecg ")]
    assert [r[9] for r in rows] == ["fused", "fused-mkl"], out
    assert all(float(r[10]) > 0 for r in rows), out
    # the shipped ECG network spikes (the seed-0 initial weights barely do)
    assert all(r[-6] == "shipped" and float(r[-4]) > 1 for r in rows), out
