"""The integer BRF step (and its ablations) and LI readout: THE definition of the fixed-point arithmetic.

Everything is int64 and works alike on scalars (inside the numba QAT kernel) and on numpy arrays
(the golden model); the hardware generator builds the same operations with the same shifts and
bounds from ``FixedSpec``. Per hidden neuron and step, with the accumulated synaptic input
acc = sum of active weights (aligned to the accumulator's fraction bits wf), state format (sf fraction bits,
bounds lo..hi) and coefficient format (cf fraction bits, bounds clo..chi):

    cur  = rshift(acc, wf - sf)                        align the synaptic current to the state
    e    = sat_c(d - rshift(dtq * q, sf))              damping factor incl. smooth reset, 1+dt*b
    u'   = sat_s(rshift(e*u - c*v, cf) + cur)          c = dt*omega
    v'   = sat_s(rshift(e*v + c*u, cf))               (both use the OLD u, v)
    z    = [u' - theta - q > 0]                        threshold raised by the OLD q
    q'   = sat_s(rshift(gamma*q, cf) + z * 2^sf)

and per output neuron, with acc_o = sum of active output weights (fraction bits owf):

    o'   = sat_o(rshift(alpha*o, cf) + rshift(acc_o, owf - of))

and, for a ``mean`` readout (``spec.Readout``), the running sum of the new potentials

    s'   = sat_sum(s + o')                             sum_bits wide; argmax(s') is the class

ALIF and LIF (``adaptive_step``, ``fixed.kinds.adaptive``) have their own step on the same
synaptic current, per-neuron decays alpha_m (membrane) and rho (adaptation) in the coefficient
format, theta0 in the state format and beta in the coefficient format:

    cur  = rshift(acc, wf - sf)                        (1 - alpha_m) is folded into the weights
    h    = sat_s(rshift(alpha_m*u, cf) + cur)
    th   = theta0 + rshift(beta*a, cf)                 a: the adaptation this step uses
    z    = [h - th > 0]
    u'   = sat_s(h - z*th)                             soft reset
    a'   = sat_s(z*2^sf + rshift(rho*(a - z*2^sf), cf))    = rho*a + (1-rho)*z, one rounding

BHRF (``bhrf_step``, ``fixed.kinds.harmonic``) keeps y = omega*v in place of v (u and y then
oscillate with the same amplitude, and c = dt*omega is BRF's c), d = 1 - 2*dt*b0 and c per neuron:

    e    = sat_c(d - rshift(dtq * q, sf - 1))          1 - 2*dt*(b0 + q)
    y'   = sat_s(y + rshift(c*u, cf))                  omega*(v + dt*u), from the OLD u
    u'   = sat_s(rshift(e*u - c*y', cf) + cur)         dt*omega^2*v' = c*y': the NEW v, as the float step
    z, q' as BRF's

rshift(x, s) = (x + 2^(s-1)) >> s for s > 0 (round half up), x << -s for s < 0.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import sparse


@numba.njit(cache=True)
def rshift(x, s):
    if s > 0:
        return (x + (1 << (s - 1))) >> s
    if s < 0:
        return x << (-s)
    return x


@numba.njit(cache=True)
def sat(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


@numba.njit(cache=True)
def resonator_step(acc, u, v, q, d, c, dtq, gamma, theta, lo, hi, clo, chi, cf, sf, wshift, q_mode):
    """The step above for BRF and its ablations: ``q_mode`` bit 0 puts q in the damping (e),
    bit 1 in the threshold (``neurons.flags.q_mode``); q evolves only if either does (RF: q stays 0).
    Without the divergence boundary only d differs (1 - dt*b_offset), which the caller quantized."""
    damp = q_mode & 1
    thresh = (q_mode >> 1) & 1
    evolves = 1 if q_mode != 0 else 0
    cur = rshift(acc, wshift)
    e = sat(d - rshift(dtq * (q * damp), sf), clo, chi)
    u_new = sat(rshift(e * u - c * v, cf) + cur, lo, hi)
    v_new = sat(rshift(e * v + c * u, cf), lo, hi)
    # z = [u' - theta - q > 0] = sign bit of (theta + q - u'): one expression for scalars and arrays
    z = ((theta + q * thresh - u_new) >> 63) & 1
    q_new = sat(rshift(gamma * q, cf) + ((z * evolves) << sf), lo, hi)
    return u_new, v_new, q_new, z


@numba.njit(cache=True)
def brf_step(acc, u, v, q, d, c, dtq, gamma, theta, lo, hi, clo, chi, cf, sf, wshift):
    """BRF: q in the damping and the threshold."""
    return resonator_step(acc, u, v, q, d, c, dtq, gamma, theta, lo, hi, clo, chi, cf, sf, wshift, 3)


@numba.njit(cache=True)
def bhrf_step(acc, u, y, q, d, c, dtq, gamma, theta, lo, hi, clo, chi, cf, sf, wshift):
    """BHRF, the step above: u' = u + dt*I - 2*dt*(b0 + q)*u - dt*omega^2*v' with y = omega*v. The
    arguments are ``resonator_step``'s (y for v) without q_mode: q is in the damping and the threshold.
    2*dt*q is dtq*q shifted one bit less (exact: no constant 2*dt of its own)."""
    cur = rshift(acc, wshift)
    e = sat(d - rshift(dtq * q, sf - 1), clo, chi)
    y_new = sat(y + rshift(c * u, cf), lo, hi)
    u_new = sat(rshift(e * u - c * y_new, cf) + cur, lo, hi)
    z = ((theta + q - u_new) >> 63) & 1  # [u' - theta - q > 0], as in resonator_step
    q_new = sat(rshift(gamma * q, cf) + (z << sf), lo, hi)
    return u_new, y_new, q_new, z


@numba.njit(cache=True)
def adaptive_step(acc, u, a, alpha_m, rho, theta0, beta, lo, hi, cf, sf, wshift, adapt):
    """ALIF (``adapt`` 1) and LIF (0: a stays 0, the threshold is theta0), the step above.

    The state a is the adaptation of the NEXT step: the float model (``neurons.functional.alif_step``)
    computes a_t = rho a_(t-1) + (1 - rho) z_(t-1) at the start of step t from the previous spike;
    here a' = rho a + (1 - rho) z is computed at the end of step t from this step's spike, which is
    the same a_(t+1), so in exact arithmetic the two produce identical u, a_t, z (a starts at 0 in
    both: a_1 = rho*0 + (1-rho)*0). The hardware thus keeps u and a and never a spike of its own.
    a' - z = rho (a - z) rounds once; for 0 <= rho <= 1 and 0 <= a <= 1 it stays in [0, 1]."""
    cur = rshift(acc, wshift)
    h = sat(rshift(alpha_m * u, cf) + cur, lo, hi)
    th = theta0 + rshift(beta * a, cf)
    z = ((th - h) >> 63) & 1  # [h - th > 0], as in resonator_step
    u_new = sat(h - z * th, lo, hi)
    a_new = sat((z << sf) + rshift(rho * (a - (z << sf)), cf), lo, hi) * adapt
    return u_new, a_new, z


@numba.njit(cache=True)
def li_step(acc_o, o, alpha, olo, ohi, cf, owshift):
    return sat(rshift(alpha * o, cf) + rshift(acc_o, owshift), olo, ohi)


@numba.njit(cache=True)
def sum_step(s, o, slo, shi):
    return sat(s + o, slo, shi)


def event_matmul(a: np.ndarray, b_t: np.ndarray) -> np.ndarray:
    """a @ b_t.T in exact int64 arithmetic for a mostly-zero integer ``a`` (spikes, input bits):
    a sparse product touches only the rows of the events, which is what the hardware adds, and is
    ~10x faster than a dense product at S-MNIST sizes (numpy has no integer BLAS)."""
    return np.asarray(sparse.csr_array(a.astype(np.int64)) @ np.ascontiguousarray(b_t.T, dtype=np.int64))
