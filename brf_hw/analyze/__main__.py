"""python -m brf_hw.analyze SUBCOMMAND [options]; see ``--help`` of each subcommand."""

from __future__ import annotations

import argparse
import importlib

from ..cli_util import POSITIVE_INT, run_main
from ..neurons.modules import RESONATOR_KINDS

# subcommand -> (module, one-line help); modules are imported only when their command runs
COMMANDS = {
    "response": ("response", "frequency response of single BRF neurons, float and integer"),
    "boundary": ("boundary", "divergence boundary b(omega) for several dt, a network's neurons on it"),
    "params": ("params", "omega / b_offset scatter, initial vs trained"),
    "raster": ("raster", "spike raster and membrane traces on one ECG sequence, float and integer"),
    "prune": ("prune", "pruning ablation on ECG: BRF vs ALIF, accuracy, SOPs, accelerator cycles"),
    "compare": ("compare", "neuron kinds side by side: accuracy, SOPs, parameters, accelerator cost"),
    "nir": ("nir_cmd", "export a checkpoint to a NIR graph (and check the round trip)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m brf_hw.analyze", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(f".{module}", __package__)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).strip(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.add_argument("--threads", type=POSITIVE_INT, default=1, help="kernel threads (default 1: a shared machine)")
        p.add_argument("--paper-neuron", choices=RESONATOR_KINDS, default="brf",
                       help="the cell that trained a checkpoint of the paper's code (brf-neurons), which the file "
                            "does not record (default brf)")
        p.set_defaults(run=mod.run)
    return parser


def main(argv=None) -> None:
    """Parse, set the thread policy, run; user errors (``cli_util.UserError``, OSError) become
    one line on stderr and exit code 2 (``cli_util.run_main``)."""
    args = build_parser().parse_args(argv)
    from ..threads import set_threads

    set_threads(args.threads)
    run_main(lambda: args.run(args), prog=f"python -m brf_hw.analyze {args.command}")


if __name__ == "__main__":
    main()
