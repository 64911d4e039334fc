"""Heaviside spike with surrogate gradients.

Forward is the exact step H(x) = [x > 0] (strictly greater: the fixed-point threshold comparison
uses the same rule). Backward replaces dH/dx by a smooth bump, as in Yin et al. (2021).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

SurrogateGrad = Callable[[torch.Tensor], torch.Tensor]

# The published BRF / ALIF set-up: p = 0.15 (side-lobe height), s = 0.5 (width), gain 0.5.
HEIGHT = 0.15
WIDTH = 0.5
SCALE = 6.0
GAIN = 0.5


def normal_pdf(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    return torch.exp(-((x - mu) ** 2) / (2.0 * sigma**2)) / (math.sqrt(2.0 * math.pi) * sigma)


def double_gaussian(x: torch.Tensor) -> torch.Tensor:
    """0.5 * [(1+p) N(x;0,s) - 2p N(x;0,6s)]: one narrow positive bump, one wide negative one."""
    return GAIN * (
        (1.0 + HEIGHT) * normal_pdf(x, 0.0, WIDTH) - 2.0 * HEIGHT * normal_pdf(x, 0.0, SCALE * WIDTH)
    )


def multi_gaussian(x: torch.Tensor) -> torch.Tensor:
    """0.5 * [(1+p) N(x;0,s) - p N(x;+s,6s) - p N(x;-s,6s)] (Yin et al.'s variant)."""
    return GAIN * (
        (1.0 + HEIGHT) * normal_pdf(x, 0.0, WIDTH)
        - HEIGHT * normal_pdf(x, WIDTH, SCALE * WIDTH)
        - HEIGHT * normal_pdf(x, -WIDTH, SCALE * WIDTH)
    )


SURROGATES: dict[str, SurrogateGrad] = {
    "double_gaussian": double_gaussian,
    "multi_gaussian": multi_gaussian,
}


class _SpikeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.name = name
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * SURROGATES[ctx.name](x), None


SpikeFn = Callable[[torch.Tensor], torch.Tensor]


def spike_fn(name: str = "double_gaussian") -> SpikeFn:
    """Return H(x) whose backward is the named surrogate gradient."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; choose one of {sorted(SURROGATES)}")
    return lambda x: _SpikeFunction.apply(x, name)
