"""The accelerator in Amaranth's simulator against the golden model, bit for bit, every step;
the generator CLI; the committed rtl/ copy."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from amaranth.hdl import ClockDomain, Fragment, Module
from amaranth.sim import Simulator

from brf_hw import golden
from brf_hw.artifact import load_artifact
from brf_hw.cli_util import UserError
from brf_hw.fixed import FixedSpec, Format
from brf_hw.fixed.formats import FormatError
from brf_hw.fixed.spec import Readout
from brf_hw.fixed.qat import to_int_network
from brf_hw.artifact import shipped_artifact
from brf_hw.hw.core import cycle_model
from brf_hw.hw.generate import generate, main as generate_main, shape_network
from brf_hw.hw.core import chunk_spikes, period_model, readout_cycles
from brf_hw.hw.core import BRFAccelerator
from brf_hw.hw.layout import (acc_offset, accumulator_bits, event_inputs, memory_images, pack, row_bits, signed_bits,
                             source_rows)
from brf_hw.hw.simulate import expected_cycles, simulate
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ecg_net():
    return load_artifact(shipped_artifact())[0]


def check(net, x, first=None, **kw):
    """Hardware == golden on a stream (sequences back to back, restarted where ``first``): every
    step's spikes, potentials, label, a mean readout's sum_label, and cycles == the cycle model."""
    hw = simulate(net, x, first, **kw)
    gold = golden.run_stream(net, x, first)
    first = np.eye(1, len(x), dtype=bool)[0] if first is None else first
    pairs = [("spikes", hw.spikes, gold.spikes), ("potentials", hw.outputs, gold.outputs),
             ("labels", hw.labels, gold.predictions),
             ("cycles", hw.cycles, expected_cycles(net, x, gold.spikes, kw.get("lanes", 1), kw.get("segments"),
                                                   events=kw.get("events", 1)))]
    if net.readout.rule == "mean":
        pairs.append(("sum labels", hw.sum_labels, gold.sums.argmax(-1)))
    else:
        assert hw.sum_labels is None
    for name, got, expected in pairs:
        bad = np.flatnonzero((got != expected).reshape(len(x), -1).any(1))
        assert not len(bad), f"{name} differ from step {bad[0] if len(bad) else None}"
    return hw


def test_shipped_artifact_is_the_ecg_network(ecg_net):
    net, manifest = load_artifact(shipped_artifact())
    assert net.shape == (4, 36, 6) and net.spec.weight.bits == 8
    assert manifest["task"] == "ecg" and manifest["metrics"]["test_acc"] > 85


def test_shipped_4_bit_network_runs_on_the_accelerator(ecg_splits):
    net, manifest = load_artifact(shipped_artifact("ecg", 4))
    assert net.shape == (4, 36, 6) and {net.spec.weight.bits, net.spec.rec_weight.bits, net.spec.out_weight.bits} == {4}
    assert manifest["metrics"]["test_acc"] > 85
    x = ecg_splits["test"].inputs[6, :150].numpy().astype(np.int64)
    assert check(net, x, lanes=3, gap_prob=0.2, stall_prob=0.2, seed=4).spikes.sum() > 50


@pytest.mark.parametrize("lanes, segments", [(1, 1), (5, 1), (36, 1), (1, 2), (5, 3), (2, 18)])
def test_real_ecg_sequences_with_backpressure(ecg_net, ecg_splits, lanes, segments):
    test = ecg_splits["test"].inputs.numpy().astype(np.int64)
    steps = 150 if lanes == 1 else 300
    x = np.concatenate([test[0, :steps], test[1, :steps]])  # two sequences back to back
    first = np.zeros(len(x), bool)
    first[[0, steps]] = True
    hw = check(ecg_net, x, first, lanes=lanes, segments=segments, gap_prob=0.3, stall_prob=0.3, seed=lanes)
    assert hw.spikes.sum() > 50


def test_reset_in_the_middle_of_a_sequence(ecg_net, ecg_splits):
    x = ecg_splits["test"].inputs[2, :240].numpy().astype(np.int64)
    first = np.zeros(len(x), bool)
    first[[0, 97]] = True  # the state is cleared at step 97 as if a new sequence began
    check(ecg_net, x, first, lanes=4)


def test_reset_pulse_in_the_middle_of_a_step_restarts_cleanly(ecg_net, ecg_splits):
    """rst asserted while a step is being computed: that step is dropped, and the stream goes on
    as a new sequence from a zero state, though the state memory still holds the old values."""
    x = ecg_splits["test"].inputs[7, :120].numpy().astype(np.int64)
    cut = 70  # beat `cut` is taken, then rst hits during its UPDATE sweep
    dut = BRFAccelerator(ecg_net, lanes=2)
    top = Module()
    top.domains.sync = domain = ClockDomain()
    top.submodules.dut = dut
    got = []

    async def testbench(ctx):
        for t in range(len(x)):
            ctx.set(dut.inp.payload, {"spikes": pack(x[t], 1), "first": int(t == 0)})
            ctx.set(dut.inp.valid, 1)
            await ctx.tick().until(dut.inp.ready)
            ctx.set(dut.inp.valid, 0)
            if t == cut:
                await ctx.tick().repeat(12)  # accepted, accumulated, a few chunks into UPDATE
                ctx.set(domain.rst, 1)
                await ctx.tick()
                ctx.set(domain.rst, 0)
                continue
            ctx.set(dut.out.ready, 1)
            payload, = await ctx.tick().sample(dut.out.payload).until(dut.out.valid)
            ctx.set(dut.out.ready, 0)
            got.append([int(payload.potentials[k]) for k in range(6)] + [int(payload.spikes)])

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    before = golden.run_stream(ecg_net, x[:cut])
    after = golden.run_stream(ecg_net, x[cut + 1:])  # a fresh sequence from the step after the cut
    expected = [list(o) + [pack(z, 1)]
                for part in (before, after) for o, z in zip(part.outputs, part.spikes)]
    assert got == expected
    assert after.spikes.sum() > 20


def test_readout_takes_spikes_as_they_leave_the_pipeline():
    """Hand-computed READOUT lengths, 10 chunks, 2 segments: chunk k's spikes can be taken from
    READOUT cycle max(1, k - 3); a take every 2 cycles; the rows are in 4 cycles after the last
    take; never before the pipeline drained (6)."""
    def spikes(**per_chunk):
        s = np.zeros(10, np.int64)
        for k, n in per_chunk.items():
            s[int(k[1:])] = n
        return s
    cases = [(spikes(), 6), (spikes(c0=1), 6), (spikes(c0=3), 9),  # early: 3 * 2 + 3
             (spikes(c9=1), 10), (spikes(c0=4, c9=1), 13),  # the late one waits in the queue: 5 * 2 + 3
             (spikes(c5=2, c9=1), 10)]  # c5 from cycle 2: takes at 2, 4, and c9 at 6 -> 6 + 4
    assert [int(readout_cycles(s, 2)) for s, _ in cases] == [r for _, r in cases]
    assert readout_cycles(np.stack([s for s, _ in cases]), 2).tolist() == [r for _, r in cases]  # vectorized
    assert chunk_spikes(np.array([1, 0, 1, 1, 1]), 2, 3).tolist() == [1, 2, 1]  # padded to 3 chunks of 2


def test_cycles_grow_with_spikes_not_synapses(ecg_net, ecg_splits):
    x = ecg_splits["test"].inputs[3, :200].numpy().astype(np.int64)
    for lanes, segments in ((1, 1), (6, 1), (1, 3), (36, 1)):
        hw = simulate(ecg_net, x, lanes=lanes, segments=segments)
        chunks = -(-36 // lanes)
        work = [(int(x[t].sum()), chunk_spikes(hw.spikes[t], lanes, chunks)) for t in range(len(x))]
        assert hw.cycles.tolist() == [cycle_model(a, z, 6, segments) for a, z in work]
        assert hw.cycles.min() == cycle_model(0, np.zeros(chunks), 6)  # silent steps cost only the sweeps
        assert len(set(hw.cycles.tolist())) > 3  # and each active source one cycle more
        # streamed, LI hides behind the next step (lanes 36: 1 chunk, where LI is the longer)
        periods = np.diff(hw.accepted_at)
        assert periods[1:].tolist() == [period_model(a, z, 6, segments) for a, z in work[1:-1]]
        assert periods[0] <= period_model(*work[0], 6, segments)
        assert (periods < hw.cycles[:-1] + 1).all()


@pytest.mark.parametrize("seed", range(4))
def test_random_networks_with_saturation(seed):
    rng = np.random.default_rng(seed)
    n_in, n_hid, n_out = int(rng.integers(1, 6)), int(rng.integers(1, 14)), int(rng.integers(1, 5))
    cfg = ModelConfig(n_in, n_hid, n_out, neuron=NeuronConfig(omega_init=(3.0, 90.0)))
    model = build_model(cfg, seed=seed)
    with torch.no_grad():
        model.synapses.weight.mul_(float(rng.choice([50.0, 400.0, 3000.0])))
        model.readout.weight.mul_(float(rng.choice([5.0, 500.0])))
    wb = int(rng.integers(3, 10))
    rb = int(rng.integers(3, 10))
    spec = FixedSpec(weight=Format(wb, wb - 3), rec_weight=Format(rb, wb - 3 + int(rng.integers(-2, 3))),
                     out_weight=Format(wb, wb - 5),
                     coef=Format(int(rng.integers(10, 18)), int(rng.integers(8, 10))),
                     state=Format(int(rng.integers(8, 17)), 5), output=Format(int(rng.integers(6, 14)), 2))
    net = to_int_network(model, spec)
    x = (rng.random((60, n_in)) < 0.4).astype(np.int64)
    lanes = int(rng.integers(1, n_hid + 1))
    segments = int(rng.integers(1, -(-n_hid // lanes) + 1))  # 1 .. every chunk its own segment
    check(net, x, lanes=lanes, segments=segments, gap_prob=0.2, stall_prob=0.2, seed=seed)


def test_generator_writes_verilog_and_checks_shapes(tmp_path, capsys):
    generate_main(["--neurons", "36", "--lanes", "2", "--out", str(tmp_path)])
    verilog = (tmp_path / "brf_rsnn.v").read_text()
    assert "module brf_rsnn" in verilog and "out__payload" in verilog
    assert str(REPO) not in verilog and "/home/" not in verilog  # no machine paths
    info = json.loads((tmp_path / "brf_rsnn.json").read_text())
    assert info["lanes"] == 2 and info["chunks"] == 18 and info["shape"]["hidden"] == 36 and info["segments"] == 2
    assert info["ports"]["out"]["payload"]["spikes"]["width"] == 36
    syn = (tmp_path / "brf_rsnn_mem_synapses.hex").read_text().split()
    bits = row_bits(load_artifact(shipped_artifact())[0].spec)  # aligned input / recurrent weights
    assert len(syn) == 2 * (4 + 36) and len(syn[0]) == -(-18 * bits // 4)  # a source's row in two halves
    generate_main(["--neurons", "36", "--segments", "1", "--out", str(tmp_path / "g1")])
    syn = (tmp_path / "g1" / "brf_rsnn_mem_synapses.hex").read_text().split()
    assert len(syn) == 4 + 36 and len(syn[0]) == -(-36 * bits // 4)  # one row of all weights per source
    generate_main(["--neurons", "36", "--segments", "4", "--out", str(tmp_path / "g4")])
    info = json.loads((tmp_path / "g4" / "brf_rsnn.json").read_text())
    syn = (tmp_path / "g4" / "brf_rsnn_mem_synapses.hex").read_text().split()
    assert info["segments"] == 4 and len(syn) == 4 * (4 + 36) and len(syn[0]) == -(-9 * bits // 4)
    generate_main(["--neurons", "36", "--segments", "3", "--out", str(tmp_path / "g3")])
    syn = (tmp_path / "g3" / "brf_rsnn_mem_synapses.hex").read_text().split()
    assert len(syn) == 4 * (4 + 36) and int(syn[3], 16) == 0  # stride 4: the 4th word of a source is unused
    with pytest.raises(UserError, match="segments must be 1..36"):
        generate_main(["--segments", "37", "--out", str(tmp_path / "bad")])
    with pytest.raises(UserError, match="--neurons 64 does not match"):
        generate_main(["--neurons", "64", "--out", str(tmp_path)])
    with pytest.raises(UserError, match="--inputs 3 does not match"):
        generate_main(["--inputs", "3", "--out", str(tmp_path)])


def test_committed_rtl_is_what_the_generator_emits(tmp_path):
    committed = REPO / "rtl"
    info = json.loads((committed / "brf_rsnn.json").read_text())
    generate(shipped_artifact(), info["lanes"], tmp_path, {}, info["segments"])
    for path in sorted(committed.glob("brf_rsnn*")):
        assert path.read_text() == (tmp_path / path.name).read_text(), f"rtl/{path.name} is stale: run make rtl"


@pytest.mark.parametrize("seed", [1020, 1023, 1032])
def test_fuzz_cases(seed):
    """A few of ``make fuzz``'s random networks (any formats the spec accepts, corners, resets,
    gaps, stalls): accelerator == golden model == cycle model. 1020: 26-bit weights; 1023: 43 neurons in 25 accumulator segments; 1032: 24 sequence starts."""
    from brf_hw.hw.fuzz import check_amaranth, random_case

    assert check_amaranth(random_case(seed)) is None


def test_formats_too_wide_for_64_bit_arithmetic_are_refused():
    from brf_hw.fixed.formats import FormatError
    from brf_hw.hw.fuzz import random_case

    spec = FixedSpec(weight=Format(8, 6), rec_weight=Format(8, 6), out_weight=Format(8, 6),
                     coef=Format(32, 30), state=Format(32, 20))
    assert spec.int64_widths(4, 36)["e*u - c*v"] == 65  # |e*u| + |c*v| < 2^63 needs 64 bits + sign
    with pytest.raises(FormatError, match=r"e\*u - c\*v needs 65 bits"):
        spec.check_int64(4, 36)
    for seed in range(50):  # the fuzzer draws only from formats the check accepts
        net = random_case(seed).net
        assert max(net.spec.int64_widths(net.shape[0], net.shape[1]).values()) <= 63


# --- multi-bit inputs (weighted in the lanes) and the mean readout ------------------------------------

@pytest.fixture(scope="module")
def smnist():
    """A 1-256-10 network with 8-bit pixel inputs and a mean readout (untrained, scaled to spike),
    and three real S-MNIST test images [784, 3, 1]."""
    from brf_hw.tasks import TaskData

    net = shape_network(1, 256, 10, input_bits=8, rule="mean", steps=784)
    x = TaskData("smnist").integer_sequences("test", limit=3)[0].astype(np.int64)
    return net, x


def test_smnist_images_multiplied_inputs_and_mean_readout(smnist):
    """A window of rows 6-9 of three real S-MNIST test images as three sequences back to back
    (every pixel value 0..255 through the lanes' multipliers; running sums cleared at each start)."""
    net, images = smnist
    window = images[180:280]
    x = np.concatenate([window[:, b] for b in range(3)])
    first = np.zeros(len(x), bool)
    first[::len(window)] = True
    assert len(np.unique(x)) > 20 and x.max() >= 250
    hw = check(net, x, first, lanes=8, segments=2, gap_prob=0.2, stall_prob=0.2, seed=1)
    assert hw.spikes.sum() > 100 and len(set(hw.sum_labels.tolist())) > 1


def test_a_whole_smnist_image(smnist):
    net, images = smnist
    hw = check(net, images[:, 1], lanes=32, segments=1)
    assert hw.spikes.sum() > 1000


def test_mean_readout_running_sums_saturate():
    """A 40-input spike network (SHD-like) with a 10-bit running sum (narrower than o): the sums
    hit their bounds and stay there, as arith.sum_step says; the last readout needs no hardware."""
    net = shape_network(40, 24, 5, rule="mean", steps=200, gain=100.0, seed=2)
    net = dataclasses.replace(net, readout=Readout("mean", 10))
    x = (np.random.default_rng(3).random((200, 40)) < 0.15).astype(np.int64)
    first = np.zeros(len(x), bool)
    first[[0, 120]] = True
    hw = check(net, x, first, lanes=3, segments=5, gap_prob=0.2, stall_prob=0.2, seed=2)
    sums = golden.run_stream(net, x, first).sums
    assert hw.spikes.sum() > 100 and np.isin(sums, net.readout.sum_bounds).any()
    last = dataclasses.replace(net, readout=Readout("last"))
    core = BRFAccelerator(last)
    assert "sum_label" not in dict(iter(core.output_layout))
    Fragment.get(core, None)  # elaborated: a component built only to read its layout warns otherwise
    check(last, x[:40], lanes=6)


@pytest.mark.parametrize("seed", range(3))
def test_random_networks_with_multi_bit_inputs(seed):
    rng = np.random.default_rng(100 + seed)
    bits = int(rng.integers(2, 9))
    n_in, n_hid, n_out = int(rng.integers(1, 5)), int(rng.integers(2, 14)), int(rng.integers(1, 5))
    rule = str(rng.choice(["per_step", "last", "mean"]))
    net = shape_network(n_in, n_hid, n_out, input_bits=bits, rule=rule, steps=60, gain=float(rng.choice([30, 300])),
                        seed=seed)
    x = np.where(rng.random((60, n_in)) < 0.5, rng.integers(0, 1 << bits, (60, n_in)), 0)
    lanes = int(rng.integers(1, n_hid + 1))
    segments = int(rng.integers(1, -(-n_hid // lanes) + 1))
    check(net, x, lanes=lanes, segments=segments, gap_prob=0.2, stall_prob=0.2, seed=seed)
    assert np.array_equal(source_rows(net), net.w_rec)  # the inputs are no sources: the lanes weight them
    img = memory_images(net, lanes, segments)
    w_bits = net.spec.weight.bits
    for h in range(n_hid):  # lane h % P of chunk h // P holds w_in[h, :] above its d and c
        word = img.constants[h // lanes] >> (2 * lanes * net.spec.coef.bits + (h % lanes) * n_in * w_bits)
        fields = [(word >> (i * w_bits)) & ((1 << w_bits) - 1) for i in range(n_in)]
        assert [f - (f >> (w_bits - 1) << w_bits) for f in fields] == net.w_in[h].tolist()


def test_accumulators_are_as_wide_as_the_weights_can_sum():
    """Hand-computed: rows with +/- sums of 300 and -129 need 10 bits (-512..511 holds both, 9
    would not hold 300); the offset (rounding constant of the event scheme) is part of the sum."""
    assert [signed_bits(*r) for r in [(0, 0), (-1, 0), (0, 1), (-129, 300), (-512, 511), (-513, 0)]] == [1, 1, 2, 10, 10, 11]
    net = shape_network(2, 3, 2, steps=10)
    w_in = np.array([[100, 50], [-3, -4], [0, 7]])
    w_rec = np.array([[100, -1, 50], [-60, -60, 5], [0, 0, 0]])
    net = dataclasses.replace(net, w_in=w_in, w_rec=w_rec)
    a_in, a_rec = net.aligned_weights()
    high = max(np.clip(a_in, 0, None).sum(1) + np.clip(a_rec, 0, None).sum(1))
    low = min(np.clip(a_in, None, 0).sum(1) + np.clip(a_rec, None, 0).sum(1))
    offset = acc_offset(net.spec)
    assert accumulator_bits(net) == max(signed_bits(low + offset, high + offset), row_bits(net.spec))
    assert (1 << (accumulator_bits(net) - 2)) <= max(high + offset, -(low + offset) - 1)  # one bit fewer would not do
    x = np.ones((10, 2), np.int64)  # every source active: the widest sums the accumulators see
    check(net, x, lanes=1, segments=1)


def test_input_values_outside_the_format_are_refused(smnist):
    net, images = smnist
    x = images[:5, 0].copy()
    x[3] = 256
    with pytest.raises(FormatError, match="input value 256 is outside the input format u8"):
        simulate(net, x)


# --- the source priority encoder: one chain up to 64 sources, a two-level tree beyond ---------------

@pytest.mark.parametrize("n", [40, 65, 264, 828])
def test_source_queue(n):
    """Every width's source queue (flat up to FLAT_ENCODER_MAX, the group tree beyond: 264 = 1-256-10
    at 8-bit inputs, 828 = 700-128-20) gives the lowest set bit (0 for none) for single bits at
    every position, group edges, random sparse and dense vectors; taking bits one after another
    yields every set bit in ascending order and leaves the mask empty."""
    from amaranth.back import rtlil
    from amaranth.hdl import Signal

    from brf_hw.hw.core import FLAT_ENCODER_MAX, _source_queue

    m = Module()
    mask, index, take = _source_queue(m, n, "index")
    go = Signal()
    with m.If(go):
        take()
    rng = np.random.default_rng(n)
    cases = [0, (1 << n) - 1] + [1 << i for i in range(n)] + [(1 << n) - (1 << i) for i in range(0, n, 7)]
    cases += [int("".join(rng.choice(["0", "1"], n, p=[1 - p, p])), 2) for p in (0.01, 0.05, 0.5) for _ in range(40)]
    walks = cases[n + 2:n + 6] + cases[-81:-75] + [cases[-1]]  # group edges, sparse, one dense
    got, taken = [], []

    async def bench(ctx):
        for v in cases:
            ctx.set(mask, v)
            got.append(ctx.get(index))
        for v in walks:
            ctx.set(mask, v)
            ctx.set(go, 1)
            order = []
            while ctx.get(mask):
                order.append(ctx.get(index))
                await ctx.tick()
            ctx.set(go, 0)
            taken.append(order)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(v & -v).bit_length() - 1 if v else 0 for v in cases]
    assert taken == [[i for i in range(n) if v >> i & 1] for v in walks]
    assert (n > FLAT_ENCODER_MAX) == ("index_group" in rtlil.convert(m, ports=[mask, index, go]))


def test_network_with_more_sources_than_the_flat_encoder():
    """90 sources (60 input spikes + 30 hidden), dense inputs so that sources in every group of
    the tree encoder (16 wide: 6 groups, the last one partly padding) are taken in one step."""
    rng = np.random.default_rng(7)
    net = shape_network(60, 30, 4, rule="mean", steps=80, gain=100.0, seed=3)
    x = (rng.random((80, 60)) < 0.6).astype(np.int64)
    assert event_inputs(net) + net.shape[1] == 90
    hw = check(net, x, lanes=4, segments=3, gap_prob=0.2, stall_prob=0.2, seed=4)
    assert hw.spikes.sum() > 50
