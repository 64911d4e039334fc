"""Every command-line entry point turns a user error into one line on stderr and exit code 2,
with no traceback; numeric flags are checked where they are typed."""

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brf_hw.artifact import load_artifact, save_artifact
from brf_hw.artifact import shipped_artifact

REPO = Path(__file__).resolve().parents[1]
# runpy re-executes modules the test process has imported already: harmless here
pytestmark = pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")


def run_cli(monkeypatch, capsys, target: str, *argv: str) -> tuple[int, str]:
    """Run a CLI in-process exactly as ``python target argv`` would (its ``__main__`` block
    included); returns the exit code and stderr."""
    monkeypatch.setattr(sys, "argv", [target, *argv])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        if target.endswith(".py"):
            runpy.run_path(str(REPO / target), run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    err = capsys.readouterr().err
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), err


def assert_user_error(result, *fragments):
    code, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], err


@pytest.mark.parametrize("argv, fragments", [
    (["--batch-size", "0"], ["--batch-size", "0 is outside >= 1"]),
    (["--epochs", "-1"], ["--epochs", "-1 is outside >= 1"]),
    (["--lr", "nan"], ["--lr", "not a finite number"]),
    (["--lr", "0"], ["--lr", "0 is not > 0"]),
    (["--mask-prob", "1"], ["--mask-prob", "1 is not in [0, 1)"]),
    (["--threads", "0"], ["--threads"]),
    (["--epochs", "two"], ["--epochs", "'two' is not an integer"]),
])
def test_train_rejects_nonsense_flags(monkeypatch, capsys, argv, fragments):
    assert_user_error(run_cli(monkeypatch, capsys, "training/train.py", *argv), *fragments)


def test_train_user_errors(monkeypatch, capsys, tmp_path):
    assert_user_error(run_cli(monkeypatch, capsys, "training/train.py", "--resume", "--run-dir",
                              str(tmp_path / "none"), "--epochs", "1"), "no checkpoint at", "last.pt")
    if not __import__("torch").cuda.is_available():
        assert_user_error(run_cli(monkeypatch, capsys, "training/train.py", "--device", "cuda",
                                  "--run-dir", str(tmp_path / "gpu")), "no CUDA device")
    assert_user_error(run_cli(monkeypatch, capsys, "training/train.py", "--device", "tpu",
                              "--run-dir", str(tmp_path / "tpu")), "'tpu'")


def test_qat_user_errors(monkeypatch, capsys, tmp_path):
    assert_user_error(run_cli(monkeypatch, capsys, "training/qat.py", "--init", str(tmp_path / "missing.pt"),
                              "--run-dir", str(tmp_path / "q")), "no checkpoint at", "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert_user_error(run_cli(monkeypatch, capsys, "training/qat.py", "--init", str(junk),
                              "--run-dir", str(tmp_path / "q")), "junk.pt is not a readable checkpoint")
    assert_user_error(run_cli(monkeypatch, capsys, "training/qat.py", "--weight-bits", "1"),
                      "--weight-bits", "1 is outside 2..32")
    from brf_hw.fixed import kinds

    with monkeypatch.context() as m:  # every float kind has integer arithmetic: take one out of the registry
        m.delitem(kinds.KINDS, "bhrf")
        assert_user_error(run_cli(monkeypatch, capsys, "training/qat.py", "--neuron", "bhrf"), "covers brf",
                          "--neuron bhrf")
    assert_user_error(run_cli(monkeypatch, capsys, "training/sweep_bits.py", "--bits", "4", "40"),
                      "--bits", "40 is outside 2..32")


class _WritesMarker:
    """A pickle payload: loading it with plain pickle would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_pickles_are_refused_without_running(monkeypatch, capsys, tmp_path):
    import torch

    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "brf_hw.checkpoint/1", "model": _WritesMarker(marker)}, evil)
    run_dir = tmp_path / "resume"
    run_dir.mkdir()
    (run_dir / "last.pt").write_bytes(evil.read_bytes())
    refused = "refused: it holds objects other than tensors and plain data"
    assert_user_error(run_cli(monkeypatch, capsys, "training/qat.py", "--init", str(evil),
                              "--run-dir", str(tmp_path / "q")), "evil.pt", refused)
    assert_user_error(run_cli(monkeypatch, capsys, "training/train.py", "--resume", "--run-dir", str(run_dir),
                              "--epochs", "1"), "last.pt", refused)
    assert_user_error(run_cli(monkeypatch, capsys, "training/train.py", "--init", str(evil), "--run-dir",
                              str(tmp_path / "t")), "evil.pt", refused)
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.analyze", "nir", str(evil), "--out",
                              str(tmp_path / "x.nir")), "evil.pt", refused)
    # an artifact is numpy's .npz: an object array inside would unpickle; allow_pickle=False refuses it
    net, _ = load_artifact(shipped_artifact())
    artifact = tmp_path / "evil.npz"
    save_artifact(artifact, net, task="ecg", dt=0.01, theta=1.0, gamma=0.9)
    with np.load(artifact) as data:
        arrays = dict(data)
    arrays["u0"] = np.array([_WritesMarker(marker)], dtype=object)
    np.savez(artifact, **arrays)
    code, err = run_cli(monkeypatch, capsys, "brf_hw.golden", str(artifact))
    assert code == 2 and "Traceback" not in err, err
    assert not marker.exists(), "a crafted file ran code"
    assert not (tmp_path / "x.nir").exists() and not (tmp_path / "t").exists()


def test_golden_user_errors(monkeypatch, capsys, tmp_path):
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.golden", str(tmp_path / "none.npz")), "none.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(shipped_artifact().read_bytes()[:2000])
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.golden", str(truncated)), "not a readable")
    net, manifest = load_artifact(shipped_artifact())
    other = tmp_path / "shd.npz"
    save_artifact(other, net, task="shd", dt=0.01, theta=1.0, gamma=0.9)
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.golden", str(other)), "task shd feeds 700 inputs")


def test_generate_and_synth_user_errors(monkeypatch, capsys, tmp_path):
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.generate", "--lanes", "0"), "--lanes")
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.generate", "--neurons", "64", "--out",
                              str(tmp_path)), "--neurons 64 does not match")
    assert not list(tmp_path.iterdir())  # nothing half-written
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.generate", "--artifact", str(tmp_path / "x.npz"),
                              "--out", str(tmp_path / "o")), "x.npz")
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.hw.synth", "--segments", "-2"), "--segments")
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.hw.synth", "--input-density", "1.5"), "--input-density")
    assert_user_error(run_cli(monkeypatch, capsys, "brf_hw.hw.synth", "--artifact", str(tmp_path / "y.npz")),
                      "y.npz")


def test_sim_and_compare_user_errors(monkeypatch, capsys, tmp_path):
    assert_user_error(run_cli(monkeypatch, capsys, "sim/run.py", "--jobs", "0"), "--jobs")
    assert_user_error(run_cli(monkeypatch, capsys, "training/compare_runs.py", str(tmp_path)),
                      "no qat_summary.json")


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    broken = tmp_path / "broken.npz"
    np.savez(broken, w_in=np.zeros((2, 2)))
    proc = subprocess.run([sys.executable, "-m", "brf_hw.golden", str(broken)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"python -m brf_hw.golden: error: {broken}: manifest is missing"]
