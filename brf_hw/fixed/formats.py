"""Signed two's-complement fixed-point formats (described with fxpmath) and float -> integer
quantization with the project's one rounding rule.

Rounding rule (everywhere: quantization, every right shift in the datapath): round half up,
i.e. floor(x + 1/2) in units of the last kept bit. For a right shift by s bits that is
(x + 2^(s-1)) >> s with an arithmetic shift, which is what the hardware does.
Saturation rule: a value outside the format is clipped to its minimum or maximum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fxpmath import Fxp

from ..cli_util import UserError


class FormatError(UserError, ValueError):
    """A format that cannot exist, or a value that cannot be put into one (NaN, out of range)."""


@dataclass(frozen=True)
class Format:
    """A signed two's-complement fixed-point format: ``bits`` in all, ``frac`` of them after the
    binary point (Q(bits-frac-1).frac); quantizes floats with round-half-up and saturation."""

    bits: int  # total word length, sign included
    frac: int  # fraction bits (may exceed bits, or be negative, as in fxpmath)

    def __post_init__(self):
        if not 2 <= self.bits <= 32:
            raise FormatError(f"format word length must be 2..32 bits, got {self.bits}")

    @property
    def min_int(self) -> int:
        return -(1 << (self.bits - 1))

    @property
    def max_int(self) -> int:
        return (1 << (self.bits - 1)) - 1

    @property
    def scale(self) -> float:
        return float(2.0**self.frac)

    @property
    def min_value(self) -> float:
        return self.min_int / self.scale

    @property
    def max_value(self) -> float:
        return self.max_int / self.scale

    def fxp(self) -> Fxp:
        """The fxpmath description of this format (signed, n_word, n_frac)."""
        return Fxp(None, signed=True, n_word=self.bits, n_frac=self.frac)

    def describe(self) -> str:
        return f"Q{self.bits - self.frac - 1}.{self.frac} (fxp-s{self.bits}/{self.frac})"

    def quantize(self, values, what: str = "value", strict: bool = False) -> np.ndarray:
        """Float -> int64 by round-half-up, then saturation. ``strict`` turns saturation into an
        error naming ``what`` (for constants whose clipping would change the model's meaning)."""
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise FormatError(f"{what}: NaN or inf cannot be quantized")
        ints = np.floor(x * self.scale + 0.5)
        over = (ints < self.min_int) | (ints > self.max_int)
        if strict and over.any():
            worst = x.flat[np.argmax(np.abs(x))]
            raise FormatError(f"{what}: {int(over.sum())} value(s) outside {self.describe()} "
                             f"range [{self.min_value:g}, {self.max_value:g}] (e.g. {worst:g})")
        return np.clip(ints, self.min_int, self.max_int).astype(np.int64)

    def to_float(self, ints) -> np.ndarray:
        return np.asarray(ints, dtype=np.float64) / self.scale

    def to_dict(self) -> dict:
        return {"bits": self.bits, "frac": self.frac, "fxp": f"fxp-s{self.bits}/{self.frac}"}

    @classmethod
    def from_dict(cls, d: dict) -> "Format":
        return cls(int(d["bits"]), int(d["frac"]))


def frac_for(max_abs: float, bits: int) -> int:
    """Most fraction bits such that max_abs still fits a signed ``bits``-bit word."""
    if max_abs <= 0:
        return bits - 1
    return int(bits - 1 - np.ceil(np.log2(max_abs * (1 + 2.0**-bits))))


def frac_min_error(values, bits: int, extra: int = 4) -> int:
    """Fraction bits with the least squared quantization error over ``values``, clipping included.
    Starts from the format that fits the largest |value| and tries up to ``extra`` more fraction
    bits: a few saturated outliers are often cheaper than a coarse grid for everything else."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0 or not np.any(x):
        return bits - 1
    first = frac_for(float(np.abs(x).max()), bits)
    errors = []
    for frac in range(first, first + extra + 1):
        fmt = Format(bits, frac)
        errors.append(float(((fmt.to_float(fmt.quantize(x)) - x) ** 2).sum()))
    return first + int(np.argmin(errors))
