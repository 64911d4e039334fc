"""torchrun data parallelism: two CPU processes (gloo) with the same global batch train the same
network as one process, to float rounding: the gradient sums run in another order, and Adam's
normalised steps carry the last-bit differences into the weights (about 3e-6 relative after
three updates at learning rate 1)."""

import csv
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
ARGS = ["training/train.py", "--task", "ecg", "--epochs", "1", "--batch-size", "16", "--train-limit", "48",
        "--eval-limit", "8", "--no-test-eval", "--seed", "1", "--lr", "1", "--threads", "1"]


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_two_processes_train_like_one(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.Popen([str(torchrun), "--nproc_per_node", "2", "--master_port", "29731", *ARGS,
                            "--run-dir", str(tmp_path / "two")], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    one = subprocess.run([sys.executable, *ARGS, "--run-dir", str(tmp_path / "one")], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    out_two = two.communicate(timeout=600)[0].decode()
    assert one.returncode == 0, one.stdout + one.stderr
    assert two.returncode == 0, out_two
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    for name, tensor in a["model"].items():
        torch.testing.assert_close(b["model"][name], tensor, rtol=1e-4, atol=1e-4, msg=name)
    r1, r2 = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert len(r1) == len(r2) == 1
    for x, y in zip(r1, r2):
        for key in ("train_loss", "train_acc", "train_sops", "val_loss", "val_acc"):
            assert abs(float(x[key]) - float(y[key])) <= 1e-4 * max(1.0, abs(float(x[key]))), key
    assert float(r1[-1]["train_sops"]) > 0  # the network spikes: the test compares real dynamics
