"""Parts of the compiled CPU kernel on their own: the surrogate in each precision against the
formula, and the vectorised spike lists against numpy."""

import math

import numba
import numpy as np
import pytest
import torch

from brf_hw.kernels.cpu_resonator import spike_list
from brf_hw.kernels.cpu_surrogate import SURROGATE_CODES, surrogate_at
from brf_hw.neurons.surrogate import SURROGATES


@numba.njit(cache=True)
def _surrogate_of(x, code, out):
    for i in range(x.shape[0]):
        out[i] = surrogate_at(x[i], code)


def surrogate_values(x: np.ndarray, name: str) -> np.ndarray:
    out = np.empty_like(x)
    _surrogate_of(x, SURROGATE_CODES[name], out)
    return out


def exact(x: np.ndarray, name: str) -> np.ndarray:
    """The published formula in float64 (0.5 [(1 + p) N(x; 0, s) - ...], p = 0.15, s = 0.5)."""
    def normal(mu, sigma):
        return np.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)

    x = x.astype(np.float64)
    if name == "double_gaussian":
        return 0.5 * (1.15 * normal(0.0, 0.5) - 0.3 * normal(0.0, 3.0))
    return 0.5 * (1.15 * normal(0.0, 0.5) - 0.15 * normal(0.5, 3.0) - 0.15 * normal(-0.5, 3.0))


def test_surrogate_at_zero_by_hand():
    # 0.5 (1.15 / (0.5 sqrt(2 pi)) - 0.3 / (3 sqrt(2 pi))) = 0.5 (0.9175672 - 0.0398942)
    for dtype in (np.float32, np.float64):
        assert surrogate_values(np.zeros(1, dtype), "double_gaussian")[0] == pytest.approx(0.4388365, abs=1e-7)


@pytest.mark.parametrize("name", sorted(SURROGATE_CODES))
def test_surrogate_in_each_precision_against_the_formula(name):
    x = np.concatenate([np.linspace(-40, 40, 20001), [0.0, -0.0, 1e-30, 30.0, 1e4, -1e4]])
    want = exact(x, name)
    got64 = surrogate_values(x, name)
    assert np.max(np.abs(got64 - want)) < 1e-14
    x32 = x.astype(np.float32)
    want32 = exact(x32, name)  # the same inputs as the float32 kernel sees
    got32 = surrogate_values(x32, name)
    assert got32.dtype == np.float32
    torch32 = SURROGATES[name](torch.from_numpy(x32)).numpy()
    err32 = np.abs(got32.astype(np.float64) - want32)
    # no worse than torch's own float32 formula (the reference loop), 1 ulp of the peak at most
    assert err32.max() <= max(np.abs(torch32.astype(np.float64) - want32).max(), 3e-8)
    assert err32.max() < 6e-8
    # far tails: exactly 0 where 2^y leaves the normal range, never negative zero, NaN or inf
    assert np.all(np.isfinite(got32)) and got32[-1] == 0.0 and got32[-2] == 0.0


@numba.njit(cache=True)
def _lists(z, n):
    rows = z.shape[0] // n
    active = np.full(z.shape[0], -1, np.int64)
    counts = np.zeros(rows, np.int64)
    for r in range(rows):
        counts[r] = spike_list(z, r * n, n, active, r * n)
    return active, counts


@pytest.mark.parametrize("n", [1, 13, 16, 64, 100, 256, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spike_list_equals_numpy_nonzero(n, dtype):
    rng = np.random.default_rng(n)
    rows = 40
    z = np.zeros((rows, n), dtype)
    for r, density in enumerate(np.linspace(0, 1, rows)):
        z[r] = rng.random(n) < density
    z[1, :] = -0.0  # negative zero is no spike
    z[2, n - 1] = np.nan  # NaN compares unequal to zero: listed, as `x != 0.0` would
    z[3, 0] = 0.5
    active, counts = _lists(z.ravel(), n)
    for r in range(rows):
        want = np.flatnonzero(z[r] != 0)
        assert counts[r] == len(want)
        assert np.array_equal(active[r * n:r * n + counts[r]], want)
    assert counts[0] == 0 and counts[1] == 0 and counts[rows - 1] == n
