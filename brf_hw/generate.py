"""``python -m brf_hw.generate --neurons 36``: the documented command (= ``brf-hw generate``); the
generator itself is ``brf_hw.hw.generate``."""

from .cli_util import run_main
from .hw.generate import main

if __name__ == "__main__":
    run_main(main, "python -m brf_hw.generate")
