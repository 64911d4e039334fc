"""Run the accelerator in Amaranth's simulator: stream input beats in, collect output beats.

Random gaps on the input's valid and stalls on the output's ready exercise the handshakes; they
may change timing, never values. Used by the tests and for cycle counts.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from amaranth.sim import Simulator

from .. import golden
from ..fixed.spec import IntNetwork
from .core import BRFAccelerator, bank_spikes, chunk_spikes, cycle_model
from .layout import event_inputs, geometry, input_events, pack


class HardwareRun(NamedTuple):
    """The accelerator's output beats of one stream, a row per step."""

    spikes: np.ndarray  # [T, H]
    outputs: np.ndarray  # [T, O]
    labels: np.ndarray  # [T]
    cycles: np.ndarray  # [T] cycles the accelerator spent on each step
    sum_labels: np.ndarray | None = None  # [T] argmax of the running sums (mean readout), else None
    accepted_at: np.ndarray | None = None  # [T] the clock cycle each input beat was taken in


def simulate(net: IntNetwork, x: np.ndarray, first: np.ndarray | None = None, lanes: int = 1, segments: int | None = None,
             gap_prob: float = 0.0, stall_prob: float = 0.0, seed: int = 0, vcd: str | None = None,
             events: int = 1) -> HardwareRun:
    """x [T, inputs] input values of one stream (spikes, or ``input.bits``-bit integers; sequences
    back to back, ``first`` marks their starts, default: step 0 only). Values outside the input
    format are refused (FormatError naming the value) before anything runs."""
    golden.check_inputs(net, x[:, None, :])
    steps = x.shape[0]
    if first is None:
        first = np.zeros(steps, bool)
        first[0] = True
    dut = BRFAccelerator(net, lanes=lanes, segments=segments, events=events)
    rng_in, rng_out = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    n_hid, n_out = net.shape[1], net.shape[2]
    bits, field = net.spec.input.bits, dut.input_field
    got = []

    async def producer(ctx):
        for t in range(steps):
            while gap_prob and rng_in.random() < gap_prob:
                await ctx.tick()
            ctx.set(dut.inp.payload, {field: pack(x[t], bits), "first": int(first[t])})
            ctx.set(dut.inp.valid, 1)
            await ctx.tick().until(dut.inp.ready)
            ctx.set(dut.inp.valid, 0)

    async def consumer(ctx):
        for _ in range(steps):
            while stall_prob and rng_out.random() < stall_prob:
                ctx.set(dut.out.ready, 0)
                await ctx.tick()
            ctx.set(dut.out.ready, 1)
            payload, = await ctx.tick().sample(dut.out.payload).until(dut.out.valid)
            ctx.set(dut.out.ready, 0)
            got.append(([int(payload.potentials[k]) for k in range(n_out)], int(payload.label),
                         int(payload.spikes), int(payload.cycles), int(payload.sum_label) if dut.mean else 0))

    accepted = []

    async def monitor(ctx):
        cycle = 0
        while len(accepted) < steps:
            *_, valid, ready = await ctx.tick().sample(dut.inp.valid, dut.inp.ready)  # after clk, rst
            if valid and ready:
                accepted.append(cycle)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(monitor, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    spikes = np.array([[(g[2] >> h) & 1 for h in range(n_hid)] for g in got], dtype=np.int64)
    return HardwareRun(spikes, np.array([g[0] for g in got], np.int64), np.array([g[1] for g in got]),
                       np.array([g[3] for g in got]), np.array([g[4] for g in got]) if dut.mean else None,
                       np.array(accepted))


def expected_cycles(net: IntNetwork, x: np.ndarray, spikes: np.ndarray, lanes: int,
                    segments: int | None = None, model=cycle_model, events: int = 1) -> np.ndarray:
    """The cycle model per step (x [..., I], spikes [..., H] the golden model's): the step's
    input events (its input spikes; none for multi-bit inputs) and its own hidden spikes per chunk
    (READOUT takes them as they leave the pipeline). ``model=period_model``: the cycles a step
    occupies in a stream (throughput). K = ``events`` > 1: the same per bank (``core.bank_spikes``)."""
    chunks, segments = geometry(net.shape[1], lanes, segments)
    mean = net.readout.rule == "mean"
    if events > 1:
        sources = np.asarray(x, np.int64)[..., :event_inputs(net)]  # the input spikes; none where the lanes multiply
        per_bank, per_chunk = bank_spikes(sources, spikes, lanes, chunks, events)
        return model(per_bank, per_chunk, net.shape[2], segments, mean, events).astype(np.int64)
    per_chunk = chunk_spikes(spikes, lanes, chunks)
    return model(input_events(x, net.spec.input.bits), per_chunk, net.shape[2], segments, mean).astype(np.int64)
