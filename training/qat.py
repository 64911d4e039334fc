"""The main job: train a BRF network on a paper task and report its test accuracy.

    python training/qat.py --task ecg

Fixed-point quantization-aware fine-tuning, integer evaluation and export will extend this
flow; until they exist it trains the float network with the paper's settings.
"""

import argparse

from brf_hw.train.cli import add_train_arguments, train_float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    train_float(parser.parse_args())


if __name__ == "__main__":
    main()
