"""Integer forward kernels (numba) for quantization-aware training and integer evaluation.

Per sample, event-driven: only the recurrent weights of neurons that spiked are added. The step
itself is ``arith.resonator_step`` (``arith.bhrf_step``, ``arith.adaptive_step``) / ``arith.li_step``, the same functions
the golden model runs on arrays. The QAT backward (straight-through) reuses the float adjoints, see ``qat``.
"""

from __future__ import annotations

import numba
import numpy as np

from .arith import adaptive_step, bhrf_step, li_step, resonator_step

HARMONIC = -1  # the q_mode that selects ``arith.bhrf_step`` in ``resonator_forward_int`` (BHRF: u, y, q)


@numba.njit(cache=True)
def synaptic_sum(acc, w_rec_row, active, n_active):
    """A neuron's input sum plus the recurrent weights of the ``n_active`` neurons that spiked."""
    for k in range(n_active):
        acc += w_rec_row[active[k]]
    return acc


@numba.njit(cache=True)
def spiking(z, active):
    """The neurons with z != 0 into ``active``; returns how many."""
    n_active = 0
    for h in range(len(z)):
        if z[h] != 0:
            active[n_active] = h
            n_active += 1
    return n_active


@numba.njit(parallel=True, cache=True)
def resonator_forward_int(acc_in, w_rec, d, c, dtq, gamma, theta, lo, hi, clo, chi, cf, sf, wshift, q_mode):
    """acc_in [T, B, H]: input-synapse sums, w_rec: recurrent weights, both aligned to the
    accumulator's fraction (``FixedSpec.acc_frac``). Returns u, v, q, z, each [T, B, H]; with
    q_mode ``HARMONIC`` the step is BHRF's (same arguments, v holds y = omega*v)."""
    steps, batch, n = acc_in.shape
    u_out = np.empty((steps, batch, n), np.int64)
    v_out = np.empty_like(u_out)
    q_out = np.empty_like(u_out)
    z_out = np.empty_like(u_out)
    for bi in numba.prange(batch):
        u = np.zeros(n, np.int64)
        v = np.zeros(n, np.int64)
        q = np.zeros(n, np.int64)
        active = np.empty(n, np.int64)
        n_active = 0
        for t in range(steps):
            for h in range(n):
                acc = synaptic_sum(acc_in[t, bi, h], w_rec[h], active, n_active)
                if q_mode == HARMONIC:
                    u[h], v[h], q[h], z = bhrf_step(acc, u[h], v[h], q[h], d[h], c[h], dtq, gamma, theta,
                                                    lo, hi, clo, chi, cf, sf, wshift)
                else:
                    u[h], v[h], q[h], z = resonator_step(acc, u[h], v[h], q[h], d[h], c[h], dtq, gamma, theta,
                                                         lo, hi, clo, chi, cf, sf, wshift, q_mode)
                u_out[t, bi, h] = u[h]
                v_out[t, bi, h] = v[h]
                q_out[t, bi, h] = q[h]
                z_out[t, bi, h] = z
            n_active = spiking(z_out[t, bi], active)
    return u_out, v_out, q_out, z_out


@numba.njit(parallel=True, cache=True)
def adaptive_forward_int(acc_in, w_rec, alpha_m, rho, theta0, beta, lo, hi, cf, sf, wshift, adapt):
    """ALIF / LIF (``arith.adaptive_step``), event-driven like ``resonator_forward_int``. Returns
    u (after the soft reset), a (the adaptation the next step uses), z, each [T, B, H]."""
    steps, batch, n = acc_in.shape
    u_out = np.empty((steps, batch, n), np.int64)
    a_out = np.empty_like(u_out)
    z_out = np.empty_like(u_out)
    for bi in numba.prange(batch):
        u = np.zeros(n, np.int64)
        a = np.zeros(n, np.int64)
        active = np.empty(n, np.int64)
        n_active = 0
        for t in range(steps):
            for h in range(n):
                acc = synaptic_sum(acc_in[t, bi, h], w_rec[h], active, n_active)
                u[h], a[h], z = adaptive_step(acc, u[h], a[h], alpha_m[h], rho[h], theta0, beta, lo, hi, cf, sf,
                                              wshift, adapt)
                u_out[t, bi, h] = u[h]
                a_out[t, bi, h] = a[h]
                z_out[t, bi, h] = z
            n_active = spiking(z_out[t, bi], active)
    return u_out, a_out, z_out


@numba.njit(parallel=True, cache=True)
def li_forward_int(acc_o, alpha, olo, ohi, cf, owshift):
    """acc_o [T, B, O]: output-synapse sums (out_weight format). Returns o [T, B, O]."""
    steps, batch, n = acc_o.shape
    out = np.empty((steps, batch, n), np.int64)
    for bi in numba.prange(batch):
        for k in range(n):
            o = np.int64(0)
            for t in range(steps):
                o = li_step(acc_o[t, bi, k], o, alpha[k], olo, ohi, cf, owshift)
                out[t, bi, k] = o
    return out


@numba.njit(parallel=True, cache=True)
def li_backward_ste(grad_o, out, alpha):
    """Straight-through adjoints of o_t = alpha o_{t-1} + y_t: returns dL/dy [T, B, O], dL/dalpha."""
    steps, batch, n = grad_o.shape
    grad_y = np.empty_like(grad_o)
    parts = np.zeros((batch, n), grad_o.dtype)
    for bi in numba.prange(batch):
        for k in range(n):
            g = 0.0
            for t in range(steps - 1, -1, -1):
                g = g * alpha[k] + grad_o[t, bi, k] if t < steps - 1 else grad_o[t, bi, k]
                grad_y[t, bi, k] = g
                if t > 0:
                    parts[bi, k] += g * out[t - 1, bi, k]
    return grad_y, parts.sum(axis=0)
