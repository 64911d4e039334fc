"""The CPU kernel as it was before issue 14 (numba, per-sequence GEMV backward, strided weight-gradient
accumulation), kept only so that bench/kernel_speed.py can time old against new in one run."""
from __future__ import annotations

import math

import numba
import numpy as np

from brf_hw.neurons.surrogate import GAIN, HEIGHT, SCALE, WIDTH

SURROGATE_CODES = {"double_gaussian": 0, "multi_gaussian": 1}
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@numba.njit(inline="always", cache=True)
def _normal(x, mu, sigma):
    d = (x - mu) / sigma
    return math.exp(-0.5 * d * d) * _INV_SQRT_2PI / sigma


@numba.njit(inline="always", cache=True)
def _surrogate(x, code):
    narrow = (1.0 + HEIGHT) * _normal(x, 0.0, WIDTH)
    if code == 0:
        return GAIN * (narrow - 2.0 * HEIGHT * _normal(x, 0.0, SCALE * WIDTH))
    return GAIN * (narrow - HEIGHT * _normal(x, WIDTH, SCALE * WIDTH) - HEIGHT * _normal(x, -WIDTH, SCALE * WIDTH))


@numba.njit(parallel=True, cache=True)
def resonator_forward(i_in, w_rec, omega, b0, dt, theta, gamma, refractory):
    """i_in [T, B, H]; returns u, v, q, z, each [T, B, H]."""
    steps, batch, n = i_in.shape
    u_out = np.empty_like(i_in)
    v_out = np.empty_like(i_in)
    q_out = np.empty_like(i_in)
    z_out = np.empty_like(i_in)
    for bi in numba.prange(batch):
        u = np.zeros(n, i_in.dtype)
        v = np.zeros(n, i_in.dtype)
        q = np.zeros(n, i_in.dtype)
        active = np.empty(n, np.int64)  # indices of neurons that spiked last step
        n_active = 0
        for t in range(steps):
            new_active = 0
            for h in range(n):
                recurrent = 0.0  # summed before adding i_in, as the reference's z @ W_rec^T + i_in
                for k in range(n_active):
                    recurrent += w_rec[h, active[k]]
                current = i_in[t, bi, h] + recurrent
                b = b0[h] - q[h]
                un = u[h] + dt * (b * u[h] - omega[h] * v[h] + current)
                v[h] = v[h] + dt * (omega[h] * u[h] + b * v[h])
                u[h] = un
                spike = 1.0 if un - theta - q[h] > 0.0 else 0.0
                if refractory:
                    q[h] = gamma * q[h] + spike
                u_out[t, bi, h] = un
                v_out[t, bi, h] = v[h]
                q_out[t, bi, h] = q[h]
                z_out[t, bi, h] = spike
            for h in range(n):
                if z_out[t, bi, h] != 0.0:
                    active[new_active] = h
                    new_active += 1
            n_active = new_active
    return u_out, v_out, q_out, z_out


@numba.njit(parallel=True, cache=True)
def resonator_backward(grad_z, u_s, v_s, q_s, z_s, w_rec, omega, b0, dt, theta, gamma, refractory,
                       surrogate, t_stop):
    """Adjoints of the forward above. ``t_stop`` > 0 truncates BPTT: no gradient crosses from step
    k*t_stop back into the state of step k*t_stop - 1 (the forward detached the state there)."""
    steps, batch, n = grad_z.shape
    grad_i = np.empty_like(grad_z)
    grad_w_parts = np.zeros((batch, n, n), grad_z.dtype)
    grad_omega_parts = np.zeros((batch, n), grad_z.dtype)
    grad_b0_parts = np.zeros((batch, n), grad_z.dtype)
    for bi in numba.prange(batch):
        gu = np.zeros(n, grad_z.dtype)
        gv = np.zeros(n, grad_z.dtype)
        gq = np.zeros(n, grad_z.dtype)
        gz_rec = np.zeros(n, grad_z.dtype)  # W_rec^T gI from the step after
        gi = np.zeros(n, grad_z.dtype)
        for t in range(steps - 1, -1, -1):
            if t_stop > 0 and t < steps - 1 and (t + 1) % t_stop == 0:
                gu[:] = 0.0
                gv[:] = 0.0
                gq[:] = 0.0
                gz_rec[:] = 0.0
            for h in range(n):
                q_prev = q_s[t - 1, bi, h] if (t > 0 and refractory) else 0.0
                u_prev = u_s[t - 1, bi, h] if t > 0 else 0.0
                v_prev = v_s[t - 1, bi, h] if t > 0 else 0.0
                s = u_s[t, bi, h] - theta - q_prev
                gz = grad_z[t, bi, h] + gz_rec[h] + (gq[h] if refractory else 0.0)
                gs = gz * _surrogate(s, surrogate)
                big_u = gu[h] + gs
                b = b0[h] - q_prev
                w = omega[h]
                gb = dt * (big_u * u_prev + gv[h] * v_prev)
                gi[h] = dt * big_u
                grad_omega_parts[bi, h] += dt * (gv[h] * u_prev - big_u * v_prev)
                grad_b0_parts[bi, h] += gb
                gu_new = big_u * (1.0 + dt * b) + gv[h] * dt * w
                gv[h] = -big_u * dt * w + gv[h] * (1.0 + dt * b)
                gu[h] = gu_new
                if refractory:
                    gq[h] = gamma * gq[h] - gs - gb
                grad_i[t, bi, h] = gi[h]
            # recurrent synapses: I_t = ... + W_rec z_{t-1}
            gz_rec[:] = 0.0
            for h in range(n):  # row-wise, so the inner loop runs over contiguous memory
                g = gi[h]
                if g != 0.0:
                    for j in range(n):
                        gz_rec[j] += w_rec[h, j] * g
            if t > 0:
                for j in range(n):
                    if z_s[t - 1, bi, j] != 0.0:
                        for h in range(n):
                            grad_w_parts[bi, h, j] += gi[h]
    return grad_i, grad_w_parts.sum(axis=0), grad_omega_parts.sum(axis=0), grad_b0_parts.sum(axis=0)


@numba.njit(parallel=True, cache=True)
def li_forward(drive, alpha):
    """o_t = alpha o_{t-1} + (1 - alpha) drive_t; drive [T, B, O]."""
    steps, batch, n = drive.shape
    out = np.empty_like(drive)
    for bi in numba.prange(batch):
        for k in range(n):
            o = 0.0
            for t in range(steps):
                o = alpha[k] * o + (1.0 - alpha[k]) * drive[t, bi, k]
                out[t, bi, k] = o
    return out


@numba.njit(parallel=True, cache=True)
def li_backward(grad_o, out, drive, alpha):
    steps, batch, n = grad_o.shape
    grad_drive = np.empty_like(grad_o)
    grad_alpha_parts = np.zeros((batch, n), grad_o.dtype)
    for bi in numba.prange(batch):
        for k in range(n):
            g = 0.0
            for t in range(steps - 1, -1, -1):
                g += grad_o[t, bi, k]
                o_prev = out[t - 1, bi, k] if t > 0 else 0.0
                grad_drive[t, bi, k] = g * (1.0 - alpha[k])
                grad_alpha_parts[bi, k] += g * (o_prev - drive[t, bi, k])
                g *= alpha[k]
    return grad_drive, grad_alpha_parts.sum(axis=0)
