"""BRF, its three ablations and RF in integers: one step with flags (``arith.resonator_step``).

Per hidden neuron: d = 1 + dt*b0 (b0 = p(omega) - b_offset, or -b_offset without the divergence
boundary) and c = dt*omega, both in the coefficient format; scalars dt (coef), gamma (coef) and
theta (state). State u, v, q. ``q_mode`` says where q enters (see ``neurons.flags.q_mode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...neurons.flags import RESONATOR_FLAGS, ResonatorFlags, q_mode
from ..spec import STATE_INT_BITS
from . import register

# torch (quantize) and numba (step) are imported where used: loading an artifact or building
# the hardware needs neither


@dataclass(frozen=True)
class ResonatorKind:
    name: str
    flags: ResonatorFlags
    arrays: dict = field(default_factory=lambda: {"d": ("coef", ("H",)), "c": ("coef", ("H",))})
    scalars: dict = field(default_factory=lambda: {"dtq": "coef", "gamma": "coef", "theta": "state"})

    @property
    def q_mode(self) -> int:
        return q_mode(self.flags)

    def b0(self, omega, b_offset, dt):
        """The damping without q, float (torch): what d quantizes."""
        from ...neurons.functional import p_omega

        return p_omega(omega, dt) - b_offset if self.flags.boundary else -b_offset

    def input_gain(self, model) -> float:
        """dt: the synaptic current enters u as dt*I."""
        return model.config.neuron.dt

    def quantize(self, model, spec, fake_quant) -> dict:
        """d and c as fake-quantized (integer-valued, STE) float64 tensors."""
        from ...neurons.functional import check_omega

        dt = model.config.neuron.dt
        if self.flags.boundary:
            check_omega(model.hidden.omega_param, dt, f"{self.name} omega")
        omega = model.hidden.omega.double()
        b0 = self.b0(omega, model.hidden.b_offset.double(), dt)
        return {"d": fake_quant(1.0 + dt * b0, spec.coef), "c": fake_quant(dt * omega, spec.coef)}

    def scalar_constants(self, model, spec) -> dict[str, int]:
        """dt and gamma in the coefficient format, theta in the state format (must fit exactly)."""
        cfg = model.config.neuron
        return {"dtq": int(spec.coef.quantize(cfg.dt, "dt", strict=True)),
                "gamma": int(spec.coef.quantize(cfg.gamma, "gamma", strict=True)),
                "theta": int(spec.state.quantize(cfg.theta, "theta", strict=True))}

    def check(self, net) -> str | None:
        """What is wrong with an artifact's values beyond their formats, or None."""
        if np.any(net.c < 0) or np.any(net.c >= net.spec.coef.scale):
            return "array c (dt*omega) must lie in [0, 1): omega at or past the divergence boundary"
        return None

    state_names: str = "uvq"
    state_int_bits: int = STATE_INT_BITS  # u, v, q in [-32, 32) (``fixed.spec``)

    @property
    def stored_state(self) -> str:
        """What the accelerator's state memory keeps per neuron: q only where it evolves (not in RF)."""
        return "uvq" if self.q_mode else "uv"

    @property
    def multipliers(self) -> int:
        """Products per lane of the accelerator's step: dt*q, the rotation's four, gamma*q."""
        return 6

    def step_constants(self, net) -> tuple:
        s, c = net.spec.state, net.spec.coef
        return (net.dtq, net.gamma, net.theta, s.min_int, s.max_int, c.min_int, c.max_int,
                c.frac, s.frac, net.spec.weight_shift)

    def initial_state(self, batch: int, hidden: int) -> tuple:
        u = np.zeros((batch, hidden), np.int64)
        return u, u.copy(), u.copy()

    def step(self, net, acc, state, consts) -> tuple:
        """(u, v, q), z after one step on the synaptic sums ``acc``; ``consts``: net.step_constants()."""
        from ..arith import resonator_step

        u, v, q, z = resonator_step(acc, *state, net.d, net.c, *consts, self.q_mode)
        return (u, v, q), z


for _name, _flags in RESONATOR_FLAGS.items():
    register(ResonatorKind(_name, _flags))
