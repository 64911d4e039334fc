"""Quantization-aware training of BRF networks (its ablations, RF, BHRF, ALIF and LIF: ``fixed.kinds``).

Forward: the exact integer network (``kernel`` running ``arith``), so training sees the
hardware's spikes and potentials. Backward: straight-through estimation. Parameters are
quantized with STE (round and clip pass the gradient inside the range), and the integer
dynamics are differentiated as the float equations of the same kind evaluated on the integer
trajectory and the quantized parameters (the float adjoint kernels ``kernels.cpu_resonator``, for
BHRF ``kernels.cpu_bhrf``, for ALIF and LIF ``kernels.cpu_alif``).

``quantized_parameters`` is the only place float parameters become integers: QAT, export
(``to_int_network``) and therefore the golden model and the hardware all take them from here.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..kernels import cpu_resonator
from ..neurons.functional import decay
from . import kernel, kinds
from .formats import Format
from .arith import event_matmul
from .spec import FixedSpec, IntNetwork, Readout


class QuantParams(NamedTuple):
    """Integer-valued float64 tensors (their gradients flow to the float parameters by STE):
    the shared synapses and readout decay, and the kind's own arrays (``neuron``: d, c; alpha_m, rho)."""

    w_in: torch.Tensor
    w_rec: torch.Tensor
    w_out: torch.Tensor
    alpha: torch.Tensor
    neuron: dict


def fake_quant(x: torch.Tensor, fmt: Format) -> torch.Tensor:
    """x -> integer in ``fmt`` units (round half up, saturate), with a straight-through gradient
    of 2^frac inside the range and zero outside (as a clip)."""
    scaled = (x * fmt.scale).clamp(fmt.min_int, fmt.max_int)
    return scaled + (torch.floor(scaled + 0.5) - scaled).detach()


def neuron_kind(model):
    """The model's ``fixed.kinds`` entry; a ValueError names a kind without integer arithmetic."""
    try:
        return kinds.get(model.config.neuron.kind, "fixed point: neuron kind")
    except kinds.UnknownKind as exc:
        raise ValueError(str(exc)) from None


def quantized_parameters(model, spec: FixedSpec) -> QuantParams:
    kind = neuron_kind(model)
    gain = kind.input_gain(model)  # dt (resonators) or (1 - alpha_m) [H, 1] (ALIF, LIF)
    n_in = model.config.inputs
    weight = model.synapses.weight.double()
    alpha = decay(model.output.tau_o.double())
    return QuantParams(
        w_in=fake_quant(gain * weight[:, :n_in] * spec.input.unit, spec.weight),  # per input unit
        w_rec=fake_quant(gain * weight[:, n_in:] * model.recurrent_mask.double(), spec.rec_weight),
        w_out=fake_quant((1.0 - alpha)[:, None] * model.readout.weight.double(), spec.out_weight),
        alpha=fake_quant(alpha, spec.coef),
        neuron=kind.quantize(model, spec, fake_quant),
    )


def to_int_network(model, spec: FixedSpec, readout: Readout = Readout()) -> IntNetwork:
    """A float (or QAT) model in the integers of ``spec``, read by ``readout``: the network the
    golden model and the accelerator run (the QAT forward of the same model computes exactly it)."""
    with torch.no_grad():
        p = quantized_parameters(model, spec)
    ints = {k: _ints(v) for k, v in (*p._asdict().items(), *p.neuron.items()) if k != "neuron"}
    return IntNetwork(spec=spec, readout=readout, neuron=model.config.neuron.kind, **ints,
                      **neuron_kind(model).scalar_constants(model, spec))


def _ints(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.int64)


def _dequantized(z, states, state_frac: int):
    """The integer trajectory as the float adjoints take it: spikes as float64, states / 2^frac."""
    sf = float(2.0 ** state_frac)
    return torch.from_numpy(z.astype(np.float64)), [torch.from_numpy(a / sf) for a in states]


def _recurrent_weight_grad(g_i: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """dW_rec = sum_t gI_t z_{t-1}^T, one matmul (the kernels that leave it to the caller)."""
    n = z.shape[-1]
    return g_i[1:].reshape(-1, n).t() @ z[:-1].reshape(-1, n)


class QATResonator(torch.autograd.Function):
    """Integer resonator forward; the float adjoints of the same kind (q_mode) on the dequantized
    trajectory backward."""

    @staticmethod
    def forward(ctx, i_in, w_rec_eff, omega_eff, b0_eff, acc_in, w_rec, d, c, constants, float_consts):
        u, v, q, z = kernel.resonator_forward_int(acc_in, w_rec, d, c, *constants)
        zf, (uf, vf, qf) = _dequantized(z, (u, v, q), float_consts["state_frac"])
        ctx.save_for_backward(uf, vf, qf, zf, w_rec_eff, omega_eff, b0_eff)
        ctx.float_consts = float_consts
        ctx.mark_non_differentiable(uf, vf, qf)
        return zf, uf, vf, qf

    @staticmethod
    def backward(ctx, grad_z, _gu, _gv, _gq):
        u, v, q, z, w_rec, omega, b0 = ctx.saved_tensors
        fc = ctx.float_consts
        g_i, g_w, g_omega, g_b0 = (torch.from_numpy(a) for a in cpu_resonator.resonator_backward(
            grad_z.detach().double().contiguous().numpy(), u.numpy(), v.numpy(), q.numpy(), z.numpy(),
            w_rec.detach().numpy(), omega.detach().numpy(), b0.detach().numpy(), fc["dt"], fc["theta"],
            fc["gamma"], fc["q_mode"], cpu_resonator.SURROGATE_CODES[fc["surrogate"]], fc["tbptt"]))
        return g_i, g_w, g_omega, g_b0, None, None, None, None, None, None


class QATHarmonic(torch.autograd.Function):
    """Integer BHRF forward; the float BHRF adjoints (``cpu_bhrf``) on the dequantized trajectory
    backward, v = y / omega (y = omega*v is the integer state; where omega quantized to 0, y stays 0
    and so does v)."""

    @staticmethod
    def forward(ctx, i_in, w_rec_eff, w2_eff, b0_eff, acc_in, w_rec, d, c, constants, float_consts):
        u, y, q, z = kernel.resonator_forward_int(acc_in, w_rec, d, c, *constants, kernel.HARMONIC)
        zf, (uf, yf, qf) = _dequantized(z, (u, y, q), float_consts["state_frac"])
        omega = w2_eff.detach().sqrt()
        vf = torch.where(omega > 0, yf / torch.where(omega > 0, omega, 1.0), 0.0)
        ctx.save_for_backward(uf, vf, qf, zf, w_rec_eff, w2_eff, b0_eff)
        ctx.float_consts = float_consts
        ctx.mark_non_differentiable(uf, yf, qf)
        return zf, uf, yf, qf

    @staticmethod
    def backward(ctx, grad_z, _gu, _gy, _gq):
        from ..kernels import cpu_bhrf

        u, v, q, z, w_rec, w2, b0 = ctx.saved_tensors
        fc = ctx.float_consts
        g_i, g_w2, g_b0 = (torch.from_numpy(a) for a in cpu_bhrf.bhrf_backward(
            grad_z.detach().double().contiguous().numpy(), u.numpy(), v.numpy(), q.numpy(), z.numpy(),
            w_rec.detach().numpy(), w2.detach().numpy(), b0.detach().numpy(), fc["dt"], 2.0 * fc["dt"],
            fc["theta"], fc["gamma"], cpu_resonator.SURROGATE_CODES[fc["surrogate"]], fc["tbptt"]))
        return g_i, _recurrent_weight_grad(g_i, z), g_w2, g_b0, None, None, None, None, None, None


class QATAdaptive(torch.autograd.Function):
    """Integer ALIF / LIF forward; the float ALIF adjoints (``cpu_alif``) on the dequantized
    trajectory backward, of the folded current (the weights hold (1 - alpha_m) W)."""

    @staticmethod
    def forward(ctx, i_in, w_rec_eff, alpha_eff, rho_eff, acc_in, w_rec, alpha_m, rho, constants, float_consts):
        u, a_next, z = kernel.adaptive_forward_int(acc_in, w_rec, alpha_m, rho, *constants)
        zf, (uf, af) = _dequantized(z, (u, a_next), float_consts["state_frac"])
        # the float kernel's a_t is the adaptation step t uses: the integer state after step t - 1
        a_used = torch.cat([torch.zeros_like(af[:1]), af[:-1]])
        hf = uf + zf * (float_consts["theta0"] + float_consts["beta"] * a_used)  # before the soft reset
        ctx.save_for_backward(uf, hf, a_used, zf, w_rec_eff, alpha_eff, rho_eff)
        ctx.float_consts = float_consts
        ctx.mark_non_differentiable(uf, af)
        return zf, uf, af

    @staticmethod
    def backward(ctx, grad_z, _gu, _ga):
        from ..kernels import cpu_alif

        u, h, a, z, w_rec, alpha, rho = ctx.saved_tensors
        fc = ctx.float_consts
        g_i, g_alpha, g_rho = (torch.from_numpy(v) for v in cpu_alif.alif_backward(
            grad_z.detach().double().contiguous().numpy(), u.numpy(), h.numpy(), a.numpy(), z.numpy(),
            np.zeros_like(u.numpy()), w_rec.detach().numpy(), alpha.detach().numpy(), rho.detach().numpy(),
            fc["theta0"], fc["beta"], cpu_resonator.SURROGATE_CODES[fc["surrogate"]], fc["tbptt"], True))
        return g_i, _recurrent_weight_grad(g_i, z), g_alpha, g_rho, None, None, None, None, None, None


class QATReadout(torch.autograd.Function):
    """Integer LI forward; straight-through o_t = alpha o_{t-1} + y_t backward."""

    @staticmethod
    def forward(ctx, y, alpha_eff, acc_o, alpha, constants, output_frac):
        o = torch.from_numpy(kernel.li_forward_int(acc_o, alpha, *constants) / 2.0**output_frac)
        ctx.save_for_backward(o, alpha_eff)
        return o

    @staticmethod
    def backward(ctx, grad_o):
        o, alpha = ctx.saved_tensors
        g_y, g_alpha = kernel.li_backward_ste(grad_o.detach().double().contiguous().numpy(), o.numpy(),
                                              alpha.detach().numpy())
        return torch.from_numpy(g_y), torch.from_numpy(g_alpha), None, None, None, None


def qat_forward(model, x: torch.Tensor, spec: FixedSpec):
    """The integer network on x [T, B, inputs] (whole multiples of the input unit: spikes, or
    pixel intensities), differentiable by STE. Returns (o, z, states) as float64, o and the
    kind's states (u, v, q; BHRF u, y, q; ALIF u, a) dequantized; they are exact integer multiples."""
    if x.device.type != "cpu":
        raise RuntimeError("quantization-aware training runs on the CPU (the integer kernel is numba)")
    kind = neuron_kind(model)
    x_int = spec.input.integers(x.detach().numpy())
    x = torch.from_numpy(x_int.astype(np.float64)) * spec.input.unit  # what the integers mean
    p = quantized_parameters(model, spec)
    gain = kind.input_gain(model)
    # effective float weights on the quantization grid: what the STE backward differentiates. The
    # resonators' dt is divided out (their adjoints take I); ALIF's (1 - alpha_m) stays in, its
    # adjoints take the folded current (``cpu_alif.alif_backward``'s ``folded``)
    unfold = 1.0 if isinstance(gain, torch.Tensor) else gain
    w_in_eff = p.w_in / (spec.weight.scale * unfold * spec.input.unit)
    w_rec_eff = p.w_rec / (spec.rec_weight.scale * unfold)
    i_in = x @ w_in_eff.t()
    w_in_int, w_rec_int = spec.align(_ints(p.w_in), _ints(p.w_rec))  # on the accumulator's fraction
    steps, batch, n_in = x_int.shape
    acc_in = event_matmul(x_int.reshape(-1, n_in), w_in_int)
    acc_in = np.ascontiguousarray(acc_in.reshape(steps, batch, -1))  # exact integer input sums, [T, B, H]
    hidden = HIDDEN_LAYERS[type(kind).__name__]
    z, states = hidden(model, kind, spec, p, i_in, w_rec_eff, acc_in, w_rec_int)
    y = z @ (p.w_out / spec.out_weight.scale).t()
    acc_o = np.ascontiguousarray(z.detach().numpy().astype(np.int64) @ _ints(p.w_out).T)
    o_consts = (spec.output.min_int, spec.output.max_int, spec.coef.frac, spec.out_weight_shift)
    o = QATReadout.apply(y, p.alpha / spec.coef.scale, acc_o, _ints(p.alpha), o_consts, spec.output.frac)
    return o, z, states


def _uvq_constants(model, kind, spec) -> tuple[tuple, dict]:
    """The integer step's scalars after d, c (before q_mode) and the float adjoints' constants, of
    the kinds with the resonators' fields (BRF, its ablations, RF, BHRF)."""
    cfg = model.config.neuron
    k = kind.scalar_constants(model, spec)
    s, cq = spec.state, spec.coef
    constants = (k["dtq"], k["gamma"], k["theta"], s.min_int, s.max_int, cq.min_int, cq.max_int, cq.frac, s.frac,
                 spec.weight_shift)
    float_consts = {"dt": cfg.dt, "theta": k["theta"] / s.scale, "gamma": k["gamma"] / cq.scale,
                    "surrogate": cfg.surrogate, "tbptt": model.tbptt, "state_frac": s.frac, "q_mode": kind.q_mode}
    return constants, float_consts


def _resonator_hidden(model, kind, spec, p, i_in, w_rec_eff, acc_in, w_rec_int):
    dt, cf = model.config.neuron.dt, spec.coef.scale
    d, c = p.neuron["d"], p.neuron["c"]
    omega_eff = c / (cf * dt)
    b0_eff = (d / cf - 1.0) / dt
    constants, float_consts = _uvq_constants(model, kind, spec)
    z, u, v, q = QATResonator.apply(i_in, w_rec_eff, omega_eff, b0_eff, acc_in, w_rec_int, _ints(d), _ints(c),
                                    (*constants, kind.q_mode), float_consts)
    return z, {"u": u, "v": v, "q": q}


def _harmonic_hidden(model, kind, spec, p, i_in, w_rec_eff, acc_in, w_rec_int):
    """BHRF: d = 1 - 2 dt b0, c = dt omega (``kinds.harmonic``) give the adjoints' omega^2 and b0."""
    dt, cf = model.config.neuron.dt, spec.coef.scale
    d, c = p.neuron["d"], p.neuron["c"]
    w2_eff = (c / (cf * dt)) ** 2
    b0_eff = (1.0 - d / cf) / (2.0 * dt)
    constants, float_consts = _uvq_constants(model, kind, spec)
    z, u, y, q = QATHarmonic.apply(i_in, w_rec_eff, w2_eff, b0_eff, acc_in, w_rec_int, _ints(d), _ints(c),
                                   constants, float_consts)
    return z, {"u": u, "y": y, "q": q}


def _adaptive_hidden(model, kind, spec, p, i_in, w_rec_eff, acc_in, w_rec_int):
    cfg = model.config.neuron
    cf = spec.coef.scale
    alpha_m = p.neuron["alpha_m"]
    # LIF: no adaptation, as the float kernel runs it (beta = 0, rho = 1: a stays 0)
    rho = p.neuron["rho"] if kind.adapt else torch.full_like(alpha_m, cf)
    k = kind.scalar_constants(model, spec)
    s = spec.state
    beta = k.get("beta", 0)
    constants = (k["theta0"], beta, s.min_int, s.max_int, spec.coef.frac, s.frac, spec.weight_shift, int(kind.adapt))
    float_consts = {"theta0": k["theta0"] / s.scale, "beta": beta / cf, "surrogate": cfg.surrogate,
                    "tbptt": model.tbptt, "state_frac": s.frac}
    z, u, a = QATAdaptive.apply(i_in, w_rec_eff, alpha_m / cf, rho / cf, acc_in, w_rec_int, _ints(alpha_m),
                                _ints(rho), constants, float_consts)
    return z, ({"u": u, "a": a} if kind.adapt else {"u": u})


HIDDEN_LAYERS = {"ResonatorKind": _resonator_hidden, "HarmonicKind": _harmonic_hidden,
                 "AdaptiveKind": _adaptive_hidden}
