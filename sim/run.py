"""``make sim-full`` / ``make sim-long``: a task's test set, or one long stream, through the RTL
against the golden model (= ``brf-hw sim``; ``--help`` for the flags; the library is
``brf_hw.hw.rtl_sim``)."""

from brf_hw.cli_util import run_main
from brf_hw.hw.rtl_sim import main

if __name__ == "__main__":
    run_main(main, "sim/run.py")
