"""Train a float network (``brf-hw train``; ``--help`` for the flags)."""

from brf_hw.cli_util import run_main
from brf_hw.train.cli import train_main

if __name__ == "__main__":
    run_main(train_main)
