"""FixedSpec: the formats of every quantity in the integer BRF network.

Quantities and formats (see ``arith`` for the step itself):
  weight      dt*W_in, dt*W_rec: the increment of u per input / recurrent spike
  out_weight  (1-alpha)*W_out: the increment of the LI potential per hidden spike
  coef        d = 1 + dt*(p(omega) - b_offset), c = dt*omega, dt, gamma, alpha
  state       u, v, q (q >= 0), and theta
  output      o, the LI potentials
Accumulators are exact: acc_bits() wide enough for any sum of fan-in weights, no saturation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .formats import Format, frac_min_error

STATE_INT_BITS = 5  # u, v, q in [-32, 32): threshold 1 plus refractory build-up with headroom
OUTPUT_INT_BITS = 7  # o in [-128, 128)
COEF_INT_BITS = 1  # coefficients in [-2, 2): d, gamma, alpha < 1, c = dt*omega < 1


@dataclass(frozen=True)
class FixedSpec:
    weight: Format
    out_weight: Format
    coef: Format = Format(16, 16 - 1 - COEF_INT_BITS)
    state: Format = Format(16, 16 - 1 - STATE_INT_BITS)
    output: Format = Format(16, 16 - 1 - OUTPUT_INT_BITS)

    def __post_init__(self):
        if self.state.frac < 1 or self.coef.frac < 1:
            raise ValueError("state and coefficient formats need at least one fraction bit")

    @property
    def weight_shift(self) -> int:
        """Right shift that aligns an input accumulator to the state format (negative: left)."""
        return self.weight.frac - self.state.frac

    @property
    def out_weight_shift(self) -> int:
        return self.out_weight.frac - self.output.frac

    def acc_bits(self, fan_in: int, fmt: Format | None = None) -> int:
        fmt = fmt or self.weight
        return fmt.bits + max(1, math.ceil(math.log2(fan_in + 1)))

    def to_dict(self) -> dict:
        return {name: getattr(self, name).to_dict() for name in ("weight", "out_weight", "coef", "state", "output")}

    @classmethod
    def from_dict(cls, d: dict) -> "FixedSpec":
        return cls(**{name: Format.from_dict(v) for name, v in d.items()})

    def describe(self) -> str:
        return ", ".join(f"{n} {getattr(self, n).describe()}"
                         for n in ("weight", "out_weight", "coef", "state", "output"))


def spec_for_model(model, weight_bits: int = 8, out_weight_bits: int | None = None, state_bits: int = 16,
                   coef_bits: int = 16, output_bits: int = 16, weight_frac: int | None = None,
                   out_weight_frac: int | None = None) -> FixedSpec:
    """Formats for a trained float model: weight fraction bits chosen (unless given) for the least
    quantization error of dt*W (resp. (1-alpha)*W_out), clipping included; fixed integer ranges for
    state, output and coefficients."""
    import torch

    with torch.no_grad():
        dt = model.config.neuron.dt
        w = (dt * model.synapses.weight.detach().double()).numpy()
        alpha = model.output.alpha.detach().double()
        w_out = ((1 - alpha)[:, None] * model.readout.weight.detach().double()).numpy()
    out_weight_bits = out_weight_bits or weight_bits
    return FixedSpec(
        weight=Format(weight_bits, weight_frac if weight_frac is not None else frac_min_error(w, weight_bits)),
        out_weight=Format(out_weight_bits, out_weight_frac if out_weight_frac is not None
                          else frac_min_error(w_out, out_weight_bits)),
        coef=Format(coef_bits, coef_bits - 1 - COEF_INT_BITS),
        state=Format(state_bits, state_bits - 1 - STATE_INT_BITS),
        output=Format(output_bits, output_bits - 1 - OUTPUT_INT_BITS),
    )


@dataclass(frozen=True)
class IntNetwork:
    """A BRF network in integers: everything the golden model and the hardware need."""

    spec: FixedSpec
    w_in: np.ndarray  # [H, I] weight format
    w_rec: np.ndarray  # [H, H] weight format
    w_out: np.ndarray  # [O, H] out_weight format
    d: np.ndarray  # [H] coef
    c: np.ndarray  # [H] coef
    alpha: np.ndarray  # [O] coef
    dtq: int  # dt in coef
    gamma: int  # coef
    theta: int  # state

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.w_in.shape[1], self.w_in.shape[0], self.w_out.shape[0]

    def step_constants(self) -> tuple:
        """The scalar arguments of ``arith.brf_step`` after (acc, u, v, q, d, c)."""
        s, c = self.spec.state, self.spec.coef
        return (self.dtq, self.gamma, self.theta, s.min_int, s.max_int, c.min_int, c.max_int,
                c.frac, s.frac, self.spec.weight_shift)

    def li_constants(self) -> tuple:
        o = self.spec.output
        return (o.min_int, o.max_int, self.spec.coef.frac, self.spec.out_weight_shift)
