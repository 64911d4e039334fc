"""BHRF (balanced harmonic RF) in integers: ``arith.bhrf_step``.

The float step (``neurons.functional.bhrf_step``, b0 = dt/2 omega^2 + b_offset):

    b = b0 + q;  v' = v + dt u;  u' = u + dt I - 2 dt b u - dt omega^2 v';  z = H(u' - theta - q);  q' = gamma q + z

The integer state keeps y = omega*v in place of v: then dt*omega^2*v' = (dt*omega)*y' and
y' = y + (dt*omega)*u, so one coefficient c = dt*omega (BRF's c) serves both products, u and y
swing with the same amplitude (an oscillator's u^2 + omega^2 v^2 is its energy) and share the
state format, and c < 2, where the coefficient format ends, is where the float oscillator
diverges anyway. Kept as v, dt*omega^2 would overflow Q1.14 from omega = 14.2 at dt = 0.01 and v
would sit log2(omega) bits below u. Per hidden neuron, in the coefficient format: d = 1 - 2*dt*b0
(the damping without q) and c = dt*omega. Scalars dt (coef; 2*dt*q is dt*q one shift less),
gamma (coef), theta (state); the fields are the resonators' (``IntNetwork``), their meaning is
this module's. State u, y, q.

Stability: at q = 0 the step is linear, (y, u) -> M (y, u) with M = [[1, c], [-c, d - c^2]],
det M = d, trace M = 1 + d - c^2; its eigenvalues lie in the closed unit circle iff d <= 1 and
c^2 < 2 (1 + d) (i.e. 3 (dt omega)^2 + 4 dt b_offset < 4 in float terms; q only adds damping
2 dt q, which tightens the bound by 4 dt q). The float model does not bound omega (BHRF has no
divergence boundary), so ``check`` refuses an artifact whose neurons diverge even at rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...neurons.flags import ResonatorFlags
from . import register
from .resonator import ResonatorKind

# torch (quantize) and numba (step) are imported where used: loading an artifact or building
# the hardware needs neither


@dataclass(frozen=True)
class HarmonicKind(ResonatorKind):
    """BHRF: the resonators' fields, scalars and constants (q in the damping and the threshold, no
    divergence boundary), its own quantization, stability check and step."""

    state_names: str = "uyq"

    @property
    def stored_state(self) -> str:
        return "uyq"

    @property
    def multipliers(self) -> int:
        """Products per lane of the accelerator's step: dt*q, c*u, e*u, c*y', gamma*q."""
        return 5

    def quantize(self, model, spec, fake_quant) -> dict:
        """d = 1 - 2*dt*b0 and c = dt*omega as fake-quantized (integer-valued, STE) float64 tensors."""
        dt = model.config.neuron.dt
        omega = model.hidden.omega.double()
        b0 = 0.5 * dt * omega**2 + model.hidden.b_offset.double()
        return {"d": fake_quant(1.0 - 2.0 * dt * b0, spec.coef), "c": fake_quant(dt * omega, spec.coef)}

    def check(self, net) -> str | None:
        """c >= 0 (omega = |parameter|), d <= 1 (b0 >= 0), and the oscillator stable at rest."""
        one = net.spec.coef.scale
        c, d = net.c.astype(object), net.d.astype(object)  # c^2 and 2*one^2 exceed int64 at wide formats
        if np.any(net.c < 0):
            return "array c (dt*omega) must be >= 0"
        if np.any(net.d > one):
            return "array d (1 - 2*dt*b0) must be <= 1: the damping b0 cannot be negative"
        if np.any(c * c >= 2 * one * (one + d)):
            return "arrays d, c: the oscillator diverges even at rest (c^2 >= 2(1 + d): 3(dt*omega)^2 + 4 dt*b_offset >= 4)"
        return None

    def step(self, net, acc, state, consts) -> tuple:
        """(u, y, q), z after one step on the synaptic sums ``acc``; ``consts``: net.step_constants()."""
        from ..arith import bhrf_step

        u, y, q, z = bhrf_step(acc, *state, net.d, net.c, *consts)
        return (u, y, q), z


register(HarmonicKind("bhrf", ResonatorFlags(boundary=False)))
