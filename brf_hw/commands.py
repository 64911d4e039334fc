"""``brf-hw COMMAND [options]`` (also ``python -m brf_hw``): every tool of the pipeline from one entry
point. Each command is the same command-line interface as its module's; ``brf-hw COMMAND --help``."""

from __future__ import annotations

import importlib
import sys

from .cli_util import EXIT_USER_ERROR, run_main

# command -> (module, function taking argv, one line); a module is imported only when its command runs
COMMANDS = {
    "train": ("brf_hw.train.cli", "train_main", "train a float network on a task"),
    "qat": ("brf_hw.train.qat_flow", "qat_main", "float -> quantization-aware training -> golden check -> artifact"),
    "golden": ("brf_hw.evaluate", "main", "evaluate an integer artifact on its task with the golden model"),
    "generate": ("brf_hw.hw.generate", "main", "Verilog of the accelerator for an artifact"),
    "synth": ("brf_hw.hw.synth", "main", "area and timing with Yosys and nextpnr"),
    "sim": ("brf_hw.hw.rtl_sim", "main", "a task's test set through the RTL under Verilator or Icarus"),
    "build": ("brf_hw.board.build", "main", "a board's bitstream"),
    "host": ("brf_hw.board.host", "main", "stream a task's test set through a board over its UART"),
    "analyze": ("brf_hw.analyze.__main__", "main", "the paper's analyses (response, boundary, params, raster, prune, compare, nir)"),
    "fuzz": ("brf_hw.hw.fuzz", "main", "random integer networks, golden model against the accelerator"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, _, text) in COMMANDS.items()]
    return "usage: brf-hw COMMAND [options]   (brf-hw COMMAND --help)\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else EXIT_USER_ERROR)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"brf-hw: error: unknown command {name!r}\n{usage()}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    module, function, _ = COMMANDS[name]
    prog = f"brf-hw {name}"
    sys.argv[0] = prog  # argparse names the command in usage and errors
    command = getattr(importlib.import_module(module), function)

    def call() -> None:
        code = command(rest)
        if isinstance(code, int) and code:  # host returns its exit status
            sys.exit(code)

    run_main(call, prog)
