"""Fused BPTT for ALIF and LIF hidden layers on the CPU (numba): the whole sequence in one forward
and one backward call, each sequence on its own thread.

Forward (per neuron; LIF is beta = 0, and its a is never read):
    a_t = rho a_{t-1} + (1 - rho) z_{t-1};   th_t = theta0 + beta a_t
    I_t = I_in[t] + W_rec z_{t-1};   h_t = alpha u_{t-1} + (1 - alpha) I_t
    z_t = H(h_t - th_t);   u_t = h_t - z_t th_t                       (soft reset)
Backward (adjoints G*, surrogate sg; Gz_t already holds the readout's and the external gradient):
    Gz_t += W_rec^T gI_{t+1} + (1 - rho) GA_{t+1}
    gs = (Gz_t - Gu_t th_t) sg(h_t - th_t);   GH = Gu_t + gs;   Gth = -Gu_t z_t - gs
    GA_t = Ga_t + beta Gth;   gI_t = (1 - alpha) GH;   Gu_{t-1} = alpha GH;   Ga_{t-1} = rho GA_t
    dalpha += GH (u_{t-1} - I_t);   drho += GA_t (a_{t-1} - z_{t-1})
The spike gradient passes through the reset (u_t = h_t - z_t th_t), as autograd does through the
reference step. Truncated BPTT (``t_stop``): the state entering step k*t_stop carries no gradient.
Sums over sequences (dalpha, drho parts) are added in sequence order; dW_rec = sum gI_t z_{t-1}^T is
one matmul by the caller.
"""

from __future__ import annotations

import numba
import numpy as np

from .cpu_resonator import spike_driven_current
from .cpu_surrogate import surrogate_at


@numba.njit(parallel=True, cache=True)
def alif_forward(i_in, w_rec, alpha, rho, theta0, beta):
    """i_in [T, B, H], w_rec [H, H] -> u, h (before the reset), a, z, current I, each [T, B, H]."""
    steps, batch, n = i_in.shape
    dtype = i_in.dtype
    u_s = np.empty_like(i_in)
    h_s = np.empty_like(i_in)
    a_s = np.empty_like(i_in)
    z_s = np.empty_like(i_in)
    c_s = np.empty_like(i_in)
    one = dtype.type(1.0)
    for bi in numba.prange(batch):
        u = np.zeros(n, dtype)
        a = np.zeros(n, dtype)
        z = np.zeros(n, dtype)
        rec = np.zeros(n, dtype)
        for t in range(steps):
            spike_driven_current(rec, z, w_rec)
            for h in range(n):
                a[h] = rho[h] * a[h] + (one - rho[h]) * z[h]
                th = theta0 + beta * a[h]
                cur = i_in[t, bi, h] + rec[h]
                hh = alpha[h] * u[h] + (one - alpha[h]) * cur
                spike = one if hh - th > 0.0 else dtype.type(0.0)
                u[h] = hh - spike * th
                z[h] = spike
                u_s[t, bi, h] = u[h]
                h_s[t, bi, h] = hh
                a_s[t, bi, h] = a[h]
                z_s[t, bi, h] = spike
                c_s[t, bi, h] = cur
    return u_s, h_s, a_s, z_s, c_s


@numba.njit(parallel=True, cache=True)
def alif_backward(grad_z, u_s, h_s, a_s, z_s, c_s, w_rec, alpha, rho, theta0, beta, surrogate, t_stop,
                  folded=False):
    """Adjoints of ``alif_forward``: grad_i [T, B, H] (= gI), dalpha [H], drho [H]. ``folded``: the
    current already holds the gain, h_t = alpha u_(t-1) + I_t (the integer network, ``fixed.qat``):
    gI = GH, dalpha += GH u_(t-1), and c_s is not read."""
    steps, batch, n = u_s.shape
    dtype = u_s.dtype
    one = dtype.type(1.0)
    grad_i = np.zeros_like(u_s)
    alpha_parts = np.zeros((batch, n), dtype)
    rho_parts = np.zeros((batch, n), dtype)
    for bi in numba.prange(batch):
        gu = np.zeros(n, dtype)
        ga = np.zeros(n, dtype)
        gz_next = np.zeros(n, dtype)  # gradient reaching z_t from step t+1
        gi = np.zeros(n, dtype)
        big_a = np.zeros(n, dtype)
        for t in range(steps - 1, -1, -1):
            if t_stop > 0 and t < steps - 1 and (t + 1) % t_stop == 0:
                gu[:] = 0.0
                ga[:] = 0.0
                gz_next[:] = 0.0
            for h in range(n):
                th = theta0 + beta * a_s[t, bi, h]
                gz = grad_z[t, bi, h] + gz_next[h] - gu[h] * th
                gs = gz * surrogate_at(h_s[t, bi, h] - th, surrogate)
                big_h = gu[h] + gs
                gth = -gu[h] * z_s[t, bi, h] - gs
                big_a[h] = ga[h] + beta * gth
                gi[h] = big_h if folded else (one - alpha[h]) * big_h
                u_prev = u_s[t - 1, bi, h] if t > 0 else dtype.type(0.0)
                a_prev = a_s[t - 1, bi, h] if t > 0 else dtype.type(0.0)
                z_prev = z_s[t - 1, bi, h] if t > 0 else dtype.type(0.0)
                alpha_parts[bi, h] += big_h * (u_prev if folded else u_prev - c_s[t, bi, h])
                rho_parts[bi, h] += big_a[h] * (a_prev - z_prev)
                gu[h] = alpha[h] * big_h
                ga[h] = rho[h] * big_a[h]
                grad_i[t, bi, h] = gi[h]
            for j in range(n):  # z_{t-1} feeds I_t (W_rec) and a_t
                acc = (one - rho[j]) * big_a[j]
                for h in range(n):
                    acc += w_rec[h, j] * gi[h]
                gz_next[j] = acc
    return grad_i, _sum_rows(alpha_parts), _sum_rows(rho_parts)


@numba.njit(cache=True)
def _sum_rows(parts):
    out = np.zeros(parts.shape[1], parts.dtype)
    for i in range(parts.shape[0]):
        out += parts[i]
    return out
