"""A seed sweep of the whole fixed-point flow as parallel jobs, then one summary table.

    python training/sweep_seeds.py --seeds 0-11 --jobs 2 --out runs/seeds -- --spike-penalty 0.002

Runs ``training/qat.py --seed S --run-dir OUT/seedS [ARGS after --]`` for every seed, JOBS at a
time, each with ``--threads 1`` unless ARGS set it (results do not depend on threads, so the jobs
only share the CPUs). A seed whose run directory already holds a finished run is not run again; an
unfinished one resumes (--resume). Then ``training/compare_runs.py`` writes OUT/summary.{md,png}:
per seed float and integer test accuracy with its interval, SOPs, validation numbers; the median
over seeds, and the network validation picks (lowest QAT validation loss): the one to ship.
Each job's output goes to OUT/seedS/log.txt.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from brf_hw.cli_util import POSITIVE_INT, UserError, run_main

HERE = Path(__file__).resolve().parent


def parse_seeds(text: str) -> list[int]:
    """'0-11', '0,3,5' or '0-3,7' -> a sorted list of distinct seeds."""
    seeds: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            first, last = int(lo), int(hi or lo)
            if first < 0 or last < first:
                raise ValueError
            seeds.update(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed list such as 0-11 or 0,3,5") from None
    return sorted(seeds)


def run_seed(seed: int, out: Path, extra: list[str]) -> tuple[int, int, float]:
    run_dir = out / f"seed{seed}"
    if (run_dir / "qat_summary.json").exists():
        return seed, 0, 0.0
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(HERE / "qat.py"), "--seed", str(seed), "--run-dir", str(run_dir), "--no-progress"]
    if (run_dir / "float" / "last.pt").exists():
        cmd.append("--resume")
    if "--threads" not in extra:
        cmd += ["--threads", "1"]
    start = time.perf_counter()
    with open(run_dir / "log.txt", "a") as log:
        code = subprocess.run(cmd + extra, stdout=log, stderr=subprocess.STDOUT).returncode
    return seed, code, time.perf_counter() - start


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-11"), help="e.g. 0-11 or 0,3,5")
    parser.add_argument("--jobs", type=POSITIVE_INT, default=1, help="runs at a time")
    parser.add_argument("--out", type=Path, default=Path("runs/seeds"), help="one run directory per seed")
    parser.add_argument("--target", type=float, help="accuracy line in the plot")
    args = parser.parse_args(argv)
    if {"--seed", "--run-dir"} & set(extra):
        raise UserError("--seed and --run-dir are set per job; leave them out of the arguments after --")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    with ThreadPoolExecutor(args.jobs) as pool:  # threads only wait on the job processes
        for seed, code, seconds in pool.map(lambda s: run_seed(s, args.out, extra), args.seeds):
            state = "done earlier" if not seconds else (f"{seconds:.0f} s" if code == 0 else f"FAILED (exit {code})")
            print(f"seed {seed}: {state}; log {args.out / f'seed{seed}' / 'log.txt'}", flush=True)
            if code:
                failed.append(seed)
    finished = [args.out / f"seed{s}" for s in args.seeds if s not in failed]
    if finished:
        cmd = [sys.executable, str(HERE / "compare_runs.py"), *map(str, finished), "--out", str(args.out / "summary")]
        if args.target is not None:
            cmd += ["--target", str(args.target)]
        subprocess.run(cmd, check=True)
    if failed:
        sys.exit(f"seeds {failed} failed; see their log.txt")


if __name__ == "__main__":
    run_main(main)
