"""Fused BPTT for BHRF hidden layers on the CPU (numba), each sequence on its own thread.

Forward (b0 = dt/2 omega^2 + b_offset, w2 = omega^2, per neuron):
    b_t = b0 + q_{t-1};   I_t = I_in[t] + W_rec z_{t-1}
    v_t = v + dt u;   u_t = u + dt I_t - 2 dt b_t u - dt w2 v_t        (the NEW v_t)
    z_t = H(u_t - theta - q_{t-1});   q_t = gamma q_{t-1} + z_t
Backward (adjoints G*, surrogate sg; Gz_t holds the external gradient and W_rec^T gI_{t+1}):
    gs = (Gz_t + Gq_t) sg(s_t);   GU = Gu_t + gs;   GV = Gv_t - dt w2 GU
    gI = dt GU;   gb = -2 dt u_{t-1} GU;   dw2 += -dt v_t GU;   db0 += gb
    Gu_{t-1} = GU (1 - 2 dt b_t) + dt GV;   Gv_{t-1} = GV;   Gq_{t-1} = gamma Gq_t - gs + gb
Truncated BPTT (``t_stop``) as in ``cpu_alif``; dW_rec is one matmul by the caller.
"""

from __future__ import annotations

import numba
import numpy as np

from .cpu_resonator import spike_driven_current
from .cpu_surrogate import surrogate_at


@numba.njit(parallel=True, cache=True)
def bhrf_forward(i_in, w_rec, w2, b0, dt, two_dt, theta, gamma):
    """i_in [T, B, H], w_rec [H, H] -> u, v, q, z [T, B, H]. The scalars come in the arrays' dtype,
    two_dt = 2 dt rounded once, as the reference's float32 tensor ops see them."""
    steps, batch, n = i_in.shape
    dtype = i_in.dtype
    u_s = np.empty_like(i_in)
    v_s = np.empty_like(i_in)
    q_s = np.empty_like(i_in)
    z_s = np.empty_like(i_in)
    one = dtype.type(1.0)
    for bi in numba.prange(batch):
        u = np.zeros(n, dtype)
        v = np.zeros(n, dtype)
        q = np.zeros(n, dtype)
        z = np.zeros(n, dtype)
        rec = np.zeros(n, dtype)
        for t in range(steps):
            spike_driven_current(rec, z, w_rec)
            for h in range(n):
                b = b0[h] + q[h]
                v_new = v[h] + dt * u[h]
                u_new = u[h] + dt * (i_in[t, bi, h] + rec[h]) - two_dt * b * u[h] - dt * w2[h] * v_new
                spike = one if u_new - theta - q[h] > 0.0 else dtype.type(0.0)
                q[h] = gamma * q[h] + spike
                u[h] = u_new
                v[h] = v_new
                z[h] = spike
                u_s[t, bi, h] = u_new
                v_s[t, bi, h] = v_new
                q_s[t, bi, h] = q[h]
                z_s[t, bi, h] = spike
    return u_s, v_s, q_s, z_s


@numba.njit(parallel=True, cache=True)
def bhrf_backward(grad_z, u_s, v_s, q_s, z_s, w_rec, w2, b0, dt, two_dt, theta, gamma, surrogate, t_stop):
    """Adjoints of ``bhrf_forward``: grad_i [T, B, H] (= gI), dw2 [H], db0 [H]."""
    steps, batch, n = u_s.shape
    dtype = u_s.dtype
    one = dtype.type(1.0)
    grad_i = np.zeros_like(u_s)
    w2_parts = np.zeros((batch, n), dtype)
    b0_parts = np.zeros((batch, n), dtype)
    for bi in numba.prange(batch):
        gu = np.zeros(n, dtype)
        gv = np.zeros(n, dtype)
        gq = np.zeros(n, dtype)
        gz_next = np.zeros(n, dtype)
        gi = np.zeros(n, dtype)
        for t in range(steps - 1, -1, -1):
            if t_stop > 0 and t < steps - 1 and (t + 1) % t_stop == 0:
                gu[:] = 0.0
                gv[:] = 0.0
                gq[:] = 0.0
                gz_next[:] = 0.0
            for h in range(n):
                u_prev = u_s[t - 1, bi, h] if t > 0 else dtype.type(0.0)
                q_prev = q_s[t - 1, bi, h] if t > 0 else dtype.type(0.0)
                gs = (grad_z[t, bi, h] + gz_next[h] + gq[h]) * surrogate_at(
                    u_s[t, bi, h] - theta - q_prev, surrogate)
                big_u = gu[h] + gs
                big_v = gv[h] - dt * w2[h] * big_u
                gi[h] = dt * big_u
                gb = -two_dt * u_prev * big_u
                w2_parts[bi, h] += -dt * v_s[t, bi, h] * big_u
                b0_parts[bi, h] += gb
                gu[h] = big_u * (one - two_dt * (b0[h] + q_prev)) + dt * big_v
                gv[h] = big_v
                gq[h] = gamma * gq[h] - gs + gb
                grad_i[t, bi, h] = gi[h]
            for j in range(n):  # z_{t-1} feeds I_t through W_rec
                acc = dtype.type(0.0)
                for h in range(n):
                    acc += w_rec[h, j] * gi[h]
                gz_next[j] = acc
    return grad_i, _sum_rows(w2_parts), _sum_rows(b0_parts)


@numba.njit(cache=True)
def _sum_rows(parts):
    out = np.zeros(parts.shape[1], parts.dtype)
    for i in range(parts.shape[0]):
        out += parts[i]
    return out
