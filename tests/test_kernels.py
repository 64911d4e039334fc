"""Fused BPTT kernels against the reference autograd loop: identical forward, equal gradients."""

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brf_hw import kernels
from brf_hw.model import ModelConfig, build_model
from brf_hw.neurons import NeuronConfig


def pair(kind, inputs, hidden, outputs, seed, weight_scale, surrogate="double_gaussian", tbptt=0,
         dtype=torch.float64):
    cfg = ModelConfig(inputs, hidden, outputs,
                      neuron=NeuronConfig(kind=kind, omega_init=(5.0, 60.0), surrogate=surrogate))
    fused = build_model(cfg, seed=seed, kernel="fused", tbptt=tbptt).to(dtype)
    with torch.no_grad():
        fused.synapses.weight.mul_(weight_scale)
    reference = build_model(cfg, seed=seed, kernel="reference", tbptt=tbptt).to(dtype)
    reference.load_state_dict(fused.state_dict())
    return fused, reference


def compare(fused, reference, x, rtol=1e-5):
    outs = []
    for model in (fused, reference):
        out = model(x, record=True)
        # a loss that reaches every output and every spike, as training losses do
        loss = (out.outputs * torch.linspace(-1, 1, out.outputs.shape[-1], dtype=x.dtype)).sum()
        loss = loss + 0.1 * (out.outputs**2).sum() + 0.01 * out.spikes_per_step.sum()
        outs.append((out, torch.autograd.grad(loss, list(model.parameters()))))
    (fo, fg), (ro, rg) = outs
    assert torch.equal(fo.traces["z"], ro.traces["z"]), "forward spikes differ"
    torch.testing.assert_close(fo.outputs, ro.outputs, rtol=1e-12, atol=1e-12)
    for name in ("u", "v", "q"):
        torch.testing.assert_close(fo.traces[name], ro.traces[name], rtol=1e-12, atol=1e-12)
    for (name, _), a, b in zip(fused.named_parameters(), fg, rg):
        scale = b.abs().max().clamp_min(1e-12)
        assert ((a - b).abs().max() / scale) <= rtol, f"gradient of {name} differs"
    return fo


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(kernels.FUSED_KINDS),
    batch=st.integers(1, 4),
    inputs=st.integers(1, 3),
    hidden=st.integers(1, 9),
    outputs=st.integers(1, 3),
    steps=st.integers(1, 80),
    weight_scale=st.sampled_from([0.0, 1.0, 40.0, 400.0]),
    surrogate=st.sampled_from(["double_gaussian", "multi_gaussian"]),
    tbptt=st.sampled_from([0, 1, 7]),
    seed=st.integers(0, 2**16),
)
def test_fused_equals_reference_on_random_networks(kind, batch, inputs, hidden, outputs, steps,
                                                    weight_scale, surrogate, tbptt, seed):
    fused, reference = pair(kind, inputs, hidden, outputs, seed, weight_scale, surrogate, tbptt)
    x = (torch.rand(steps, batch, inputs, generator=torch.Generator().manual_seed(seed)) < 0.3).double()
    compare(fused, reference, x)


def test_long_sequence_single_neuron():
    fused, reference = pair("brf", 2, 1, 2, seed=5, weight_scale=80.0)
    x = (torch.rand(3000, 1, 2, generator=torch.Generator().manual_seed(0)) < 0.1).double()
    out = compare(fused, reference, x)
    assert 0 < out.spikes_per_step.sum() < 3000


def test_all_silent_and_always_spiking():
    silent, ref = pair("brf", 3, 6, 2, seed=1, weight_scale=0.0)
    x = torch.ones(50, 2, 3, dtype=torch.float64)
    assert compare(silent, ref, x).spikes_per_step.sum() == 0
    loud, ref = pair("rf", 3, 6, 2, seed=1, weight_scale=1.0)
    with torch.no_grad():
        for m in (loud, ref):
            m.synapses.weight.fill_(500.0)
    assert torch.all(compare(loud, ref, x[:5]).spikes_per_step == 6)


def test_real_ecg_batch_float32(ecg_splits):
    x = ecg_splits["test"].inputs[:8].transpose(0, 1)
    fused, reference = pair("brf", 4, 36, 6, seed=0, weight_scale=40.0, dtype=torch.float32)
    fo, ro = fused(x), reference(x)
    assert fo.spikes_per_step.sum() > 100
    assert torch.equal(fo.spikes_per_step, ro.spikes_per_step)
    torch.testing.assert_close(fo.outputs, ro.outputs, rtol=1e-5, atol=1e-6)


def test_kernel_selection_and_fallback(monkeypatch):
    cpu = torch.device("cpu")
    assert kernels.choose("auto", "brf", cpu) == "fused"
    assert kernels.choose("auto", "alif", cpu) == "fused"
    assert kernels.choose("reference", "brf", cpu) == "reference"
    assert kernels.choose("auto", "bhrf", cpu) == "fused"
    with pytest.raises(RuntimeError, match="no GPU kernel for 'bhrf'"):
        kernels.choose("fused", "bhrf", torch.device("cuda"))
    with pytest.raises(ValueError, match="unknown kernel"):
        build_model(ModelConfig(1, 2, 1), kernel="fast")
    monkeypatch.setattr(kernels, "_cpu_backend", lambda: (None, "the CPU kernel needs numba (test)"))
    monkeypatch.setattr(kernels, "_warned", set())
    with pytest.warns(RuntimeWarning, match="falling back to the reference BPTT loop"):
        assert kernels.choose("auto", "brf", cpu) == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning is given once, not per batch
        assert kernels.choose("auto", "brf", cpu) == "reference"
    with pytest.raises(RuntimeError, match="needs numba"):
        kernels.choose("fused", "brf", cpu)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q_mode=st.sampled_from([0, 1, 2, 3]),  # RF, no refractory, no smooth reset, BRF
    batch=st.integers(1, 18),  # past one 16-row program block
    hidden=st.integers(1, 20),
    steps=st.integers(1, 20),
    tbptt=st.sampled_from([0, 4]),
    surrogate=st.sampled_from(["double_gaussian", "multi_gaussian"]),
    seed=st.integers(0, 2**16),
)
def test_triton_kernel_equals_cpu_kernel(q_mode, batch, hidden, steps, tbptt, surrogate, seed):
    """The GPU (Triton) kernels against the CPU kernels in float64; on a machine without a GPU they
    run in Triton's interpreter (TRITON_INTERPRET=1, set in conftest)."""
    pytest.importorskip("triton")
    from brf_hw.kernels import fused, gpu

    if not torch.cuda.is_available() and __import__("os").environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU and the Triton interpreter is off")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator().manual_seed(seed)
    shape = (steps, batch, hidden)
    tensors = [torch.randn(shape, generator=g, dtype=torch.float64) * 80,
               torch.randn(hidden, hidden, generator=g, dtype=torch.float64) * 30,
               torch.rand(hidden, generator=g, dtype=torch.float64) * 60 + 5,
               -torch.rand(hidden, generator=g, dtype=torch.float64),
               torch.rand(2, generator=g, dtype=torch.float64) * 0.5 + 0.5]
    weights = torch.randn(hidden, 2, generator=g, dtype=torch.float64)
    results = []
    for resonator, li, dev in ((gpu.FusedResonatorGPU, gpu.FusedLIGPU, device),
                               (fused.FusedResonatorCPU, fused.FusedLICPU, "cpu")):
        leaves = [t.to(dev).requires_grad_() for t in tensors]
        z, u, v, q = resonator.apply(*leaves[:4], 0.01, 1.0, 0.9, q_mode, surrogate, tbptt)
        o = li.apply(z @ weights.to(dev), leaves[4])
        loss = (o**2).sum() + (z * torch.linspace(-1, 1, hidden, dtype=torch.float64, device=dev)).sum()
        grads = torch.autograd.grad(loss, leaves)
        results.append([t.detach().cpu() for t in (z, u, v, q, o, *grads)])
    (z1, *rest1), (z2, *rest2) = results
    assert torch.equal(z1, z2)
    # compiled Triton takes Python floats (dt, theta, gamma, the surrogate's constants) as float32:
    # on a GPU the float64 results agree to float32's rounding of those scalars (seen on an H200:
    # 2.2e-8 relative), in the interpreter to float64's
    tol = 1e-6 if device == "cuda" else 1e-9
    for a, b in zip(rest1, rest2):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


COMPILE_FOR_HOPPER = """
import sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from brf_hw.kernels import gpu

resonator = dict(BLOCK=gpu.BLOCK_B, H_PAD=256, K_TILE=gpu.BK)
kernels = [(gpu._resonator_fwd, {"T", "B", "H"}, {"Q_MODE": 3, **resonator}),
           (gpu._li_fwd, {"T", "N", "O"}, {"BLOCK": gpu.LI_BLOCK}),
           (gpu._li_bwd, {"T", "N", "O"}, {"BLOCK": gpu.LI_BLOCK})]
kernels += [(gpu._resonator_bwd, {"T", "B", "H", "TBPTT"}, {"Q_MODE": q, "SURROGATE": s, **resonator})
            for q, s in ((3, 0), (0, 1))]
for dtype in ("fp32", "fp64"):
    for fn, ints, consts in kernels:
        signature = {name: "constexpr" if name in consts else "i32" if name in ints
                     else dtype if name in ("dt", "theta", "gamma") else "*" + dtype for name in fn.arg_names}
        compiled = triton.compile(ASTSource(fn, signature, constexprs=consts), target=GPUTarget("cuda", 90, 32))
        assert compiled.asm["cubin"], fn.__name__
        print(dtype, fn.__name__, "compiled")
"""


def test_triton_kernels_compile_for_hopper():
    """Every GPU kernel through Triton's real compiler to sm_90 machine code, float32 and float64
    (no GPU needed; a fresh process, since the interpreter is on here): the interpreter that checks
    the numbers above accepts code that compiled Triton refuses (a plain float module global did
    once, found on an H200)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", COMPILE_FOR_HOPPER], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("compiled") == 10


@pytest.mark.parametrize("blas", [True, False], ids=["blas", "loops"])
def test_both_recurrent_adjoints_equal_reference(blas):
    """The recurrent adjoint W_rec^T gI runs through MKL's ?gemm where torch has MKL, else through
    compiled loops: both against the reference, on blocks of sequences (batch 11: blocks of 2, the
    last one short) and hidden sizes that are and are not multiples of the 8-row unrolling."""
    from brf_hw.kernels import cpu_resonator

    try:
        cpu_resonator.use_blas(blas)
        for hidden, seed in ((13, 1), (24, 2)):
            fused, reference = pair("brf", 3, hidden, 4, seed=seed, weight_scale=40.0)
            x = (torch.rand(40, 11, 3, generator=torch.Generator().manual_seed(seed)) < 0.3).double()
            assert compare(fused, reference, x).spikes_per_step.sum() > 0
    finally:
        cpu_resonator.use_blas(None)


def test_input_gradient_and_loss_on_spikes_only():
    """dL/dx (inputs that require a gradient) and a loss that does not reach the outputs (the
    readout gets no gradient: the Function's grad_o is None)."""
    fused, reference = pair("rf", 2, 7, 3, seed=4, weight_scale=40.0)
    x = (torch.rand(30, 5, 2, generator=torch.Generator().manual_seed(4)) < 0.4).double()
    grads = []
    for model in (fused, reference):
        xi = x.clone().requires_grad_()
        out = model(xi)
        loss = (out.outputs * torch.linspace(-1, 1, 3, dtype=x.dtype)).sum()
        grads.append(torch.autograd.grad(loss, [xi, *model.parameters()]))
        spikes = model(x).spikes_per_step
        assert spikes.sum() > 0
        grads.append(torch.autograd.grad((spikes**2).sum(), list(model.parameters()), allow_unused=True))
    for a_set, b_set in ((grads[0], grads[2]), (grads[1], grads[3])):
        for a, b in zip(a_set, b_set):
            if b is None:
                assert a is None or not a.any()
                continue
            a = torch.zeros_like(b) if a is None else a
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-9)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["alif", "lif"]),
    batch=st.integers(1, 4),
    hidden=st.integers(1, 9),
    steps=st.integers(1, 80),
    weight_scale=st.sampled_from([0.0, 1.0, 5.0, 30.0]),
    surrogate=st.sampled_from(["double_gaussian", "multi_gaussian"]),
    tbptt=st.sampled_from([0, 1, 7]),
    seed=st.integers(0, 2**16),
)
def test_fused_alif_and_lif_equal_reference(kind, batch, hidden, steps, weight_scale, surrogate, tbptt, seed):
    cfg = ModelConfig(3, hidden, 2, neuron=NeuronConfig(kind=kind, tau_m_init=(5.0, 2.0), tau_adp_init=(20.0, 5.0),
                                                       surrogate=surrogate))
    fused = build_model(cfg, seed=seed, kernel="fused", tbptt=tbptt).double()
    with torch.no_grad():
        fused.synapses.weight.mul_(weight_scale)
    reference = build_model(cfg, seed=seed, kernel="reference", tbptt=tbptt).double()
    reference.load_state_dict(fused.state_dict())
    x = (torch.rand(steps, batch, 3, generator=torch.Generator().manual_seed(seed)) < 0.3).double()
    results = []
    for model in (fused, reference):
        out = model(x, record=True)
        loss = (out.outputs * torch.linspace(-1, 1, 2, dtype=x.dtype)).sum() + 0.1 * (out.outputs**2).sum()
        loss = loss + 0.01 * out.spikes_per_step.sum()
        results.append((out, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)))
    (fo, fg), (ro, rg) = results
    assert torch.equal(fo.traces["z"], ro.traces["z"])
    for name in ("u", "a"):
        torch.testing.assert_close(fo.traces[name], ro.traces[name], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fo.outputs, ro.outputs, rtol=1e-12, atol=1e-12)
    for (name, _), a, b in zip(fused.named_parameters(), fg, rg):
        scale = b.abs().max().clamp_min(1e-12)
        assert ((a - b).abs().max() / scale) <= 1e-5, f"gradient of {name} differs"


def test_fused_alif_spikes_on_real_ecg_float32(ecg_splits):
    x = ecg_splits["test"].inputs[:8].transpose(0, 1)
    cfg = ModelConfig(4, 36, 6, neuron=NeuronConfig(kind="alif", tau_m_init=(20.0, 0.5), tau_adp_init=(7.0, 0.2)))
    fused = build_model(cfg, seed=0, kernel="fused")
    reference = build_model(cfg, seed=0, kernel="reference")
    reference.load_state_dict(fused.state_dict())
    fo, ro = fused(x), reference(x)
    assert fo.spikes_per_step.sum() > 100
    assert torch.equal(fo.spikes_per_step, ro.spikes_per_step)
    torch.testing.assert_close(fo.outputs, ro.outputs, rtol=1e-5, atol=1e-6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.integers(1, 4),
    hidden=st.integers(1, 9),
    steps=st.integers(1, 80),
    weight_scale=st.sampled_from([0.0, 1.0, 40.0, 400.0]),
    surrogate=st.sampled_from(["double_gaussian", "multi_gaussian"]),
    tbptt=st.sampled_from([0, 1, 7]),
    seed=st.integers(0, 2**16),
)
def test_fused_bhrf_equals_reference(batch, hidden, steps, weight_scale, surrogate, tbptt, seed):
    fused, reference = pair("bhrf", 3, hidden, 2, seed, weight_scale, surrogate, tbptt)
    x = (torch.rand(steps, batch, 3, generator=torch.Generator().manual_seed(seed)) < 0.3).double()
    compare(fused, reference, x)


def test_fused_bhrf_on_real_ecg_float32(ecg_splits):
    x = ecg_splits["test"].inputs[:8].transpose(0, 1)
    fused, reference = pair("bhrf", 4, 36, 6, seed=0, weight_scale=40.0, dtype=torch.float32)
    fo, ro = fused(x), reference(x)
    assert fo.spikes_per_step.sum() > 100
    assert torch.equal(fo.spikes_per_step, ro.spikes_per_step)
    torch.testing.assert_close(fo.outputs, ro.outputs, rtol=1e-5, atol=1e-6)
