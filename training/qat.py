"""The main job: train a BRF network, make it fixed-point, export the integer artifact.

    python training/qat.py --task ecg                       # float (paper settings) -> QAT -> export
    python training/qat.py --init runs/ecg-brf-seed0/float/best.pt --weight-bits 4

Float training (or --init), quantization-aware fine-tuning with straight-through estimators,
integer evaluation by the golden model (the accuracy printed is the hardware's), export of one
versioned .npz artifact.
"""

import argparse

from brf_hw.cli_util import run_main
from brf_hw.train.cli import add_train_arguments
from brf_hw.train.qat_flow import add_qat_arguments, run_qat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_arguments(parser)
    add_qat_arguments(parser)
    run_qat(parser.parse_args())


if __name__ == "__main__":
    run_main(main)
