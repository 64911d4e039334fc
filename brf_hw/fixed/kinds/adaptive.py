"""ALIF and LIF (the paper's baseline) in integers: one step with a flag (``arith.adaptive_step``).

Per hidden neuron: alpha_m = exp(-1/tau_m) (membrane decay) and, for ALIF, rho = exp(-1/tau_adp)
(adaptation decay), both in the coefficient format; scalars theta0 (state format) and, for ALIF,
beta (coefficient format). State u and, for ALIF, a (the adaptation of the next step). The float
model's input gain (1 - alpha_m) is folded into each neuron's input and recurrent weights, as
(1 - alpha) is into the output weights: the step adds the synaptic current as it comes.

beta (1.8 in the paper) lives in the coefficient format, [-2, 2): at the default 16 bits (Q1.14)
1.8 is 29491/2^14 = 1.79999, 7e-6 off, with no format of its own in the artifact; a beta the
format cannot hold is refused by name. LIF is ALIF with beta = 0 and no a: its hardware keeps u only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import register

# torch (quantize) and numba (step) are imported where used: loading an artifact or building
# the hardware needs neither


@dataclass(frozen=True)
class AdaptiveKind:
    name: str
    adapt: bool  # ALIF: the threshold adapts; LIF: it is theta0
    # u in [-8, 8) (Q3.12 at 16 bits): trained ECG networks keep u within [-4, 1] and the threshold
    # below theta0 + beta = 1.81, while theta0 = 0.01 needs the finer step (41/4096, not 10/1024)
    state_int_bits: int = 3

    @property
    def arrays(self) -> dict:
        return {"alpha_m": ("coef", ("H",)), **({"rho": ("coef", ("H",))} if self.adapt else {})}

    @property
    def scalars(self) -> dict:
        return {"theta0": "state", **({"beta": "coef"} if self.adapt else {})}

    @property
    def state_names(self) -> str:
        return "ua" if self.adapt else "u"

    @property
    def stored_state(self) -> str:
        """What the accelerator's state memory keeps per neuron (the spike is not state: ``arith``)."""
        return self.state_names

    @property
    def multipliers(self) -> int:
        """Products per lane of the accelerator's step: alpha_m*u (ALIF also beta*a, rho*(a - z))."""
        return 3 if self.adapt else 1

    def input_gain(self, model):
        """(1 - alpha_m) per neuron [H, 1], float (torch): folded into the input and recurrent weights."""
        from ...neurons.functional import decay

        return (1.0 - decay(model.hidden.tau_m.double()))[:, None]

    def quantize(self, model, spec, fake_quant) -> dict:
        """alpha_m (and rho) as fake-quantized (integer-valued, STE) float64 tensors."""
        from ...neurons.functional import decay

        hidden = model.hidden
        out = {"alpha_m": fake_quant(decay(hidden.tau_m.double()), spec.coef)}
        if self.adapt:
            out["rho"] = fake_quant(decay(hidden.tau_adp.double()), spec.coef)
        return out

    def scalar_constants(self, model, spec) -> dict[str, int]:
        """theta0 in the state format, beta in the coefficient format (must fit)."""
        cfg = model.config.neuron
        out = {"theta0": int(spec.state.quantize(cfg.theta0, "theta0", strict=True))}
        if self.adapt:
            out["beta"] = int(spec.coef.quantize(cfg.beta, "beta", strict=True))
        return out

    def check(self, net) -> str | None:
        """Decays in [0, 1]: what keeps a in [0, 1] (and so the threshold theta0 + beta*a bounded)."""
        one = net.spec.coef.scale
        for name in self.arrays:
            values = getattr(net, name)
            if np.any(values < 0) or np.any(values > one):
                return f"array {name} (a decay) must lie in [0, 1]"
        return None

    def step_constants(self, net) -> tuple:
        s = net.spec.state
        return (net.theta0, net.beta if self.adapt else 0, s.min_int, s.max_int, net.spec.coef.frac, s.frac,
                net.spec.weight_shift)

    def initial_state(self, batch: int, hidden: int) -> tuple:
        u = np.zeros((batch, hidden), np.int64)
        return (u, u.copy()) if self.adapt else (u,)

    def step(self, net, acc, state, consts) -> tuple:
        """(u, a) or (u,), z after one step on the synaptic sums ``acc``; ``consts``: net.step_constants()."""
        from ..arith import adaptive_step

        if self.adapt:
            u, a, z = adaptive_step(acc, state[0], state[1], net.alpha_m, net.rho, *consts, 1)
            return (u, a), z
        u, _, z = adaptive_step(acc, state[0], 0, net.alpha_m, 0, *consts, 0)
        return (u,), z


register(AdaptiveKind("alif", True))
register(AdaptiveKind("lif", False))
