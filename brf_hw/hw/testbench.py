"""cocotb 2.x testbench for the generated brf_rsnn Verilog.

The runner (sim/run.py) writes a case file: input values (spikes, or b-bit integers packed
little-end first into the input field) of a stream of sequences, their start flags, the golden
model's expected spikes / potentials / labels (and a mean readout's sum labels), payload field
offsets and handshake randomisation. Output words are decoded all at once with numpy (S-MNIST
runs hundreds of thousands of steps per case). The test streams the inputs with random valid gaps and ready stalls,
awaiting only handshake events (never every clock edge from Python), and compares every step's
outputs with the golden model once the stream is through. The first mismatch is reported with
sequence, step, neuron, expected and got; all outputs are saved for the runner. The clock is the
simulator-side one (``impl="gpi"``): cocotb's default Python clock would wake Python twice per
cycle, which made Icarus 2.5x slower.
"""

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, Timer


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


async def _until_high(dut, signal):
    """Called at a falling clock edge; returns at the first falling edge (where every simulator
    has settled) that sees ``signal`` high. While it is low this sleeps on the signal's rising
    edge, never on every clock: a step takes tens of cycles, and waking Python each cycle made
    the full ECG set 4x slower. (Values read in a rising-clock callback are not settled under
    Verilator, so every decision is taken at a falling edge.)"""
    while not signal.value:
        await RisingEdge(signal)
        await FallingEdge(dut.clk)


async def _stream_back_to_back(dut, beats, words):
    """No gaps, no stalls: the next beat waits on the bus and every output beat is taken at once,
    as a stream source and sink would (the design takes beat t+1 while it computes LI and the
    output of beat t). valid and ready seen high at a falling edge complete at the next rising
    edge, so the falling edge after that starts the next beat: three wake-ups a beat per side."""

    async def produce():
        await FallingEdge(dut.clk)
        for beat in beats:
            dut.inp__payload.value = beat
            dut.inp__valid.value = 1
            await _until_high(dut, dut.inp__ready)
            await FallingEdge(dut.clk)  # the handshake was the rising edge in between
        dut.inp__valid.value = 0

    producer = cocotb.start_soon(produce())
    dut.out__ready.value = 1
    await FallingEdge(dut.clk)
    for t in range(len(beats)):
        await _until_high(dut, dut.out__valid)
        words[t] = int(dut.out__payload.value)
        await FallingEdge(dut.clk)
    await producer


async def _stream_with_backpressure(dut, beats, words, rng, gap, stall):
    """Random gaps before each input beat, random stalls before taking each output beat."""
    for t in range(len(beats)):
        if gap and rng.random() < gap:
            await ClockCycles(dut.clk, rng.randint(1, 4))
        dut.inp__payload.value = beats[t]
        dut.inp__valid.value = 1
        await FallingEdge(dut.clk)
        while not dut.inp__ready.value:  # the design takes one step at a time: wait for IDLE
            await FallingEdge(dut.clk)
        await RisingEdge(dut.clk)  # the input handshake
        dut.inp__valid.value = 0
        if not dut.out__valid.value:
            await RisingEdge(dut.out__valid)
        if stall and rng.random() < stall:
            await ClockCycles(dut.clk, rng.randint(1, 4))  # back-pressure: the beat must wait
        await FallingEdge(dut.clk)
        words[t] = int(dut.out__payload.value)
        dut.out__ready.value = 1
        await RisingEdge(dut.clk)  # the output handshake
        dut.out__ready.value = 0



@cocotb.test()
async def stream_matches_golden(dut):
    case = np.load(os.environ["BRF_SIM_CASE"])
    meta = json.loads(str(case["meta"]))
    x, first = case["x"], case["first"]
    steps = len(x)
    n_out, out_bits = meta["outputs"], meta["output_bits"]
    fields = meta["payload"]
    rng = random.Random(meta["seed"])
    gap, stall = meta["gap_prob"], meta["stall_prob"]

    await settle_combinational(dut)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns", impl="gpi").start())
    dut.rst.value = 1
    dut.inp__valid.value = 0
    dut.out__ready.value = 0
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0

    words = np.zeros(steps, dtype=object)
    inp = meta["input_payload"]
    stream = beats(x, first, meta["input_bits"], inp["first"]["offset"])
    if gap or stall:
        await _stream_with_backpressure(dut, stream, words, rng, gap, stall)
    else:
        await _stream_back_to_back(dut, stream, words)

    width = max(f["offset"] + f["width"] for f in fields.values())
    bits = _bits(words, width)

    def field(name):
        f = fields[name]
        return bits[:, f["offset"]:f["offset"] + f["width"]]

    spikes = field("spikes").astype(np.int8)
    potentials = _signed(field("potentials").reshape(steps, n_out, out_bits))
    labels = _unsigned(field("label"))
    cycles = _unsigned(field("cycles"))
    result = {"spikes_per_step": spikes.sum(1), "potentials": potentials, "labels": labels, "cycles": cycles}
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
