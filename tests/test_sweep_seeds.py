"""The seed sweep: seed lists, the median's interval, and (slow) a real two-seed sweep."""

import argparse
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sweep = runpy.run_path(str(REPO / "training" / "sweep_seeds.py"))
compare = runpy.run_path(str(REPO / "training" / "compare_runs.py"))


def test_seed_lists():
    assert sweep["parse_seeds"]("0-3,7,2") == [0, 1, 2, 3, 7]
    assert sweep["parse_seeds"]("5") == [5]
    for bad in ("3-1", "a", "-2", "1,,2"):
        with pytest.raises(argparse.ArgumentTypeError):
            sweep["parse_seeds"](bad)


def test_median_interval():
    assert compare["median_interval"](np.full(7, 85.0)) == (85.0, 85.0)
    low, high = compare["median_interval"](np.arange(80.0, 91.0))
    assert low < 85.0 < high and 81.0 <= low and high <= 89.0


@pytest.mark.slow
def test_two_seeds_in_parallel_then_one_table(tmp_path):
    out = tmp_path / "seeds"
    cmd = [sys.executable, str(REPO / "training" / "sweep_seeds.py"), "--seeds", "0-1", "--jobs", "2", "--out",
           str(out), "--", "--epochs", "1", "--train-limit", "16", "--eval-limit", "4", "--qat-epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = (out / "summary.md").read_text()
    assert "| seed0 |" in table and "| seed1 |" in table and "integer median" in table
    assert "chosen by validation" in table
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert again.stdout.count("done earlier") == 2  # finished seeds are not run again
