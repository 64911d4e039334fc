"""Quantization-aware training of BRF networks (and its ablations and RF, ``fixed.kinds``).

Forward: the exact integer network (``kernel`` running ``arith``), so training sees the
hardware's spikes and potentials. Backward: straight-through estimation. Parameters are
quantized with STE (round and clip pass the gradient inside the range), and the integer
dynamics are differentiated as the float BRF equations evaluated on the integer trajectory and
the quantized parameters (the float adjoint kernel, ``kernels.cpu_resonator``).

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
    """Integer-valued float64 tensors (their gradients flow to the float parameters by STE)."""

    w_in: torch.Tensor
    w_rec: torch.Tensor
    w_out: torch.Tensor
    d: torch.Tensor
    c: torch.Tensor
    alpha: torch.Tensor


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
    dt = model.config.neuron.dt
    neuron = kind.quantize(model, spec, fake_quant)
    n_in = model.config.inputs
    weight = model.synapses.weight.double()
    alpha = decay(model.output.tau_o.double())
    return QuantParams(
        w_in=fake_quant(dt * weight[:, :n_in] * spec.input.unit, spec.weight),  # per input unit
        w_rec=fake_quant(dt * weight[:, n_in:] * model.recurrent_mask.double(), spec.rec_weight),
        w_out=fake_quant((1.0 - alpha)[:, None] * model.readout.weight.double(), spec.out_weight),
        d=neuron["d"],
        c=neuron["c"],
        alpha=fake_quant(alpha, spec.coef),
    )


def scalar_constants(model, spec: FixedSpec) -> tuple[int, int, int]:
    """dt and gamma in the coefficient format, theta in the state format (must fit exactly)."""
    c = neuron_kind(model).scalar_constants(model, spec)
    return c["dtq"], c["gamma"], c["theta"]


def to_int_network(model, spec: FixedSpec, readout: Readout = Readout()) -> IntNetwork:
    """A float (or QAT) BRF model in the integers of ``spec``, read by ``readout``: the network the
    golden model and the accelerator run (the QAT forward of the same model computes exactly it)."""
    with torch.no_grad():
        p = quantized_parameters(model, spec)
    ints = {k: v.detach().cpu().numpy().astype(np.int64) for k, v in p._asdict().items()}
    dtq, gamma, theta = scalar_constants(model, spec)
    return IntNetwork(spec=spec, dtq=dtq, gamma=gamma, theta=theta, readout=readout,
                      neuron=model.config.neuron.kind, **ints)


def _ints(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.int64)


class QATResonator(torch.autograd.Function):
    """Integer resonator forward; the float adjoints of the same kind (q_mode) on the dequantized
    trajectory backward."""

    @staticmethod
    def forward(ctx, i_in, w_rec_eff, omega_eff, b0_eff, acc_in, w_rec, d, c, constants, float_consts):
        u, v, q, z = kernel.resonator_forward_int(acc_in, w_rec, d, c, *constants)
        sf = float(2.0 ** float_consts["state_frac"])
        uf, vf, qf = (torch.from_numpy(a / sf) for a in (u, v, q))
        zf = torch.from_numpy(z.astype(np.float64))
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
    pixel intensities), differentiable by STE. Returns (o, z, u, v, q) as float64, o/u/v/q
    dequantized; they are exact integer multiples."""
    if x.device.type != "cpu":
        raise RuntimeError("quantization-aware training runs on the CPU (the integer kernel is numba)")
    cfg = model.config.neuron
    dt = cfg.dt
    x_int = spec.input.integers(x.detach().numpy())
    x = torch.from_numpy(x_int.astype(np.float64)) * spec.input.unit  # what the integers mean
    p = quantized_parameters(model, spec)
    cf = spec.coef.scale
    # effective float parameters on the quantization grid: what the STE backward differentiates
    w_in_eff = p.w_in / (spec.weight.scale * dt * spec.input.unit)
    w_rec_eff = p.w_rec / (spec.rec_weight.scale * dt)
    omega_eff = p.c / (cf * dt)
    b0_eff = (p.d / cf - 1.0) / dt
    i_in = x @ w_in_eff.t()
    w_in_int, w_rec_int = spec.align(_ints(p.w_in), _ints(p.w_rec))  # on the accumulator's fraction
    steps, batch, n_in = x_int.shape
    acc_in = event_matmul(x_int.reshape(-1, n_in), w_in_int)
    acc_in = acc_in.reshape(steps, batch, -1)  # exact integer input sums, [T, B, H]
    dtq, gamma, theta = scalar_constants(model, spec)
    s, c = spec.state, spec.coef
    q_mode = neuron_kind(model).q_mode
    constants = (dtq, gamma, theta, s.min_int, s.max_int, c.min_int, c.max_int, c.frac, s.frac,
                 spec.weight_shift, q_mode)
    float_consts = {"dt": dt, "theta": theta / s.scale, "gamma": gamma / c.scale,
                    "surrogate": cfg.surrogate, "tbptt": model.tbptt, "state_frac": s.frac,
                    "q_mode": q_mode}
    z, u, v, q = QATResonator.apply(i_in, w_rec_eff, omega_eff, b0_eff, np.ascontiguousarray(acc_in),
                                    w_rec_int, _ints(p.d), _ints(p.c), constants, float_consts)
    y = z @ (p.w_out / spec.out_weight.scale).t()
    acc_o = np.ascontiguousarray(z.detach().numpy().astype(np.int64) @ _ints(p.w_out).T)
    o_consts = (spec.output.min_int, spec.output.max_int, c.frac, spec.out_weight_shift)
    o = QATReadout.apply(y, p.alpha / cf, acc_o, _ints(p.alpha), o_consts, spec.output.frac)
    return o, z, u, v, q
