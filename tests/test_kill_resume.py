"""A training process killed with SIGKILL in the middle of an epoch, resumed with --resume, ends
bit-identical to a run that was never interrupted (real subprocesses, real ECG sequences)."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# the reference loop makes an epoch last seconds, so the kill lands inside one
ARGS = ["--task", "ecg", "--epochs", "2", "--lr", "1", "--batch-size", "16", "--train-limit", "32",
        "--eval-limit", "8", "--no-test-eval", "--kernel", "reference", "--threads", "1", "--seed", "3"]


def train(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(REPO / "training" / "train.py"), *ARGS, "--run-dir", str(run_dir),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO)


def metric_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in csv.DictReader(f)]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    reference = train(straight)  # in parallel with the run that gets killed
    victim = train(killed)
    deadline = time.monotonic() + 300
    while not ((killed / "metrics.csv").exists() and len(metric_rows(killed)) == 1):
        assert victim.poll() is None and time.monotonic() < deadline, victim.stdout.read().decode()
        time.sleep(0.05)
    time.sleep(1.0)  # an epoch takes seconds: this lands inside epoch 2
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert torch.load(killed / "last.pt", weights_only=True)["epoch"] == 1, "the kill came after epoch 2"

    resumed = train(killed, "--resume")
    out_resumed = resumed.communicate(timeout=300)[0].decode()
    out_straight = reference.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0 and reference.returncode == 0, out_resumed + out_straight
    assert "resumed" in out_resumed and "at epoch 1" in out_resumed

    assert metric_rows(killed) == metric_rows(straight)  # each epoch once, same numbers
    for name in ("last.pt", "best.pt"):
        a = torch.load(straight / name, weights_only=True)
        b = torch.load(killed / name, weights_only=True)
        assert a["epoch"] == b["epoch"]
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (straight / "summary.json").read_text() == (killed / "summary.json").read_text()
