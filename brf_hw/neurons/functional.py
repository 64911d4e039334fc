"""Pure single-step updates of the hidden neuron models and the LI readout.

Every function maps (input current, old state, parameters) to a new state and is free of side
effects, so the same code serves the reference BPTT loop, tests and plots. Equations: see
``shared/brf-model.md`` (Higuchi et al., ICML 2024). Both u[t] and v[t] use the old u, v; the
spike uses the new u and the old refractory variable q.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .flags import BRF, RF, ResonatorFlags  # noqa: F401  (re-exported: the step takes them)
from .surrogate import SpikeFn

Tensor = torch.Tensor


class ResonatorState(NamedTuple):
    """State of BRF, RF and BHRF neurons. RF keeps q at zero."""

    u: Tensor
    v: Tensor
    q: Tensor
    z: Tensor


class ALIFState(NamedTuple):
    u: Tensor
    a: Tensor
    z: Tensor


def omega_limit(dt: float) -> float:
    """Divergence boundary: p(omega) is real only for dt * omega < 1."""
    return 1.0 / dt


def check_omega(omega: Tensor, dt: float, what: str = "omega") -> None:
    """Raise if any |omega| is at or past the divergence boundary 1/dt (p(omega) would be NaN)."""
    w = omega.detach().abs()
    if not torch.isfinite(w).all():
        raise ValueError(f"{what} contains NaN or inf")
    worst = float(w.max()) if w.numel() else 0.0
    if worst * dt >= 1.0:
        bad = int((w * dt >= 1.0).sum())
        raise ValueError(
            f"{what}: {bad} value(s) at or past the divergence boundary |omega| < 1/dt = "
            f"{omega_limit(dt):g} (largest |omega| = {worst:g}, dt = {dt:g}); p(omega) is undefined there"
        )


def p_omega(omega: Tensor, dt: float) -> Tensor:
    """p(omega) = (-1 + sqrt(1 - (dt*omega)^2)) / dt, the damping at the divergence boundary."""
    return (-1.0 + torch.sqrt(1.0 - (dt * omega) ** 2)) / dt




def brf_step(
    current: Tensor,
    state: ResonatorState,
    omega: Tensor,
    b_offset: Tensor,
    *,
    dt: float,
    theta: float,
    gamma: float,
    spike: SpikeFn,
    flags: ResonatorFlags = BRF,
) -> ResonatorState:
    """Balanced RF and its ablations (``flags``); with every flag off, the vanilla Izhikevich RF.

        b  = [boundary] p(omega) - b_offset - [smooth_reset] q
        u' = u + dt (b u - omega v + I);   v' = v + dt (omega u + b v)     (both the OLD u, v)
        z  = H(u' - theta - [refractory] q)                                 (the OLD q)
        q' = gamma q + z if refractory or smooth_reset, else q (= 0)

    BRF: all three flags. RF ("without reset"): none, b = -b_offset, z = H(u' - theta).
    """
    u, v, q, _ = state
    b = p_omega(omega, dt) - b_offset if flags.boundary else -b_offset
    if flags.smooth_reset:
        b = b - q
    u_new = u + dt * (b * u - omega * v + current)
    v_new = v + dt * (omega * u + b * v)
    z = spike(u_new - theta - q if flags.refractory else u_new - theta)
    return ResonatorState(u_new, v_new, gamma * q + z if flags.uses_q else q, z)


def bhrf_step(
    current: Tensor,
    state: ResonatorState,
    omega: Tensor,
    b_offset: Tensor,
    *,
    dt: float,
    theta: float,
    gamma: float,
    spike: SpikeFn,
) -> ResonatorState:
    """Balanced harmonic RF: u'' form, v integrates u, the u update uses the NEW v."""
    u, v, q, _ = state
    b = 0.5 * dt * omega**2 + b_offset + q
    v_new = v + dt * u
    u_new = u + dt * current - 2.0 * dt * b * u - dt * omega**2 * v_new
    z = spike(u_new - theta - q)
    return ResonatorState(u_new, v_new, gamma * q + z, z)


def alif_step(
    current: Tensor,
    state: ALIFState,
    alpha: Tensor,
    rho: Tensor,
    *,
    theta0: float,
    beta: float,
    spike: SpikeFn,
) -> ALIFState:
    """Adaptive LIF (Yin et al. 2021): threshold adapts with the previous spike, soft reset."""
    u, a, z_old = state
    a_new = rho * a + (1.0 - rho) * z_old
    threshold = theta0 + beta * a_new
    u_new = alpha * u + (1.0 - alpha) * current
    z = spike(u_new - threshold)
    return ALIFState(u_new - z * threshold, a_new, z)


def lif_step(
    current: Tensor,
    state: ALIFState,
    alpha: Tensor,
    *,
    theta0: float,
    spike: SpikeFn,
) -> ALIFState:
    """LIF: ALIF without adaptation (beta = 0, a stays 0), fixed threshold theta0, soft reset.

        u' = alpha u + (1 - alpha) I;  z = H(u' - theta0);  u' -= z theta0"""
    u, a, _ = state
    u_new = alpha * u + (1.0 - alpha) * current
    z = spike(u_new - theta0)
    return ALIFState(u_new - z * theta0, a, z)


def li_step(current: Tensor, o: Tensor, alpha: Tensor) -> Tensor:
    """Leaky-integrator readout o[t] = alpha*o[t-1] + (1-alpha)*current."""
    return alpha * o + (1.0 - alpha) * current


def decay(tau: Tensor) -> Tensor:
    """exp(-1/|tau|): the per-step decay of a time constant given in steps."""
    return torch.exp(-1.0 / tau.abs())
