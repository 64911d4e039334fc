"""The fixed-point definition: formats, rounding, the integer step by hand, QAT == golden bit for
bit (real ECG sequences, random networks, saturation corners), STE gradients."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brf_hw import golden
from brf_hw.fixed import FixedSpec, Format, spec_for_model
from brf_hw.fixed.spec import IntNetwork
from brf_hw.fixed.arith import brf_step, li_step, rshift
from brf_hw.fixed.formats import frac_for, frac_min_error
from brf_hw.fixed.qat import fake_quant, quantized_parameters, to_int_network
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig


def test_format_rounding_and_saturation_by_hand():
    f = Format(8, 2)  # Q5.2: steps of 0.25, range [-32, 31.75]
    assert f.quantize([0.125, -0.125, 0.3, 1.375, -1.375]).tolist() == [1, 0, 1, 6, -5]  # half up
    assert f.quantize([40.0, -40.0]).tolist() == [127, -128]  # saturation
    with pytest.raises(ValueError, match=r"outside Q5.2"):
        f.quantize([40.0], "theta", strict=True)
    with pytest.raises(ValueError, match="NaN"):
        f.quantize([float("nan")])
    fx = f.fxp()
    assert (fx.n_word, fx.n_frac, fx.signed) == (8, 2, True)
    assert (fx.upper, fx.lower) == (f.max_value, f.min_value)
    assert frac_for(0.9, 8) == 7 and frac_for(1.0, 8) == 6 and frac_for(3.0, 4) == 1


def test_fraction_bits_trade_clipping_for_resolution():
    # one outlier at 1.0 among many small weights: 4-bit Q0.3 clips it to 0.875 but halves the grid
    values = np.concatenate([[1.0], np.full(50, 0.1)])
    assert frac_for(1.0, 4) == 2 and frac_min_error(values, 4) == 3
    assert frac_min_error(np.full(5, 0.9), 8) == frac_for(0.9, 8)  # nothing to gain from clipping
    assert frac_min_error(np.zeros(3), 8) == 7


def test_rshift_rounds_half_up():
    assert [rshift(x, 2) for x in (5, 6, 7, -5, -6, -7, 2, -2)] == [1, 2, 2, -1, -1, -2, 1, 0]
    assert rshift(3, -4) == 48 and rshift(-9, 0) == -9


def test_input_and_recurrent_weights_align_on_the_finer_fraction():
    spec = FixedSpec(weight=Format(8, 6), rec_weight=Format(6, 8), out_weight=Format(8, 5))
    assert (spec.acc_frac, spec.in_align, spec.rec_align) == (8, 2, 0)
    assert spec.synapse_bits == 10 and spec.acc_bits(40) == 16  # 8+2 bits, 41 terms -> 6 more
    assert spec.weight_shift == 8 - spec.state.frac
    net_like = IntNetwork(spec=spec, w_in=np.array([[3, -128]]), w_rec=np.array([[-32]]), w_out=np.zeros((1, 1), int),
                          d=np.zeros(1, int), c=np.zeros(1, int), alpha=np.zeros(1, int), dtq=0, gamma=0, theta=0)
    w_in, w_rec = net_like.aligned_weights()
    assert w_in.tolist() == [[12, -512]] and w_rec.tolist() == [[-32]]  # 3/64 = 12/256, -32/256


def test_integer_brf_step_by_hand():
    # state Q5.10 (sf=10), coef Q1.14 (cf=14), weights with 7 fraction bits (shift -3)
    lo, hi = -32768, 32767
    d, c, dtq, gamma, theta = 16300, 300, 164, 14746, 1024
    u, v, q, z = brf_step(np.int64(200), np.int64(1500), np.int64(-400), np.int64(512), d, c, dtq, gamma,
                          theta, lo, hi, lo, hi, 14, 10, -3)
    e = d - ((164 * 512 + 512) >> 10)  # 16300 - 82 = 16218
    assert e == 16218
    assert u == ((e * 1500 - 300 * -400 + 8192) >> 14) + 200 * 8  # 1492 + 1600 = 3092
    assert v == ((e * -400 + 300 * 1500 + 8192) >> 14)  # -396 + 27 = -368... rounded once
    assert z == int(u - theta - 512 > 0) == 1
    assert q == ((gamma * 512 + 8192) >> 14) + 1024
    # saturation at the state bounds, and no spike at exactly threshold + q
    u2, *_ = brf_step(np.int64(10**6), np.int64(0), np.int64(0), np.int64(0), d, c, dtq, gamma, theta,
                      lo, hi, lo, hi, 14, 10, -3)
    assert u2 == hi
    _, _, _, z3 = brf_step(np.int64(128), np.int64(0), np.int64(0), np.int64(0), 16384, 0, dtq, gamma,
                           theta, lo, hi, lo, hi, 14, 10, -3)
    assert z3 == 0  # u' = 1024 = theta exactly: strictly greater is required
    assert li_step(np.int64(64), np.int64(1000), 15565, lo, hi, 14, 2) == ((15565 * 1000 + 8192) >> 14) + 16


def test_fake_quant_equals_format_quantize_and_passes_gradient():
    fmt = Format(8, 5)
    x = torch.tensor([0.013, -0.5156, 3.9, -4.2, 0.015625], dtype=torch.float64, requires_grad=True)
    q = fake_quant(x, fmt)
    assert q.tolist() == fmt.quantize(x.detach().numpy()).tolist()
    q.sum().backward()
    assert x.grad.tolist() == [32.0, 32.0, 32.0, 0.0, 32.0]  # zero where saturated


def network(seed, weight_scale=30.0, hidden=12, inputs=4, outputs=3):
    cfg = ModelConfig(inputs, hidden, outputs, neuron=NeuronConfig(omega_init=(3.0, 60.0)))
    model = build_model(cfg, seed=seed)
    with torch.no_grad():
        model.synapses.weight.mul_(weight_scale)
        model.readout.weight.mul_(5.0)
    return model


def assert_qat_equals_golden(model, spec, x):
    model.fixed = spec
    with torch.no_grad():
        out = model(torch.from_numpy(x), record=True)
    gold = golden.run(to_int_network(model, spec), x, record=True)
    assert np.array_equal(out.traces["z"].numpy().astype(np.int64), gold.spikes)
    assert np.array_equal(out.outputs.numpy() * spec.output.scale, gold.outputs)
    for name in "uvq":
        assert np.array_equal(out.traces[name].numpy() * spec.state.scale, gold.traces[name])
    return gold


def test_qat_equals_golden_on_real_ecg(ecg_splits):
    model = network(0, hidden=36, inputs=4, outputs=6, weight_scale=40.0)
    x = ecg_splits["test"].inputs[:10].numpy().transpose(1, 0, 2)
    gold = assert_qat_equals_golden(model, spec_for_model(model, 8), x)
    assert gold.spikes.sum() > 1000


def test_state_range_trades_fraction_bits(ecg_splits):
    """--state-frac 8 gives u, v, q the range [-128, 128): a strongly driven state that saturates in
    Q5.10's [-32, 32) stays exact, at a coarser step, and QAT still equals the golden model."""
    model = network(0, hidden=36, inputs=4, outputs=6, weight_scale=40.0)
    with torch.no_grad():
        model.synapses.weight[0, :4] = -190.0  # every input spike pushes u of neuron 0 down by 1.9
        model.hidden.omega_param[0] = 1.0  # slowly: u keeps falling between input spikes
    assert spec_for_model(model, 8).state == Format(16, 10)  # the default, Q5.10
    wide = spec_for_model(model, 8, state_frac=8)
    assert wide.state == Format(16, 8) and wide.state.max_value == pytest.approx(128 - 2**-8)
    x = ecg_splits["test"].inputs[:4].numpy().transpose(1, 0, 2)
    narrow_u = assert_qat_equals_golden(model, spec_for_model(model, 8), x).traces["u"]
    wide_u = assert_qat_equals_golden(model, wide, x).traces["u"]
    assert narrow_u.min() == -32 * 2**10  # saturated
    assert wide_u.min() / 2**8 < -32


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), weight_bits=st.integers(3, 12), state_bits=st.integers(9, 18),
       coef_bits=st.integers(10, 18), output_bits=st.integers(6, 16), weight_scale=st.sampled_from([1.0, 30.0, 300.0]),
       hidden=st.integers(1, 10), steps=st.integers(1, 60), batch=st.integers(1, 3),
       rec_bits=st.integers(3, 12), rec_frac_offset=st.integers(-3, 3))
def test_qat_equals_golden_on_random_networks(seed, weight_bits, state_bits, coef_bits, output_bits,
                                              weight_scale, hidden, steps, batch, rec_bits, rec_frac_offset):
    """Includes saturation corners: large weights with narrow states saturate u, v, q and o;
    recurrent weights in their own format, finer or coarser than the input weights'."""
    model = network(seed, weight_scale, hidden)
    spec = FixedSpec(weight=Format(weight_bits, weight_bits - 2),
                     rec_weight=Format(rec_bits, weight_bits - 2 + rec_frac_offset),
                     out_weight=Format(weight_bits, weight_bits - 4),
                     coef=Format(coef_bits, coef_bits - 2), state=Format(state_bits, state_bits - 6),
                     output=Format(output_bits, output_bits - 8))
    x = (np.random.default_rng(seed).random((steps, batch, 4)) < 0.3).astype(np.float64)
    assert_qat_equals_golden(model, spec, x)


def test_saturation_corner_is_reached_and_still_exact():
    model = network(3, weight_scale=2000.0)
    with torch.no_grad():
        model.readout.weight.copy_(torch.sign(model.readout.weight) * 150.0)
    spec = FixedSpec(weight=Format(6, 2), rec_weight=Format(6, 2), out_weight=Format(6, 2), coef=Format(12, 10),
                     state=Format(8, 4), output=Format(8, 4))
    x = np.ones((40, 2, 4))
    gold = assert_qat_equals_golden(model, spec, x)
    s = spec.state
    # u and v hit both bounds (q cannot: a spike needs u > theta + q within the same format)
    for name in "uv":
        assert (gold.traces[name] == s.max_int).any() and (gold.traces[name] == s.min_int).any()
    assert (gold.outputs == 127).any() and (gold.outputs == -128).any()


def test_wide_formats_track_the_float_network(ecg_splits):
    """With 16-bit weights and 24-bit states the integer network is the float one up to rounding:
    nearly every spike agrees on a real ECG sequence."""
    model = network(1, hidden=36, inputs=4, outputs=6, weight_scale=40.0)
    x = ecg_splits["test"].inputs[:4].transpose(0, 1)
    with torch.no_grad():
        ref = model(x).spikes_per_step
    spec = FixedSpec(weight=Format(16, 15), rec_weight=Format(16, 15), out_weight=Format(16, 12), coef=Format(26, 24),
                     state=Format(28, 22), output=Format(24, 16))
    gold = golden.run(to_int_network(model, spec), x.numpy())
    assert ref.sum() > 300
    assert abs(gold.spikes.sum() - ref.sum().item()) <= 0.01 * ref.sum().item()


def test_ste_gradients_match_the_float_network_with_wide_formats(ecg_splits):
    model = network(2, hidden=8, inputs=4, outputs=3, weight_scale=40.0).double()
    x = ecg_splits["test"].inputs[:2, :300].transpose(0, 1).double()
    spec = FixedSpec(weight=Format(24, 22), rec_weight=Format(24, 23), out_weight=Format(24, 20), coef=Format(30, 28),
                     state=Format(30, 24), output=Format(30, 22))
    grads, spikes = [], []
    for fixed in (None, spec):
        model.fixed = fixed
        out = model(x)
        spikes.append(out.spikes_per_step.detach())
        grads.append(torch.autograd.grad((out.outputs**2).sum(), list(model.parameters())))
    assert torch.equal(*spikes) and spikes[0].sum() > 20
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-6 * b.abs().max().item())


def test_divergent_omega_cannot_be_quantized():
    model = network(0)
    with torch.no_grad():
        model.hidden.omega_param[0] = 100.0
    with pytest.raises(ValueError, match="divergence boundary"):
        quantized_parameters(model, spec_for_model(model))


def test_fixed_point_rejects_fractional_inputs():
    model = network(0)
    model.fixed = spec_for_model(model)
    with pytest.raises(ValueError, match="input value 0.5 is not a whole multiple of the input unit 1"):
        model(torch.full((3, 1, 4), 0.5))
    with pytest.raises(ValueError, match="integer inputs"):
        golden.run(to_int_network(model, model.fixed), np.full((3, 1, 4), 0.5))
    with pytest.raises(ValueError, match="input value 2 is outside the input format u1"):  # spikes are 0/1
        golden.run(to_int_network(model, model.fixed), np.full((3, 1, 4), 2))
