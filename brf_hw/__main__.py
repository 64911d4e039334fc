"""``python -m brf_hw COMMAND``: the same as ``brf-hw COMMAND``."""

from .commands import main

main()
