"""FixedSpec: the formats of every quantity in the integer BRF network.

Quantities and formats (see ``arith`` for the step itself):
  weight      dt*W_in: the increment of u per input spike
  rec_weight  dt*W_rec: the increment of u per recurrent spike (its own format: recurrent weights
              are several times smaller than input weights, and at 4 bits one shared format
              rounds most of them to zero)
  out_weight  (1-alpha)*W_out: the increment of the LI potential per hidden spike
  coef        d = 1 + dt*(p(omega) - b_offset), c = dt*omega, dt, gamma, alpha
  state       u, v, q (q >= 0), and theta
  output      o, the LI potentials
  input       x, unsigned integers of ``input.bits`` bits (1: spikes; 8: e.g. a pixel intensity);
              one unit is worth ``input.unit`` in the float model, folded into the input weights
              (weight holds dt*W_in*unit), so the hardware sees only integers
  readout     how a sequence's class is read from o: per step, at the last step, or from the
              running sum of o (``Readout``)
Multi-bit inputs enter the synaptic sum as x @ w_in, exactly (the golden model sums the rows
of the nonzero inputs times their values; the accelerator multiplies in its lanes, ``hw.layout``).
Synaptic accumulation: both kinds of weight are aligned (shifted left) to the finer of the two
fractions, acc_frac; the accumulator is wide enough for any sum of fan-in weights (no saturation)
and is shifted to the state format once per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from .formats import Format, FormatError, frac_min_error

# u, v, q in [-32, 32): threshold 1 plus refractory build-up (q < 1/(1-gamma) = 10) with headroom.
# Trained float networks drive a few neurons' u, v to hundreds, which saturate here; Q6.9 instead
# measured no different over 11 seeds (README, "state format"), so the finer step stays the default.
STATE_INT_BITS = 5
OUTPUT_INT_BITS = 7  # o in [-128, 128)
COEF_INT_BITS = 1  # coefficients in [-2, 2): d, gamma, alpha < 1, c = dt*omega < 1
FORMAT_NAMES = ("weight", "rec_weight", "out_weight", "coef", "state", "output")
MAX_INPUT_BITS = 16


@dataclass(frozen=True)
class InputFormat:
    """Unsigned integer inputs of ``bits`` bits; ``unit`` is the float value of one integer step
    (1.0 for spikes, 1/255 for MNIST pixels read as [0, 1])."""

    bits: int = 1
    unit: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.bits, int) and 1 <= self.bits <= MAX_INPUT_BITS):
            raise FormatError(f"input format must be 1..{MAX_INPUT_BITS} unsigned bits, got {self.bits!r}")
        if not (math.isfinite(self.unit) and self.unit > 0):
            raise FormatError(f"input unit must be a positive number, got {self.unit!r}")

    @property
    def max_int(self) -> int:
        return (1 << self.bits) - 1

    def to_dict(self) -> dict:
        return {"bits": self.bits, "signed": False, "unit": self.unit, "fxp": f"fxp-u{self.bits}/0"}

    @classmethod
    def from_dict(cls, d: dict) -> "InputFormat":
        if d.get("signed", False):
            raise FormatError("input format must be unsigned")
        return cls(int(d["bits"]), float(d["unit"]))

    def describe(self) -> str:
        return f"u{self.bits} (unit {self.unit:g})"

    def integers(self, x) -> np.ndarray:
        """Float inputs -> the integers of this format (x / unit), which must be exact, so the
        integer network sees what the float one saw; uint8 or uint16. Errors name the value."""
        scaled = np.asarray(x, dtype=np.float64) / self.unit
        ints = np.round(scaled)
        off = np.abs(scaled - ints)
        if off.size and off.max() > 1e-3:  # float32 data: 1/255 is not exact, so not == 0
            raise FormatError(f"input value {float(np.asarray(x).flat[off.argmax()]):g} is not a whole multiple "
                              f"of the input unit {self.unit:g}: not representable in {self.describe()}")
        ints = ints.astype(np.int64)
        self.check(ints)
        return ints.astype(np.uint8 if self.bits <= 8 else np.uint16)

    def check(self, x: np.ndarray, what: str = "input") -> None:
        """x must hold integers in 0..2^bits-1; the error names the first offending value."""
        bad = (x < 0) | (x > self.max_int)
        if np.any(bad):
            value = x[tuple(np.argwhere(bad)[0])]
            raise FormatError(f"{what} value {value} is outside the input format {self.describe()}: "
                              f"0..{self.max_int}")


class ReadoutRule(StrEnum):
    """How a sequence's class is read (``Readout``); a str, so it compares equal to its name."""

    PER_STEP = "per_step"
    LAST = "last"
    MEAN = "mean"


READOUT_RULES = tuple(r.value for r in ReadoutRule)


@dataclass(frozen=True)
class Readout:
    """How the class of a sequence is read from the LI potentials o, in integers:
    per_step  argmax of o at every step (a label per step, ECG)
    last      argmax of o at the sequence's last step (S-MNIST)
    mean      argmax of the running sum s_t = sat(s_(t-1) + o_t) (the time-mean's argmax without a
              division), s held in ``sum_bits`` two's-complement bits, saturating at its bounds:
              sum_bits = output bits + ceil(log2(max_steps)) never saturates within max_steps steps.
    Ties: the lowest index wins, everywhere."""

    rule: ReadoutRule = ReadoutRule.PER_STEP
    sum_bits: int = 0

    def __post_init__(self):
        if self.rule not in READOUT_RULES:
            raise FormatError(f"readout rule must be one of {', '.join(READOUT_RULES)}, got {self.rule!r}")
        object.__setattr__(self, "rule", ReadoutRule(self.rule))
        if self.keeps_sums and not 2 <= self.sum_bits <= 62:
            raise FormatError(f"a mean readout needs a running-sum width of 2..62 bits, got {self.sum_bits}")

    @classmethod
    def for_steps(cls, rule: str, output_bits: int, max_steps: int) -> "Readout":
        return cls(rule, output_bits + max(1, math.ceil(math.log2(max_steps))) if rule == ReadoutRule.MEAN else 0)

    @property
    def keeps_sums(self) -> bool:
        """A mean readout keeps the running sums of o (and their argmax, ``sum_label``)."""
        return self.rule is ReadoutRule.MEAN

    @property
    def per_step(self) -> bool:
        """A class per step (ECG), not one per sequence."""
        return self.rule is ReadoutRule.PER_STEP

    def classes(self, labels: np.ndarray, sum_labels: np.ndarray | None = None) -> np.ndarray:
        """The classes this rule reads from a sequence's per-step argmaxes, time first: ``labels``
        [T, ...] of o, ``sum_labels`` [T, ...] of the running sums (mean only). Per step: [T, ...];
        last and mean: the last step's [...]. The golden model, the RTL checks and the host all read
        classes here."""
        if self.rule is ReadoutRule.PER_STEP:
            return labels
        if self.rule is ReadoutRule.LAST:
            return labels[-1]
        if sum_labels is None:
            raise ValueError("a mean readout reads its class from the running sums' argmax (sum_labels)")
        return sum_labels[-1]

    @property
    def sum_bounds(self) -> tuple[int, int]:
        return -(1 << (self.sum_bits - 1)), (1 << (self.sum_bits - 1)) - 1

    def to_dict(self) -> dict:
        return {"rule": self.rule.value, "sum_bits": self.sum_bits}

    @classmethod
    def from_dict(cls, d: dict) -> "Readout":
        return cls(str(d["rule"]), int(d.get("sum_bits", 0)))


def _sum_bits(term_bits: int, terms: int) -> int:
    """Width that holds any sum of ``terms`` signed values of ``term_bits`` bits."""
    return term_bits + max(1, math.ceil(math.log2(terms + 1)))


@dataclass(frozen=True)
class FixedSpec:
    """The fixed-point formats of a network, one per kind of value: input weights (``weight``),
    recurrent weights, output weights (scaled by 1 - alpha), coefficients (d, dt*omega, dt, gamma,
    alpha; 1 integer bit), the neuron state u, v, q (Q5.10 at 16 bits by default), the LI
    potentials (``output``, 7 integer bits) and the unsigned ``input`` format. Every derived width
    of the datapath (accumulator alignment, synapse and accumulator bits) is a property here."""

    weight: Format
    rec_weight: Format
    out_weight: Format
    coef: Format = Format(16, 16 - 1 - COEF_INT_BITS)
    state: Format = Format(16, 16 - 1 - STATE_INT_BITS)
    output: Format = Format(16, 16 - 1 - OUTPUT_INT_BITS)
    input: InputFormat = InputFormat()

    def __post_init__(self):
        if self.state.frac < 1 or self.coef.frac < 1:
            raise FormatError("state and coefficient formats need at least one fraction bit")

    @property
    def acc_frac(self) -> int:
        return max(self.weight.frac, self.rec_weight.frac)

    @property
    def in_align(self) -> int:
        """Left shift of an input weight onto the accumulator's fraction."""
        return self.acc_frac - self.weight.frac

    @property
    def rec_align(self) -> int:
        return self.acc_frac - self.rec_weight.frac

    @property
    def synapse_bits(self) -> int:
        """Width that holds any aligned term of the synaptic sum, x * w counted as input.bits
        shifted terms: a recurrent weight, or an input weight times one bit of an input value.
        ``int64_widths`` bounds the golden model with it; the accelerator sizes its own words from
        the weights (``hw.layout``)."""
        return max(self.weight.bits + self.in_align + self.input.bits - 1, self.rec_weight.bits + self.rec_align)

    def sources(self, n_in: int, n_hid: int) -> int:
        """Terms of the synaptic sum in ``acc_bits``'s bound: one per input bit, one per hidden neuron."""
        return n_in * self.input.bits + n_hid

    @property
    def weight_shift(self) -> int:
        """Right shift that aligns the synaptic accumulator to the state format (negative: left)."""
        return self.acc_frac - self.state.frac

    @property
    def out_weight_shift(self) -> int:
        return self.out_weight.frac - self.output.frac

    def align(self, w_in, w_rec):
        """Integer input and recurrent weights shifted onto the accumulator's fraction."""
        return w_in << self.in_align, w_rec << self.rec_align

    def acc_bits(self, fan_in: int) -> int:
        return _sum_bits(self.synapse_bits, fan_in)

    def out_acc_bits(self, fan_in: int) -> int:
        return _sum_bits(self.out_weight.bits, fan_in)

    def int64_widths(self, n_in: int, n_hid: int) -> dict[str, int]:
        """Bits of each intermediate value of ``arith`` (sign included) for a network of this
        fan-in: the golden model and the QAT kernel compute in int64, the hardware in exact widths,
        so they agree only while every one of these fits in 64 bits."""
        c, s, o = self.coef.bits, self.state.bits, self.output.bits
        return {
            "synaptic current (acc aligned to the state)": self.acc_bits(self.sources(n_in, n_hid))
            + max(0, -self.weight_shift),
            "e*u - c*v": c + s + 1,
            "dt*q, gamma*q": c + s,
            "alpha*o": c + o,
            "output drive (acc_o aligned to the output)": self.out_acc_bits(n_hid) + max(0, -self.out_weight_shift),
        }

    def check_int64(self, n_in: int, n_hid: int) -> None:
        for what, bits in self.int64_widths(n_in, n_hid).items():
            if bits > 63:  # one bit of headroom for the rounding constant and the sums around it
                raise FormatError(f"formats too wide for 64-bit integer arithmetic: {what} needs {bits} bits "
                                  f"({self.describe()}); narrow the coefficient, state or output format")

    def to_dict(self) -> dict:
        return {name: getattr(self, name).to_dict() for name in (*FORMAT_NAMES, "input")}

    @classmethod
    def from_dict(cls, d: dict) -> "FixedSpec":
        """``input`` absent (artifacts before version 3, old checkpoints): spike inputs."""
        formats = {name: Format.from_dict(v) for name, v in d.items() if name != "input"}
        return cls(**formats, input=InputFormat.from_dict(d["input"]) if "input" in d else InputFormat())

    def describe(self) -> str:
        return ", ".join(f"{n} {getattr(self, n).describe()}" for n in (*FORMAT_NAMES, "input"))


def spec_for_model(model, weight_bits: int = 8, out_weight_bits: int | None = None, state_bits: int = 16,
                   coef_bits: int = 16, output_bits: int = 16, weight_frac: int | None = None,
                   out_weight_frac: int | None = None, rec_weight_bits: int | None = None,
                   rec_weight_frac: int | None = None, state_frac: int | None = None,
                   inputs: InputFormat = InputFormat()) -> FixedSpec:
    """Formats for a trained float model: weight fraction bits chosen (unless given) for the least
    quantization error of dt*W_in, dt*W_rec (resp. (1-alpha)*W_out), each on its own, clipping
    included; fixed integer ranges for output and coefficients, and for the state (the kind's
    ``state_int_bits``: Q5.10 for the resonators, Q3.12 for ALIF and LIF at 16 bits) unless
    ``state_frac`` says otherwise. Input weights are per input unit (dt*W_in*inputs.unit)."""
    import torch

    from . import kinds

    kind = kinds.KINDS.get(model.config.neuron.kind)  # a kind without integer arithmetic: the resonators' dt
    with torch.no_grad():
        gain = kind.input_gain(model) if kind else model.config.neuron.dt
        w = (gain * model.synapses.weight.detach().double()).numpy()
        n_in = model.config.inputs
        w_in, w_rec = w[:, :n_in] * inputs.unit, w[:, n_in:]
        alpha = model.output.alpha.detach().double()
        w_out = ((1 - alpha)[:, None] * model.readout.weight.detach().double()).numpy()
    out_weight_bits = out_weight_bits or weight_bits
    rec_weight_bits = rec_weight_bits or weight_bits
    return FixedSpec(
        weight=Format(weight_bits, weight_frac if weight_frac is not None else frac_min_error(w_in, weight_bits)),
        rec_weight=Format(rec_weight_bits, rec_weight_frac if rec_weight_frac is not None
                          else frac_min_error(w_rec, rec_weight_bits)),
        out_weight=Format(out_weight_bits, out_weight_frac if out_weight_frac is not None
                          else frac_min_error(w_out, out_weight_bits)),
        coef=Format(coef_bits, coef_bits - 1 - COEF_INT_BITS),
        state=Format(state_bits, state_frac if state_frac is not None
                     else state_bits - 1 - (kind.state_int_bits if kind else STATE_INT_BITS)),
        output=Format(output_bits, output_bits - 1 - OUTPUT_INT_BITS),
        input=inputs,
    )


@dataclass(frozen=True, kw_only=True)
class IntNetwork:
    """A network in integers: everything the golden model and the hardware need. ``neuron`` names
    its hidden neurons' kind (``fixed.kinds``), which says which of the per-kind fields it holds
    (the others stay None): d, c, dtq, gamma, theta for the resonator kinds (BRF, its ablations,
    RF) and BHRF (d, c meaning its own, ``kinds.harmonic``); alpha_m, rho, theta0, beta for ALIF
    (LIF: alpha_m, theta0)."""

    spec: FixedSpec
    w_in: np.ndarray  # [H, I] weight format
    w_rec: np.ndarray  # [H, H] rec_weight format
    w_out: np.ndarray  # [O, H] out_weight format
    alpha: np.ndarray  # [O] coef (the LI readout's decay)
    readout: Readout = Readout()
    neuron: str = "brf"
    # resonator kinds
    d: np.ndarray | None = None  # [H] coef
    c: np.ndarray | None = None  # [H] coef
    dtq: int | None = None  # dt in coef
    gamma: int | None = None  # coef
    theta: int | None = None  # state
    # ALIF, LIF
    alpha_m: np.ndarray | None = None  # [H] coef, membrane decay
    rho: np.ndarray | None = None  # [H] coef, adaptation decay (ALIF)
    theta0: int | None = None  # state, base threshold
    beta: int | None = None  # coef, adaptation strength (ALIF)

    def __post_init__(self):
        from . import kinds

        kind = kinds.get(self.neuron)
        missing = [name for name in (*kind.arrays, *kind.scalars) if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.neuron} network needs {', '.join(missing)}")
        self.spec.check_int64(self.shape[0], self.shape[1])

    @property
    def kind(self):
        """The hidden neurons' ``fixed.kinds`` module object: arrays, integer step."""
        from . import kinds

        return kinds.get(self.neuron)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.w_in.shape[1], self.w_in.shape[0], self.w_out.shape[0]

    def aligned_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """w_in, w_rec shifted onto the accumulator's fraction (what the synapse memory holds)."""
        return self.spec.align(self.w_in, self.w_rec)

    def step_constants(self) -> tuple:
        """The scalar arguments of the kind's integer step after its state and arrays
        (``arith.brf_step``: after (acc, u, v, q, d, c), before ``resonator_step``'s q_mode)."""
        return self.kind.step_constants(self)

    def li_constants(self) -> tuple:
        o = self.spec.output
        return (o.min_int, o.max_int, self.spec.coef.frac, self.spec.out_weight_shift)
