"""The main job: float training -> QAT -> golden evaluation -> artifact (``brf-hw qat``; ``--help``)."""

from brf_hw.cli_util import run_main
from brf_hw.train.qat_flow import qat_main

if __name__ == "__main__":
    run_main(qat_main)
