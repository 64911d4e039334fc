"""Fused BPTT for BRF / RF hidden layers on the GPU (Triton).

Same equations and adjoints as ``cpu_resonator`` (see its docstring). Each program owns BLOCK_B
sequences of the batch and all hidden neurons and runs the whole sequence in one launch; the
recurrent current z_{t-1} W_rec^T is a tiled ``tl.dot`` over the spikes just written to global
memory (L2-resident), so nothing leaves the chip between steps but the saved states. The weight
gradient sum_t gI_t^T z_{t-1} is one GEMM after the backward kernel.

Runs on CUDA; with TRITON_INTERPRET=1 the same kernels run on CPU tensors (how the tests check
them on machines without a GPU).
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - depends on the installation
    triton = None
    _IMPORT_ERROR = str(exc)
else:
    _IMPORT_ERROR = ""

from .cpu_resonator import SURROGATE_CODES
from ..neurons.surrogate import GAIN, HEIGHT, SCALE, WIDTH

BLOCK_B = 16  # tl.dot needs at least 16 rows
BK = 16  # reduction tile over the hidden dimension
LI_BLOCK = 128


def unavailable_reason() -> str | None:
    if triton is None:
        return f"the GPU kernel needs triton ({_IMPORT_ERROR})"
    return None


def _h_pad(n: int) -> int:
    return max(16, triton.next_power_of_2(n))


if triton is not None:
    # compiled Triton reads a module global only when it is a tl.constexpr (the interpreter reads any)
    _INV_SQRT_2PI = tl.constexpr(0.3989422804014327)
    _GAIN, _HEIGHT, _SCALE, _WIDTH = (tl.constexpr(c) for c in (GAIN, HEIGHT, SCALE, WIDTH))

    @triton.jit
    def _normal(x, mu, sigma):
        d = (x - mu) / sigma
        return tl.exp(-0.5 * d * d) * (_INV_SQRT_2PI / sigma)

    @triton.jit
    def _surrogate(x, SURROGATE: tl.constexpr):
        narrow = (1.0 + _HEIGHT) * _normal(x, 0.0, _WIDTH)
        if SURROGATE == 0:
            out = _GAIN * (narrow - 2.0 * _HEIGHT * _normal(x, 0.0, _SCALE * _WIDTH))
        else:
            out = _GAIN * (narrow - _HEIGHT * _normal(x, _WIDTH, _SCALE * _WIDTH)
                          - _HEIGHT * _normal(x, -_WIDTH, _SCALE * _WIDTH))
        return out

    @triton.jit
    def _block(pid, B, H, omega_p, b0_p, BLOCK: tl.constexpr, H_PAD: tl.constexpr):
        """This program's rows (sequences) and columns (neurons), their masks and offsets into
        [B, H] step slices, and the per-neuron omega and b0 as [1, H_PAD] rows."""
        rb = pid * BLOCK + tl.arange(0, BLOCK)
        rh = tl.arange(0, H_PAD)
        mb = rb < B
        mh = rh < H
        m2 = mb[:, None] & mh[None, :]
        off = rb[:, None] * H + rh[None, :]
        omega = tl.load(omega_p + rh, mask=mh, other=0.0)[None, :]
        b0 = tl.load(b0_p + rh, mask=mh, other=0.0)[None, :]
        return rb, rh, mb, mh, m2, off, omega, b0

    @triton.jit
    def _resonator_fwd(i_in, w_t, omega_p, b0_p, u_out, v_out, q_out, z_out,
                       T, B, H, dt, theta, gamma,
                       Q_MODE: tl.constexpr, BLOCK: tl.constexpr, H_PAD: tl.constexpr,
                       K_TILE: tl.constexpr):
        rb, rh, mb, mh, m2, off, omega, b0 = _block(tl.program_id(0), B, H, omega_p, b0_p, BLOCK, H_PAD)
        zero = tl.zeros([BLOCK, H_PAD], dtype=i_in.dtype.element_ty)
        u = zero
        v = zero
        q = zero
        for t in range(0, T):
            rec = zero
            for k0 in tl.static_range(0, H_PAD, K_TILE):
                rk = k0 + tl.arange(0, K_TILE)
                zc = tl.load(z_out + tl.maximum(t - 1, 0) * B * H + rb[:, None] * H + rk[None, :],
                             mask=mb[:, None] & (rk[None, :] < H), other=0.0)
                zc = tl.where(t > 0, zc, 0.0)
                wc = tl.load(w_t + rk[:, None] * H + rh[None, :],
                             mask=(rk[:, None] < H) & mh[None, :], other=0.0)
                rec += tl.dot(zc, wc, input_precision="ieee")
            current = tl.load(i_in + t * B * H + off, mask=m2, other=0.0) + rec
            b = b0
            if Q_MODE & 1:  # smooth reset
                b = b0 - q
            u_new = u + dt * (b * u - omega * v + current)
            v = v + dt * (omega * u + b * v)
            u = u_new
            s = u_new - theta
            if Q_MODE & 2:  # refractory period
                s = u_new - theta - q
            z = tl.where(s > 0.0, 1.0, 0.0).to(u.dtype)
            if Q_MODE != 0:
                q = gamma * q + z
            tl.store(u_out + t * B * H + off, u, mask=m2)
            tl.store(v_out + t * B * H + off, v, mask=m2)
            tl.store(q_out + t * B * H + off, q, mask=m2)
            tl.store(z_out + t * B * H + off, z, mask=m2)
            tl.debug_barrier()  # the next step reads these spikes back in tiles

    @triton.jit
    def _resonator_bwd(grad_z, u_s, v_s, q_s, w, omega_p, b0_p, grad_i, part_omega, part_b0,
                       T, B, H, dt, theta, gamma, TBPTT,
                       Q_MODE: tl.constexpr, SURROGATE: tl.constexpr, BLOCK: tl.constexpr,
                       H_PAD: tl.constexpr, K_TILE: tl.constexpr):
        pid = tl.program_id(0)
        rb, rh, mb, mh, m2, off, omega, b0 = _block(pid, B, H, omega_p, b0_p, BLOCK, H_PAD)
        zero = tl.zeros([BLOCK, H_PAD], dtype=grad_z.dtype.element_ty)
        gu = zero
        gv = zero
        gq = zero
        gz_rec = zero
        acc_omega = zero
        acc_b0 = zero
        for i in range(0, T):
            t = T - 1 - i
            if TBPTT > 0:
                keep = ((t + 1) % TBPTT != 0) | (t == T - 1)
                gu = tl.where(keep, gu, 0.0)
                gv = tl.where(keep, gv, 0.0)
                gq = tl.where(keep, gq, 0.0)
                gz_rec = tl.where(keep, gz_rec, 0.0)
            prev = tl.maximum(t - 1, 0) * B * H + off  # step t-1; state before step 0 is zero
            u_prev = tl.where(t > 0, tl.load(u_s + prev, mask=m2, other=0.0), 0.0)
            v_prev = tl.where(t > 0, tl.load(v_s + prev, mask=m2, other=0.0), 0.0)
            q_prev = zero
            if Q_MODE != 0:
                q_prev = tl.where(t > 0, tl.load(q_s + prev, mask=m2, other=0.0), 0.0)
            s = tl.load(u_s + t * B * H + off, mask=m2, other=0.0) - theta
            if Q_MODE & 2:
                s = s - q_prev
            gz = tl.load(grad_z + t * B * H + off, mask=m2, other=0.0) + gz_rec
            if Q_MODE != 0:
                gz = gz + gq
            gs = gz * _surrogate(s, SURROGATE)
            big_u = gu + gs
            b = b0
            if Q_MODE & 1:
                b = b0 - q_prev
            gb = dt * (big_u * u_prev + gv * v_prev)
            gi = dt * big_u
            acc_omega += dt * (gv * u_prev - big_u * v_prev)
            acc_b0 += gb
            gu_new = big_u * (1.0 + dt * b) + gv * dt * omega
            gv = -big_u * dt * omega + gv * (1.0 + dt * b)
            gu = gu_new
            if Q_MODE == 3:
                gq = gamma * gq - gs - gb
            elif Q_MODE == 2:
                gq = gamma * gq - gs
            elif Q_MODE == 1:
                gq = gamma * gq - gb
            tl.store(grad_i + t * B * H + off, gi, mask=m2)
            tl.debug_barrier()  # gI_t is read back in tiles for W_rec^T gI_t
            gz_rec = zero
            for k0 in tl.static_range(0, H_PAD, K_TILE):
                rk = k0 + tl.arange(0, K_TILE)
                gc = tl.load(grad_i + t * B * H + rb[:, None] * H + rk[None, :],
                             mask=mb[:, None] & (rk[None, :] < H), other=0.0)
                wc = tl.load(w + rk[:, None] * H + rh[None, :],
                             mask=(rk[:, None] < H) & mh[None, :], other=0.0)
                gz_rec += tl.dot(gc, wc, input_precision="ieee")
        tl.store(part_omega + pid * H + rh, tl.sum(acc_omega, axis=0), mask=mh)
        tl.store(part_b0 + pid * H + rh, tl.sum(acc_b0, axis=0), mask=mh)

    @triton.jit
    def _li_fwd(drive, alpha_p, out, T, N, O, BLOCK: tl.constexpr):
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = idx < N
        a = tl.load(alpha_p + idx % O, mask=m, other=0.0)
        o = tl.zeros([BLOCK], dtype=drive.dtype.element_ty)
        for t in range(0, T):
            o = a * o + (1.0 - a) * tl.load(drive + t * N + idx, mask=m, other=0.0)
            tl.store(out + t * N + idx, o, mask=m)

    @triton.jit
    def _li_bwd(grad_o, out, drive, alpha_p, grad_drive, part_alpha, T, N, O, BLOCK: tl.constexpr):
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = idx < N
        a = tl.load(alpha_p + idx % O, mask=m, other=0.0)
        g = tl.zeros([BLOCK], dtype=grad_o.dtype.element_ty)
        acc = g
        for i in range(0, T):
            t = T - 1 - i
            g += tl.load(grad_o + t * N + idx, mask=m, other=0.0)
            o_prev = tl.where(t > 0, tl.load(out + tl.maximum(t - 1, 0) * N + idx, mask=m, other=0.0), 0.0)
            tl.store(grad_drive + t * N + idx, g * (1.0 - a), mask=m)
            acc += g * (o_prev - tl.load(drive + t * N + idx, mask=m, other=0.0))
            g = g * a
        tl.store(part_alpha + idx, acc, mask=m)


class FusedResonatorGPU(torch.autograd.Function):
    """Hidden BRF / RF layer over a sequence: (I_in [T,B,H], W_rec, omega, b0) -> z, u, v, q."""

    @staticmethod
    def forward(ctx, i_in, w_rec, omega, b0, dt, theta, gamma, q_mode, surrogate, tbptt):
        i_in = i_in.contiguous()
        steps, batch, n = i_in.shape
        u, v, q, z = (torch.empty_like(i_in) for _ in range(4))
        grid = (triton.cdiv(batch, BLOCK_B),)
        _resonator_fwd[grid](i_in, w_rec.t().contiguous(), omega.contiguous(), b0.contiguous(),
                             u, v, q, z, steps, batch, n, dt, theta, gamma,
                             Q_MODE=q_mode, BLOCK=BLOCK_B, H_PAD=_h_pad(n), K_TILE=BK)
        ctx.save_for_backward(u, v, q, z, w_rec, omega, b0)
        ctx.constants = (dt, theta, gamma, q_mode, SURROGATE_CODES[surrogate], tbptt)
        ctx.mark_non_differentiable(u, v, q)
        return z, u, v, q

    @staticmethod
    def backward(ctx, grad_z, _gu, _gv, _gq):
        u, v, q, z, w_rec, omega, b0 = ctx.saved_tensors
        dt, theta, gamma, q_mode, code, tbptt = ctx.constants
        steps, batch, n = u.shape
        grid = (triton.cdiv(batch, BLOCK_B),)
        grad_i = torch.empty_like(u)
        part_omega = u.new_zeros(grid[0], n)
        part_b0 = u.new_zeros(grid[0], n)
        _resonator_bwd[grid](grad_z.contiguous(), u, v, q, w_rec.contiguous(), omega.contiguous(),
                             b0.contiguous(), grad_i, part_omega, part_b0, steps, batch, n, dt, theta,
                             gamma, tbptt, Q_MODE=q_mode, SURROGATE=code, BLOCK=BLOCK_B,
                             H_PAD=_h_pad(n), K_TILE=BK)
        grad_w = grad_i[1:].reshape(-1, n).t() @ z[:-1].reshape(-1, n)
        return grad_i, grad_w, part_omega.sum(0), part_b0.sum(0), None, None, None, None, None, None


class FusedLIGPU(torch.autograd.Function):
    """LI readout over a sequence: (drive [T,B,O], alpha [O]) -> o [T,B,O]."""

    @staticmethod
    def forward(ctx, drive, alpha):
        drive = drive.contiguous()
        steps, batch, n_out = drive.shape
        out = torch.empty_like(drive)
        count = batch * n_out
        _li_fwd[(triton.cdiv(count, LI_BLOCK),)](drive, alpha.contiguous(), out, steps, count, n_out,
                                                 BLOCK=LI_BLOCK)
        ctx.save_for_backward(out, drive, alpha)
        return out

    @staticmethod
    def backward(ctx, grad_o):
        out, drive, alpha = ctx.saved_tensors
        steps, batch, n_out = drive.shape
        count = batch * n_out
        grad_drive = torch.empty_like(drive)
        part = drive.new_zeros(count)
        _li_bwd[(triton.cdiv(count, LI_BLOCK),)](grad_o.contiguous(), out, drive, alpha.contiguous(),
                                                 grad_drive, part, steps, count, n_out, BLOCK=LI_BLOCK)
        return grad_drive, part.view(batch, n_out).sum(0)
