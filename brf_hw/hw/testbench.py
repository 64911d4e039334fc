"""cocotb 2.x testbench for the generated brf_rsnn Verilog inside its stream harness.

The runner (``hw.rtl_sim``) writes a case file: input values (spikes, or b-bit integers packed
little-end first into the input field) of a stream of sequences, their start flags, the golden
model's expected spikes / potentials / labels (and a mean readout's sum labels), payload field
offsets and handshake randomisation. The test writes the input beats for the harness
(``hw.harness``: the stream source and sink in the HDL, back to back or with random valid gaps and
ready stalls), waits for its ``done`` (Python wakes a handful of times per run, not per step), and
compares every step's outputs with the golden model, decoded all at once with numpy (S-MNIST runs
hundreds of thousands of steps per case). The first mismatch is reported with sequence, step,
field, neuron, expected and got; all outputs are saved for the runner. The clock is the
simulator-side one (``impl="gpi"``): cocotb's default Python clock would wake Python twice per
cycle.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, Timer, with_timeout

from brf_hw.hw.harness import BEATS_FILE, WORDS_FILE

PERIOD_NS = 10


def _per_65536(probability: float) -> int:
    """A probability as the harness's 16-bit threshold (a draw below it hits)."""
    return min(round(probability * 65536), 65535)


def _count_lines(path: str) -> int:
    with open(path) as f:
        return sum(1 for _ in f)


def _read_words(path: str, steps: int) -> list[int]:
    """The sink's output beats; an undefined bit (x or z, which Icarus writes as such) is an error
    naming the step rather than a parse failure."""
    with open(path) as f:
        lines = f.read().split()
    if len(lines) != steps:
        raise AssertionError(f"{len(lines)} output beats for {steps} input beats")
    try:
        return [int(line, 16) for line in lines]
    except ValueError:
        t = next(t for t, line in enumerate(lines) if any(c not in "0123456789abcdefABCDEF" for c in line))
        raise AssertionError(f"output beat {t} has undefined bits: {lines[t]}") from None


def _bits(words, width: int) -> np.ndarray:
    """Python-int payload words -> [T, width] their bits (little-end first), uint8."""
    n = (width + 7) // 8
    raw = np.frombuffer(b"".join(int(w).to_bytes(n, "little") for w in words), np.uint8).reshape(len(words), n)
    return np.unpackbits(raw, axis=1, bitorder="little")[:, :width]


def _unsigned(bits: np.ndarray) -> np.ndarray:
    """[..., w] bits -> [...] their unsigned value (w <= 62)."""
    return (bits.astype(np.int64) << np.arange(bits.shape[-1], dtype=np.int64)).sum(-1)


def _signed(bits: np.ndarray) -> np.ndarray:
    w = bits.shape[-1]
    value = _unsigned(bits)
    return value - (bits[..., -1].astype(np.int64) << w)


def beats(x: np.ndarray, first: np.ndarray, input_bits: int, first_offset: int) -> list[int]:
    """Input beats: the values of x [T, I] little-end first, ``input_bits`` each, then ``first``."""
    weights = [1 << (i * input_bits) for i in range(x.shape[1])]
    return [sum(int(v) * w for v, w in zip(row, weights)) | (int(f) << first_offset) for row, f in zip(x, first)]


async def settle_combinational(dut):
    """Yosys's Verilog makes every ``always @*`` block also depend on one dummy register, meant to
    run them once at time 0; Icarus does not count its initialiser as an event, so the blocks
    would stay X until an input changed. Toggling the dummy runs them."""
    for handle in dut:
        if "dump_module" in handle._name:
            handle.value = 1
            await Timer(1, unit="ns")
            handle.value = 0
    await Timer(1, unit="ns")


@cocotb.test()
async def stream_matches_golden(dut):
    case = np.load(os.environ["BRF_SIM_CASE"])
    meta = json.loads(str(case["meta"]))
    x, first = case["x"], case["first"]
    steps = len(x)
    n_out, out_bits = meta["outputs"], meta["output_bits"]
    fields = meta["payload"]
    stream = beats(x, first, meta["input_bits"], meta["input_payload"]["first"]["offset"])
    with open(BEATS_FILE, "w") as f:  # the harness plays them from the simulator's working folder
        f.writelines(f"{beat:x}\n" for beat in stream)

    if "icarus" in cocotb.SIM_NAME.lower():  # (Verilator settles them itself, and hides the inside)
        await settle_combinational(dut.acc)
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start())
    dut.count.value = steps
    dut.gap.value = _per_65536(meta["gap_prob"])
    dut.stall.value = _per_65536(meta["stall_prob"])
    dut.seed.value = meta["seed"] & 0xFFFFFFFF
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    # a design that stops taking or giving beats fails here instead of hanging: every step gets
    # its longest latency plus the longest gap and stall
    limit = (steps * (meta["max_cycles"] + 10) + 100) * PERIOD_NS
    try:
        await with_timeout(RisingEdge(dut.done), limit, "ns")
    except SimTimeoutError:
        raise AssertionError(f"the stream did not finish within {limit // PERIOD_NS} cycles "
                             f"({_count_lines(WORDS_FILE)} of {steps} output beats came out)") from None
    words = _read_words(WORDS_FILE, steps)
    handshakes = {"gap_cycles": int(dut.gap_cycles.value), "stall_cycles": int(dut.stall_cycles.value)}

    width = max(f["offset"] + f["width"] for f in fields.values())
    bits = _bits(words, width)

    def field(name):
        f = fields[name]
        return bits[:, f["offset"]:f["offset"] + f["width"]]

    spikes = field("spikes").astype(np.int8)
    potentials = _signed(field("potentials").reshape(steps, n_out, out_bits))
    labels = _unsigned(field("label"))
    cycles = _unsigned(field("cycles"))
    result = {"spikes_per_step": spikes.sum(1), "potentials": potentials, "labels": labels, "cycles": cycles,
              **handshakes}
    checks = [("hidden spike", spikes, case["spikes"]), ("output potential", potentials, case["outputs"]),
              ("label", labels[:, None], case["labels"][:, None])]
    if "sum_label" in fields:
        result["sum_labels"] = _unsigned(field("sum_label"))
        checks.append(("sum label", result["sum_labels"][:, None], case["sum_labels"][:, None]))
    np.savez(os.environ["BRF_SIM_RESULT"], **result)

    seq = np.cumsum(first) - 1
    step = np.arange(steps) - np.flatnonzero(first)[seq]
    for name, got, expected in checks:
        bad = np.argwhere(got != expected)
        if len(bad):
            t, k = bad[0]
            raise AssertionError(
                f"{len(bad)} mismatch(es) in {name}s; first: sequence {seq[t]}, step {step[t]}, "
                f"{'neuron' if 'label' not in name else 'class'} {k}: expected {expected[t, k]}, got {got[t, k]}")
    dut._log.info(f"{steps} steps, {int(spikes.sum())} hidden spikes, all equal to the golden model")
