"""autograd.Functions around the compiled kernels: the whole sequence in one forward call and one
backward call, instead of T small autograd nodes per tensor operation."""

from __future__ import annotations

import torch

from . import cpu_resonator as cpu


def _np(t: torch.Tensor):
    return t.detach().contiguous().numpy()


class FusedResonatorCPU(torch.autograd.Function):
    """Hidden BRF / RF layer over a sequence: (I_in [T,B,H], W_rec, omega, b0) -> z, u, v, q."""

    @staticmethod
    def forward(ctx, i_in, w_rec, omega, b0, dt, theta, gamma, refractory, surrogate, tbptt):
        u, v, q, z = (torch.from_numpy(a) for a in cpu.resonator_forward(
            _np(i_in), _np(w_rec), _np(omega), _np(b0), dt, theta, gamma, refractory))
        ctx.save_for_backward(u, v, q, z, w_rec, omega, b0)
        ctx.constants = (dt, theta, gamma, refractory, cpu.SURROGATE_CODES[surrogate], tbptt)
        ctx.mark_non_differentiable(u, v, q)
        return z, u, v, q

    @staticmethod
    def backward(ctx, grad_z, _gu, _gv, _gq):
        u, v, q, z, w_rec, omega, b0 = ctx.saved_tensors
        dt, theta, gamma, refractory, code, tbptt = ctx.constants
        g_i, g_w, g_omega, g_b0 = (torch.from_numpy(a) for a in cpu.resonator_backward(
            _np(grad_z), _np(u), _np(v), _np(q), _np(z), _np(w_rec), _np(omega), _np(b0),
            dt, theta, gamma, refractory, code, tbptt))
        return g_i, g_w, g_omega, g_b0, None, None, None, None, None, None


class FusedLICPU(torch.autograd.Function):
    """LI readout over a sequence: (drive [T,B,O], alpha [O]) -> o [T,B,O]."""

    @staticmethod
    def forward(ctx, drive, alpha):
        out = torch.from_numpy(cpu.li_forward(_np(drive), _np(alpha)))
        ctx.save_for_backward(out, drive, alpha)
        return out

    @staticmethod
    def backward(ctx, grad_o):
        out, drive, alpha = ctx.saved_tensors
        g_drive, g_alpha = cpu.li_backward(_np(grad_o), _np(out), _np(drive), _np(alpha))
        return torch.from_numpy(g_drive), torch.from_numpy(g_alpha)
