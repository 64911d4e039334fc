"""The accelerator's input stream: sequences back to back, one beat per step, ``first`` set on the
step that starts a sequence (the hidden state, the LI potentials and a mean readout's running sums
are cleared there). The golden model's streams, the RTL runs and the host build streams here."""

from __future__ import annotations

import numpy as np


def sequence_starts(steps: int, sequences: int = 1) -> np.ndarray:
    """``first`` [sequences * steps] for ``sequences`` sequences of ``steps`` steps back to back."""
    first = np.zeros(steps * sequences, bool)
    first[::max(steps, 1)] = True
    return first


def to_stream(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time-major sequences x [T, B, ...] -> (the stream [B * T, ...], sequence after sequence, its
    ``first`` flags)."""
    x = np.asarray(x)
    steps, batch = x.shape[:2]
    return np.swapaxes(x, 0, 1).reshape(batch * steps, *x.shape[2:]), sequence_starts(steps, batch)


def from_stream(values: np.ndarray, steps: int) -> np.ndarray:
    """The inverse of ``to_stream`` for per-step values [B * T, ...] of equal-length sequences:
    time-major [T, B, ...]."""
    values = np.asarray(values)
    return np.swapaxes(values.reshape(-1, steps, *values.shape[1:]), 0, 1)
