"""autograd.Functions around the compiled CPU kernels: the whole sequence in one forward call and
one backward call, instead of T small autograd nodes per tensor operation.

``FusedNetworkCPU`` is what training runs: input projection, hidden layer, readout and LI output in
one Function, so that every weight gradient (W_in, W_rec, W_out, omega, b0, alpha) is summed over
time and batch by the kernel in a fixed order. torch's matmul would split those long sums (T x B
terms) by its thread count and change their low bits with it. ``FusedResonatorCPU`` and
``FusedLICPU`` are the hidden layer and the LI readout on their own (tests, tools).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from . import cpu_resonator as cpu


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _Buffers:
    """Reuses the big per-step state arrays (u, v, q, z: 4 x T x B x H) across batches.

    Fresh memory costs a page fault per 4 KiB on first write: for an S-MNIST batch (4 x 205 MB)
    that was ~0.7 s of CPU time, more than the forward's arithmetic. An array is handed out again
    only once nothing but this pool refers to it (every tensor made from it has been freed), and
    only arrays of the most recently requested shape are kept, at most ``keep`` of them."""

    keep = 8

    def __init__(self):
        self.shape_key = None
        self.free_list: list[np.ndarray] = []

    def take(self, shape, dtype, count: int) -> list[np.ndarray]:
        key = (tuple(shape), np.dtype(dtype))
        if key != self.shape_key:
            self.shape_key, self.free_list = key, []
        idle = [a for a in self.free_list if sys.getrefcount(a) <= 3]  # the list, `a`, the call
        taken = idle[:count]
        while len(taken) < count:
            fresh = np.empty(shape, dtype)
            if len(self.free_list) < self.keep:
                self.free_list.append(fresh)
            taken.append(fresh)
        return taken


_buffers = _Buffers()


class FusedNetworkCPU(torch.autograd.Function):
    """(x [T,B,I], W_in [H,I], W_rec [H,H], omega, b0, W_out [O,H], alpha [O]) -> o [T,B,O], z
    [T,B,H], spikes per step [T,B] (z summed over neurons), u, v, q [T,B,H]. u, v, q are not
    differentiable; z and the spike counts are (a spike penalty reaches them directly).
    Unless ``record``, u, v, q come back as the kernel keeps them (flat, block-major): the [T, B, H]
    copies cost a pass over memory that training does not need."""

    @staticmethod
    def forward(ctx, x, w_in, w_rec, omega, b0, w_out, alpha, dt, theta, gamma, q_mode, surrogate, tbptt,
                record=True):
        x_np = _np(x)
        dtype = x_np.dtype
        steps, batch, _ = x_np.shape
        n, n_out = w_rec.shape[0], w_out.shape[0]
        consts = cpu.constants(dtype, dt, theta, gamma)
        u, v, q, z = _buffers.take((steps * batch * n,), dtype, 4)
        z = z.reshape(steps, batch, n)
        d, o = np.empty((steps, batch, n_out), dtype), np.empty((steps, batch, n_out), dtype)
        counts = np.empty((steps, batch), dtype)
        cpu.network_forward(x_np, _np(w_in.t()), _np(w_rec.t()), _np(omega), _np(b0), _np(w_out.t()),
                            _np(alpha), consts, q_mode, u, v, q, z, d, o, counts)
        u, v, q, z, d, o, counts = (torch.from_numpy(a) for a in (u, v, q, z, d, o, counts))
        ctx.save_for_backward(x, w_in, w_rec, omega, b0, w_out, alpha, u, v, q, z, d, o)
        ctx.constants = (consts, q_mode, cpu.SURROGATE_CODES[surrogate], tbptt)
        if record:
            u, v, q = (torch.from_numpy(cpu.to_time_major(a.numpy(), steps, batch, n)) for a in (u, v, q))
        ctx.mark_non_differentiable(u, v, q)
        ctx.set_materialize_grads(False)
        return o, z, counts, u, v, q

    @staticmethod
    def backward(ctx, grad_o, grad_z, grad_counts, _gu, _gv, _gq):
        x, w_in, w_rec, omega, b0, w_out, alpha, u, v, q, z, d, o = ctx.saved_tensors
        consts, q_mode, code, tbptt = ctx.constants
        dtype = consts.dtype
        if grad_o is None:
            g_d, g_alpha = np.zeros(d.shape, dtype), np.zeros(alpha.shape, dtype)
        else:
            g_d, alpha_parts = cpu.li_backward(_np(grad_o), o.numpy(), d.numpy(), _np(alpha), consts)
            g_alpha = cpu.sum_parts(alpha_parts)
        g_i, g_w_in, g_w_rec, g_omega, g_b0, g_w_out = cpu.network_backward(
            np.zeros((0, 0, 0), dtype) if grad_z is None else _np(grad_z),
            np.zeros((0, 0), dtype) if grad_counts is None else _np(grad_counts), g_d, _np(w_out), u.numpy(),
            v.numpy(), q.numpy(), z.numpy(), _np(x), _np(w_rec), _np(omega), _np(b0), consts, q_mode,
            code, tbptt, cpu.block_rows(z.shape[1]), ctx.needs_input_grad[0], True, *cpu.blas(dtype))
        grad_x = torch.from_numpy(g_i) @ w_in.detach() if ctx.needs_input_grad[0] else None
        grads = (g_w_in, g_w_rec, g_omega, g_b0, g_w_out, g_alpha)
        return (grad_x, *(torch.from_numpy(g) for g in grads), None, None, None, None, None, None, None)


class FusedResonatorCPU(torch.autograd.Function):
    """Hidden BRF / RF layer over a sequence: (I_in [T,B,H], W_rec, omega, b0) -> z, u, v, q."""

    @staticmethod
    def forward(ctx, i_in, w_rec, omega, b0, dt, theta, gamma, q_mode, surrogate, tbptt):
        u, v, q, z = (torch.from_numpy(a) for a in cpu.resonator_forward(
            _np(i_in), _np(w_rec), _np(omega), _np(b0), dt, theta, gamma, q_mode))
        ctx.save_for_backward(u, v, q, z, w_rec, omega, b0)
        ctx.constants = (dt, theta, gamma, q_mode, cpu.SURROGATE_CODES[surrogate], tbptt)
        ctx.mark_non_differentiable(u, v, q)
        return z, u, v, q

    @staticmethod
    def backward(ctx, grad_z, _gu, _gv, _gq):
        u, v, q, z, w_rec, omega, b0 = ctx.saved_tensors
        grads = cpu.resonator_backward(_np(grad_z), u.numpy(), v.numpy(), q.numpy(), z.numpy(), _np(w_rec),
                                       _np(omega), _np(b0), *ctx.constants)
        return (*(torch.from_numpy(g) for g in grads), None, None, None, None, None, None)


class FusedLICPU(torch.autograd.Function):
    """LI readout over a sequence: (drive [T,B,O], alpha [O]) -> o [T,B,O]."""

    @staticmethod
    def forward(ctx, drive, alpha):
        consts = cpu.constants(_np(drive).dtype, 0.0, 0.0, 0.0)
        out = torch.from_numpy(cpu.li_forward(_np(drive), _np(alpha), consts))
        ctx.save_for_backward(out, drive, alpha)
        ctx.consts = consts
        return out

    @staticmethod
    def backward(ctx, grad_o):
        out, drive, alpha = ctx.saved_tensors
        g_drive, parts = cpu.li_backward(_np(grad_o), _np(out), _np(drive), _np(alpha), ctx.consts)
        return torch.from_numpy(g_drive), torch.from_numpy(cpu.sum_parts(parts))


class FusedALIFCPU(torch.autograd.Function):
    """Hidden ALIF / LIF layer over a sequence (``cpu_alif``): (I_in [T,B,H], W_rec, alpha, rho) ->
    z, u, a. LIF: beta = 0 and rho = 1 (a stays 0)."""

    @staticmethod
    def forward(ctx, i_in, w_rec, alpha, rho, theta0, beta, surrogate, tbptt):
        from . import cpu_alif

        dtype = _np(i_in).dtype.type
        consts = (dtype(theta0), dtype(beta))
        u, h, a, z, cur = cpu_alif.alif_forward(_np(i_in), _np(w_rec), _np(alpha), _np(rho), *consts)
        u, h, a, z, cur = (torch.from_numpy(t) for t in (u, h, a, z, cur))
        ctx.save_for_backward(u, h, a, z, cur, w_rec, alpha, rho)
        ctx.constants = (*consts, cpu.SURROGATE_CODES[surrogate], tbptt)
        ctx.mark_non_differentiable(u, a)
        ctx.set_materialize_grads(False)
        return z, u, a

    @staticmethod
    def backward(ctx, grad_z, _gu, _ga):
        from . import cpu_alif

        u, h, a, z, cur, w_rec, alpha, rho = ctx.saved_tensors
        if grad_z is None:
            grad_z = torch.zeros_like(z)
        g_i, g_alpha, g_rho = cpu_alif.alif_backward(
            _np(grad_z), u.numpy(), h.numpy(), a.numpy(), z.numpy(), cur.numpy(), _np(w_rec), _np(alpha),
            _np(rho), *ctx.constants)
        g_i = torch.from_numpy(g_i)
        n = z.shape[-1]
        g_w = g_i[1:].reshape(-1, n).t() @ z[:-1].reshape(-1, n)  # dW_rec = sum_t gI_t z_{t-1}^T
        return g_i, g_w, torch.from_numpy(g_alpha), torch.from_numpy(g_rho), None, None, None, None


class FusedBHRFCPU(torch.autograd.Function):
    """Hidden BHRF layer over a sequence (``cpu_bhrf``): (I_in [T,B,H], W_rec, w2 = omega^2,
    b0 = dt/2 omega^2 + b_offset) -> z, u, v, q."""

    @staticmethod
    def forward(ctx, i_in, w_rec, w2, b0, dt, theta, gamma, surrogate, tbptt):
        from . import cpu_bhrf

        dtype = _np(i_in).dtype.type
        consts = (dtype(dt), dtype(2.0 * dt), dtype(theta), dtype(gamma))
        u, v, q, z = (torch.from_numpy(t) for t in cpu_bhrf.bhrf_forward(_np(i_in), _np(w_rec), _np(w2), _np(b0),
                                                                         *consts))
        ctx.save_for_backward(u, v, q, z, w_rec, w2, b0)
        ctx.constants = (*consts, cpu.SURROGATE_CODES[surrogate], tbptt)
        ctx.mark_non_differentiable(u, v, q)
        ctx.set_materialize_grads(False)
        return z, u, v, q

    @staticmethod
    def backward(ctx, grad_z, _gu, _gv, _gq):
        from . import cpu_bhrf

        u, v, q, z, w_rec, w2, b0 = ctx.saved_tensors
        if grad_z is None:
            grad_z = torch.zeros_like(z)
        g_i, g_w2, g_b0 = cpu_bhrf.bhrf_backward(_np(grad_z), u.numpy(), v.numpy(), q.numpy(), z.numpy(),
                                                 _np(w_rec), _np(w2), _np(b0), *ctx.constants)
        g_i = torch.from_numpy(g_i)
        n = z.shape[-1]
        g_w = g_i[1:].reshape(-1, n).t() @ z[:-1].reshape(-1, n)  # dW_rec = sum_t gI_t z_{t-1}^T
        return g_i, g_w, torch.from_numpy(g_w2), torch.from_numpy(g_b0), None, None, None, None, None
