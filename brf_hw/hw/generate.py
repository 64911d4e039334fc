"""Generate the BRF-RSNN accelerator's Verilog from an integer artifact.

    python -m brf_hw.generate --neurons 36 [--inputs 4 --outputs 6 --artifact PATH --lanes P --events K --out rtl/]

Writes OUT/brf_rsnn.v (memories initialised inside), OUT/brf_rsnn_mem_*.hex (the same memory
images, for inspection or other flows) and OUT/brf_rsnn.json (ports, widths, formats, latency and
cycles per step). Without --artifact the ECG network shipped with brf-hw is used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from ..artifact import load_artifact, shipped_artifact
from ..cli_util import POSITIVE_INT, UserError, run_main
from .core import BRFAccelerator, bank_spikes, check_neuron, chunk_spikes, cycle_model, period_model
from .layout import check_events, event_inputs, geometry

TOP = "brf_rsnn"


def shape_network(inputs: int, hidden: int, outputs: int, input_bits: int = 1, rule: str = "per_step",
                  steps: int = 784, gain: float = 100.0, seed: int = 0):
    """An untrained IntNetwork of a shape (8-bit weights, the default formats; inputs of
    ``input_bits`` bits worth 1/(2^bits - 1) each, so a full-scale input is 1.0; the ``rule``
    readout sized for ``steps`` steps), its input weights scaled by ``gain`` so it spikes: for
    tests, synthesis and simulation of a shape before a trained artifact exists."""
    import torch

    from ..fixed import spec_for_model
    from ..fixed.qat import to_int_network
    from ..fixed.spec import InputFormat, Readout
    from ..model import ModelConfig, build_model

    model = build_model(ModelConfig(inputs, hidden, outputs), seed=seed)
    with torch.no_grad():
        model.synapses.weight.mul_(gain)
    unit = 1.0 / ((1 << input_bits) - 1) if input_bits > 1 else 1.0
    spec = spec_for_model(model, 8, inputs=InputFormat(input_bits, unit))
    return to_int_network(model, spec, Readout.for_steps(rule, spec.output.bits, steps))


def check_design(net, lanes: int, segments: int | None, events: int, name: str = "") -> None:
    """A UserError naming the bad value where lanes, segments or events do not fit ``net``
    (checked before the design exists, so a bad value leaves nothing half-built behind)."""
    try:
        check_neuron(net)
        geometry(net.shape[1], lanes, segments)
        check_events(event_inputs(net) + net.shape[1], events)
    except ValueError as exc:
        raise UserError(f"{name}: {exc}" if name else str(exc)) from None


def _fields(layout) -> dict:
    """Payload fields as {name: {"offset": bit, "width": bits}} (Verilog: inp__payload, out__payload)."""
    return {name: {"offset": field.offset, "width": field.width} for name, field in layout}


def describe(dut: BRFAccelerator, artifact: Path, manifest: dict) -> dict:
    net, spec = dut.net, dut.net.spec
    n_in, n_hid, n_out = net.shape
    K, n_events = dut.events, dut.sources - n_hid
    silent = np.zeros(dut.chunks, np.int64)
    busiest = chunk_spikes(np.ones(n_hid, np.int64), dut.lanes, dut.chunks)  # every hidden neuron spikes
    quiet, active = 0, n_events
    if K > 1:  # the same steps per bank
        quiet, silent = bank_spikes(np.zeros(n_events), np.zeros(n_hid), dut.lanes, dut.chunks, K)
        active, busiest = bank_spikes(np.ones(n_events), np.ones(n_hid), dut.lanes, dut.chunks, K)
    cycles = {model: [int(model(a, z, n_out, dut.segments, dut.mean, K)) for a, z in ((quiet, silent), (active, busiest))]
              for model in (period_model, cycle_model)}
    return {
        "top": TOP,
        "artifact": {"file": artifact.name, "sha256": manifest["sha256"], "task": manifest.get("task"),
                     "metrics": manifest.get("metrics", {})},
        "shape": {"inputs": n_in, "hidden": n_hid, "outputs": n_out},
        "lanes": dut.lanes,
        "chunks": dut.chunks,
        "segments": dut.segments,
        # only where K > 1: the committed rtl/ (K = 1) describes itself as it always has
        **({"events": K} if K > 1 else {}),
        "formats": spec.to_dict(),
        "readout": net.readout.to_dict(),
        "sources": {"inputs": dut.sources - n_hid, "hidden": n_hid,
                    "order": "the input spikes (1-bit inputs), then the hidden neurons; multi-bit inputs are "
                             "no sources: each lane multiplies them by its neuron's input weights in UPDATE"},
        "ports": {
            "clk": "input, rising edge", "rst": "input, synchronous, active high",
            "inp": {"valid": "input", "ready": "output", "payload": _fields(dut.input_layout)},
            "out": {"valid": "output", "ready": "input", "payload": _fields(dut.output_layout)},
        },
        "cycles_per_step": {
            "formula": "in a stream (core.period_model): max(1 + ACC + chunks + 1 + READOUT, outputs + 7 [+1 mean]), "
                       "ACC = input spikes * segments + 3 (0 if none or multi-bit inputs), READOUT (core.readout_cycles) "
                       "takes the spikes as they leave the pipeline: at least 6 cycles, hidden spikes * segments + 3 "
                       "where they come early; LI of a step runs beside the next step",
            "silent_step": cycles[period_model][0],
            "every_source_active": cycles[period_model][1],
        },
        "latency_cycles": {
            "formula": "input accepted -> output valid (core.cycle_model, the payload's cycles field): "
                       "1 + ACC + chunks + 1 + READOUT + outputs + 5 [+1 mean]",
            "silent_step": cycles[cycle_model][0],
            "every_source_active": cycles[cycle_model][1],
        },
    }


def generate(artifact: Path, lanes: int, out: Path, expect: dict[str, int | None],
             segments: int | None = None, events: int = 1) -> dict:
    net, manifest = load_artifact(artifact)
    actual = dict(zip(("inputs", "neurons", "outputs"), net.shape))
    for key, wanted in expect.items():
        if wanted is not None and wanted != actual[key]:
            raise UserError(f"--{key} {wanted} does not match the artifact {artifact.name}, which has "
                             f"{actual[key]} {key} (shape {net.shape[0]}-{net.shape[1]}-{net.shape[2]})")
    check_design(net, lanes, segments, events, artifact.name)
    dut = BRFAccelerator(net, lanes=lanes, segments=segments, events=events)
    text = verilog.convert(dut, name=TOP, emit_src=False)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{TOP}.v").write_text(text)
    images = dut.images
    for name, width, words in images.memories():
        digits = (width + 3) // 4
        (out / f"{TOP}_mem_{name}.hex").write_text("".join(f"{w:0{digits}x}\n" for w in words))
    info = describe(dut, artifact, manifest)
    (out / f"{TOP}.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--neurons", type=POSITIVE_INT, help="hidden neurons (must match the artifact)")
    parser.add_argument("--inputs", type=POSITIVE_INT, help="input channels (must match the artifact)")
    parser.add_argument("--outputs", type=POSITIVE_INT, help="output neurons (must match the artifact)")
    parser.add_argument("--artifact", type=Path, help="integer network (default: the shipped ECG network)")
    parser.add_argument("--lanes", type=POSITIVE_INT, default=1, help="neurons updated in parallel (1..neurons)")
    parser.add_argument("--segments", type=POSITIVE_INT,
                        help="accumulator segments G: ceil(neurons/G) shared adders, G cycles per active source "
                             "(default 2; 1 adds a whole weight row per cycle)")
    parser.add_argument("--events", type=POSITIVE_INT, default=1,
                        help="source events K accumulated per cycle, over K synapse-memory banks (default 1; "
                             "1..sources: input events + neurons)")
    parser.add_argument("--out", type=Path, default=Path("rtl"), help="output folder (default rtl/)")
    args = parser.parse_args(argv)
    artifact = args.artifact or shipped_artifact()
    info = generate(artifact, args.lanes, args.out,
                    {"neurons": args.neurons, "inputs": args.inputs, "outputs": args.outputs}, args.segments, args.events)
    s = info["shape"]
    print(f"wrote {args.out}/{TOP}.v for {s['inputs']}-{s['hidden']}-{s['outputs']}, lanes {info['lanes']}, "
          f"segments {info['segments']}, "
          f"{info['cycles_per_step']['silent_step']} cycles for a silent step")


if __name__ == "__main__":
    run_main(main, "python -m brf_hw.hw.generate")
