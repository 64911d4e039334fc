"""Every neuron kind with an update stage (``hw.update``) in the accelerator: the stage alone equals
``arith.resonator_step`` (``arith.adaptive_step``, ``arith.bhrf_step``) on random values with saturation, and the whole
accelerator equals the golden model and the cycle model on real ECG sequences and on random networks."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import signed
from amaranth.sim import Simulator

from brf_hw import golden
from brf_hw.artifact import HARDWARE_NEURONS
from brf_hw.fixed import FixedSpec, Format, kinds, spec_for_model
from brf_hw.fixed.arith import adaptive_step, bhrf_step, resonator_step
from brf_hw.fixed.qat import to_int_network
from brf_hw.hw.fuzz import check_amaranth, random_case, with_kind
from brf_hw.hw.generate import shape_network
from brf_hw.hw.harmonic import HarmonicUpdate
from brf_hw.hw.update import UPDATE_STAGES, AdaptiveUpdate, ResonatorUpdate

from test_fixed_adaptive import network as adaptive_network
from test_fixed_harmonic import network as harmonic_network
from test_hw import check
from test_variants import network

OTHERS = [k for k in HARDWARE_NEURONS if k != "brf"]
RESONATORS = [k for k in HARDWARE_NEURONS if k not in ("alif", "lif", "bhrf")]


def test_every_hardware_kind_has_an_update_stage_and_an_integer_step():
    assert set(HARDWARE_NEURONS) == set(UPDATE_STAGES) == {"brf", "brf-no-boundary", "brf-no-refractory",
                                                            "brf-no-reset", "rf", "alif", "lif", "bhrf"}
    assert set(HARDWARE_NEURONS) <= set(kinds.KINDS)


SPEC = FixedSpec(weight=Format(8, 6), rec_weight=Format(8, 6), out_weight=Format(8, 6), coef=Format(12, 10),
                 state=Format(10, 5), output=Format(12, 6))


def _draw(rng, lo, hi, n):
    """Integers in [lo, hi], a third at the ends (saturation corners)."""
    v = rng.integers(lo, hi + 1, n)
    return np.where(rng.random(n) < 0.3, rng.choice([lo, hi], n), v).astype(np.int64)


def _pack(values, bits):
    return sum((int(v) & ((1 << bits) - 1)) << (i * bits) for i, v in enumerate(values))


def _unpack(word, i, bits):
    x = (word >> (i * bits)) & ((1 << bits) - 1)
    return x - (1 << bits) if x >> (bits - 1) else x


def _run_stage(stage, cases, names, coefs, lanes):
    """Each case through the stage alone, held for the whole pipeline: [n, names + z, lanes]."""
    s, c = SPEC.state, SPEC.coef
    got = []

    async def bench(ctx):
        for t in range(len(cases["acc"])):
            ctx.set(stage.valid, 1)
            for p in range(lanes):
                ctx.set(stage.acc[p], int(cases["acc"][t, p]))
            ctx.set(stage.state, _pack([cases[x][t, p] for x in names for p in range(lanes)], s.bits))
            ctx.set(stage.constants, _pack([v for name in coefs for v in cases[name][t]], c.bits))
            await ctx.tick().repeat(7)
            assert ctx.get(stage.out_valid)
            word, z = ctx.get(stage.new_state), ctx.get(stage.spikes)
            got.append([[_unpack(word, i * lanes + p, s.bits) for p in range(lanes)] for i in range(len(names))]
                       + [[(z >> p) & 1 for p in range(lanes)]])

    sim = Simulator(stage)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(got)


@pytest.mark.parametrize("kind", ["alif", "lif"])
def test_adaptive_stage_alone_is_the_integer_step(kind):
    """AdaptiveUpdate alone, two lanes, u, a, the sums and the decays anywhere in their formats (a
    third at the corners), against ``arith.adaptive_step``: new u, a and the spikes, 6 cycles deep."""
    rng = np.random.default_rng(len(kind))
    net = with_kind(shape_network(2, 2, 1), kind, rng)
    net = dataclasses.replace(net, spec=SPEC, theta0=40, beta=1800 if kind == "alif" else None)
    s, c = SPEC.state, SPEC.coef
    lanes, cur_bits = 2, s.bits + 3
    stage = AdaptiveUpdate(net, lanes, 1, signed(cur_bits), 2 * lanes * c.bits)
    names = stage.state_names
    assert names == ("ua" if kind == "alif" else "u") and stage.state_bits == len(names) * lanes * s.bits
    n, one = 60, 1 << c.frac
    cases = dict(acc=_draw(rng, -(1 << cur_bits - 1), (1 << cur_bits - 1) - 1, (n, lanes)),
                 u=_draw(rng, s.min_int, s.max_int, (n, lanes)),
                 a=_draw(rng, 0, 1 << s.frac, (n, lanes)) if kind == "alif" else np.zeros((n, lanes), np.int64),
                 alpha_m=_draw(rng, 0, one, (n, lanes)), rho=_draw(rng, 0, one, (n, lanes)))
    consts = (*net.step_constants()[:-1], 0)  # the stage takes the current, already shifted
    adapt = int(kind == "alif")
    want = adaptive_step(cases["acc"], cases["u"], cases["a"], cases["alpha_m"], cases["rho"] * adapt, *consts, adapt)
    got = _run_stage(stage, cases, names, list(net.kind.arrays), lanes)
    assert np.array_equal(got[:, 0], want[0]) and np.array_equal(got[:, -1], want[2])
    assert 0 < want[2].sum() < want[2].size and (want[0] == s.min_int).any()  # (at max_int it spikes)
    if kind == "alif":
        assert np.array_equal(got[:, 1], want[1]) and len(np.unique(want[1])) > 20


@pytest.mark.parametrize("kind", RESONATORS)
def test_update_stage_alone_is_the_integer_step(kind):
    """The component by itself (``elaborate``), two lanes, values anywhere in their formats (a third
    at the corners, so every saturation is taken), against ``arith.resonator_step`` of the kind's
    q_mode: new u, v, q and the spikes."""
    rng = np.random.default_rng(len(kind))
    net = dataclasses.replace(shape_network(2, 2, 1), spec=SPEC, neuron=kind, dtq=300, gamma=900, theta=40)
    s, c = SPEC.state, SPEC.coef
    lanes, cur_bits = 2, s.bits + 3
    stage = ResonatorUpdate(net, lanes, 1, signed(cur_bits), 2 * lanes * c.bits)
    names = stage.state_names
    # RF's q never leaves 0: its state word (the accelerator's state memory) holds u and v only
    assert len(stage.new_state) == stage.state_bits == (2 if kind == "rf" else 3) * lanes * s.bits
    consts = (*net.step_constants()[:-1], 0)  # the stage takes the current, already shifted

    def draw(lo, hi, n):
        return _draw(rng, lo, hi, n)

    n = 60
    cases = dict(acc=draw(-(1 << cur_bits - 1), (1 << cur_bits - 1) - 1, (n, lanes)),
                 u=draw(s.min_int, s.max_int, (n, lanes)), v=draw(s.min_int, s.max_int, (n, lanes)),
                 q=draw(s.min_int, s.max_int, (n, lanes)) if "q" in names else np.zeros((n, lanes), np.int64),
                 d=draw(c.min_int, c.max_int, (n, lanes)), c=draw(0, (1 << c.frac) - 1, (n, lanes)))
    want = resonator_step(cases["acc"], cases["u"], cases["v"], cases["q"], cases["d"], cases["c"], *consts,
                          kinds.get(kind).q_mode)
    if kind != "rf":
        assert (want[2] != 0).any()
    got = _run_stage(stage, cases, names, ["d", "c"], lanes)  # [n, u v (q) z, lanes]
    assert np.array_equal(got[:, 0], want[0]) and np.array_equal(got[:, 1], want[1])
    if "q" in names:
        assert np.array_equal(got[:, 2], want[2])
    assert np.array_equal(got[:, -1], want[3]) and 0 < want[3].sum() < want[3].size


def test_harmonic_stage_alone_is_the_integer_step():
    """HarmonicUpdate alone, two lanes, u, y, q, the sums, d and c anywhere in their formats (a third
    at the corners), against ``arith.bhrf_step``: new u, y, q and the spikes, 6 cycles deep."""
    rng = np.random.default_rng(5)
    net = dataclasses.replace(shape_network(2, 2, 1), spec=SPEC, neuron="bhrf", dtq=300, gamma=900, theta=40)
    s, c = SPEC.state, SPEC.coef
    lanes, cur_bits = 2, s.bits + 3
    stage = HarmonicUpdate(net, lanes, 1, signed(cur_bits), 2 * lanes * c.bits)
    assert stage.state_names == "uyq" and len(stage.new_state) == stage.state_bits == 3 * lanes * s.bits
    consts = (*net.step_constants()[:-1], 0)  # the stage takes the current, already shifted
    n = 60
    cases = dict(acc=_draw(rng, -(1 << cur_bits - 1), (1 << cur_bits - 1) - 1, (n, lanes)),
                 **{x: _draw(rng, s.min_int, s.max_int, (n, lanes)) for x in "uyq"},
                 d=_draw(rng, c.min_int, c.max_int, (n, lanes)), c=_draw(rng, 0, c.max_int, (n, lanes)))
    want = bhrf_step(cases["acc"], cases["u"], cases["y"], cases["q"], cases["d"], cases["c"], *consts)
    got = _run_stage(stage, cases, "uyq", ["d", "c"], lanes)  # [n, u y q z, lanes]
    for i in range(4):
        assert np.array_equal(got[:, i], want[i]), "uyqz"[i]
    assert 0 < want[3].sum() < want[3].size
    for i in range(2):  # u and y saturate somewhere, at both ends (q: gamma < 1)
        assert (want[i] == s.min_int).any() and (want[i] == s.max_int).any(), "uy"[i]
    e = np.clip(cases["d"] - ((300 * cases["q"] + (1 << s.frac - 2)) >> (s.frac - 1)), c.min_int, c.max_int)
    assert (e == c.min_int).any() and (e == c.max_int).any()  # and so does the damping


# each kind on its own geometry: lanes, segments, events
ECG_CASES = [("brf", 1, 2, 1), ("brf-no-boundary", 4, 1, 2), ("brf-no-refractory", 3, 2, 1),
             ("brf-no-reset", 6, 2, 3), ("rf", 1, 1, 1), ("alif", 1, 1, 1), ("alif", 4, 3, 2), ("lif", 1, 1, 1),
             ("lif", 3, 2, 1), ("bhrf", 1, 1, 1), ("bhrf", 4, 3, 2)]


def ecg_network(kind):
    """An ECG-size (4-36-6) network of ``kind`` that spikes on ECG, in 8-bit formats."""
    if kind == "bhrf":
        model = harmonic_network(weight_scale=150.0)
    else:
        model = adaptive_network(kind) if kind in ("alif", "lif") else network(kind, 0, weight_scale=100.0)
    return to_int_network(model, spec_for_model(model, 8))


@pytest.mark.parametrize("kind, lanes, segments, events", ECG_CASES)
def test_real_ecg_sequences_per_kind(kind, lanes, segments, events, ecg_splits):
    """Two ECG test sequences back to back through an ECG-size (4-36-6) network of each kind:
    hardware == golden (spikes, potentials, labels) and cycles == the cycle model, with gaps and
    back-pressure. The same arrays read as BRF (ALIF as LIF) spike otherwise, so the kind's stage is
    what ran."""
    net = ecg_network(kind)
    assert net.neuron == kind
    test = ecg_splits["test"].inputs.numpy().astype(np.int64)
    steps = 80
    x = np.concatenate([test[0, :steps], test[1, :steps]])
    first = np.zeros(len(x), bool)
    first[[0, steps]] = True
    hw = check(net, x, first, lanes=lanes, segments=segments, events=events, gap_prob=0.3, stall_prob=0.3,
               seed=lanes)
    assert hw.spikes.sum() > 100
    if kind == "alif":  # without the adaptation
        as_lif = golden.run_stream(dataclasses.replace(net, neuron="lif", rho=None, beta=None), x, first)
        assert not np.array_equal(as_lif.spikes, hw.spikes)
    elif kind not in ("brf", "brf-no-boundary", "lif"):  # no-boundary: BRF's step, only d differs (the arrays)
        # (BHRF's y read as BRF's v, the same d and c: a different oscillator)
        as_brf = golden.run_stream(dataclasses.replace(net, neuron="brf"), x, first)
        assert not np.array_equal(as_brf.spikes, hw.spikes)


@pytest.mark.parametrize("kind, seed", [(k, s) for k, s in zip(OTHERS, [1020, 7, 1032, 11, 1020, 7, 1032], strict=True)])
def test_random_networks_per_kind(kind, seed):
    """Fuzzer cases (any formats, corners, resets, gaps, stalls, lanes, segments, K) as each kind."""
    case = random_case(seed, kind)
    assert case.net.neuron == kind
    assert check_amaranth(case) is None, case.describe()


def test_the_fuzzer_draws_every_kind():
    drawn = [random_case(seed).net.neuron for seed in range(40)]
    assert set(drawn) == set(HARDWARE_NEURONS) and 10 < drawn.count("brf") < 30
