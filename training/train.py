"""Train a float BRF / RF / BHRF / ALIF network on one of the paper's tasks.

    python training/train.py --task ecg --neuron brf --epochs 400
"""

import argparse

from brf_hw.cli_util import run_main
from brf_hw.train.cli import add_train_arguments, train_float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    train_float(parser.parse_args())


if __name__ == "__main__":
    run_main(main)
