"""Thin nn.Module wrappers: trainable parameters, their init distributions, and the constraint
that keeps BRF's omega inside the divergence boundary. The maths lives in ``functional``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from . import functional as F
from .flags import RESONATOR_FLAGS
from .surrogate import spike_fn

RESONATOR_KINDS = (*RESONATOR_FLAGS, "bhrf")
NEURON_KINDS = RESONATOR_KINDS + ("alif", "lif")

# Training keeps |omega| <= OMEGA_MARGIN / dt: after every optimiser step the raw parameter is
# projected back (see ``constrain_``). The margin keeps sqrt(1 - (dt*omega)^2) and its gradient
# finite; building or loading a model with |omega| >= 1/dt is an error instead.
OMEGA_MARGIN = 0.999


@dataclass(frozen=True)
class NeuronConfig:
    """Hidden-neuron hyper-parameters and init distributions (paper defaults: ECG)."""

    kind: str = "brf"
    dt: float = 0.01
    theta: float = 1.0
    gamma: float = 0.9
    omega_init: tuple[float, float] = (3.0, 5.0)  # U(low, high)
    b_offset_init: tuple[float, float] = (0.1, 1.0)  # U(low, high)
    tau_m_init: tuple[float, float] = (20.0, 5.0)  # ALIF, N(mean, std), in steps
    tau_adp_init: tuple[float, float] = (200.0, 50.0)  # ALIF, N(mean, std), in steps
    theta0: float = 0.01  # ALIF base threshold
    beta: float = 1.8  # ALIF adaptation strength
    surrogate: str = "double_gaussian"

    def __post_init__(self):
        if self.kind not in NEURON_KINDS:
            raise ValueError(f"unknown neuron kind {self.kind!r}; choose one of {NEURON_KINDS}")
        if not self.dt > 0:
            raise ValueError(f"dt must be positive, got {self.dt}")
        if self.bounded and max(map(abs, self.omega_init)) * self.dt >= 1.0:
            raise ValueError(
                f"omega_init {self.omega_init} reaches the divergence boundary 1/dt = {1 / self.dt:g}"
            )

    @property
    def bounded(self) -> bool:
        """p(omega) enters the damping, so |omega| must stay below 1/dt."""
        flags = RESONATOR_FLAGS.get(self.kind)
        return flags is not None and flags.boundary

    def replace(self, **changes) -> "NeuronConfig":
        return dataclasses.replace(self, **changes)


class ResonatorLayer(nn.Module):
    """BRF (and ablations), RF or BHRF neurons. Trainable omega and b_offset enter the maths as |parameter|."""

    def __init__(self, size: int, config: NeuronConfig):
        super().__init__()
        if config.kind not in RESONATOR_KINDS:
            raise ValueError(f"ResonatorLayer takes {RESONATOR_KINDS}, got {config.kind!r}")
        self.config = config
        self.size = size
        self.omega_param = nn.Parameter(torch.empty(size).uniform_(*config.omega_init))
        self.b_offset_param = nn.Parameter(torch.empty(size).uniform_(*config.b_offset_init))
        self.spike = spike_fn(config.surrogate)
        self.validate()

    @property
    def omega(self) -> torch.Tensor:
        return self.omega_param.abs()

    @property
    def b_offset(self) -> torch.Tensor:
        return self.b_offset_param.abs()

    def validate(self) -> None:
        if self.config.bounded:
            F.check_omega(self.omega_param, self.config.dt, f"{self.config.kind} omega")

    @torch.no_grad()
    def constrain_(self) -> None:
        if self.config.bounded:
            limit = OMEGA_MARGIN / self.config.dt
            self.omega_param.clamp_(-limit, limit)

    def initial_state(self, batch: int, like: torch.Tensor) -> F.ResonatorState:
        zeros = like.new_zeros(batch, self.size)
        return F.ResonatorState(zeros, zeros, zeros, zeros)

    def forward(self, current: torch.Tensor, state: F.ResonatorState) -> F.ResonatorState:
        c = self.config
        if c.kind in RESONATOR_FLAGS:
            return F.brf_step(current, state, self.omega, self.b_offset, dt=c.dt, theta=c.theta,
                              gamma=c.gamma, spike=self.spike, flags=RESONATOR_FLAGS[c.kind])
        return F.bhrf_step(current, state, self.omega, self.b_offset,
                           dt=c.dt, theta=c.theta, gamma=c.gamma, spike=self.spike)


class ALIFLayer(nn.Module):
    """Adaptive LIF baseline with trainable membrane and adaptation time constants (in steps)."""

    def __init__(self, size: int, config: NeuronConfig):
        super().__init__()
        self.config = config
        self.size = size
        self.tau_m = nn.Parameter(torch.empty(size).normal_(*config.tau_m_init))
        self.tau_adp = nn.Parameter(torch.empty(size).normal_(*config.tau_adp_init))
        self.spike = spike_fn(config.surrogate)

    def validate(self) -> None:
        for name in ("tau_m", "tau_adp"):
            if not torch.isfinite(getattr(self, name)).all():
                raise ValueError(f"ALIF {name} contains NaN or inf")

    def constrain_(self) -> None:
        pass

    def initial_state(self, batch: int, like: torch.Tensor) -> F.ALIFState:
        zeros = like.new_zeros(batch, self.size)
        return F.ALIFState(zeros, zeros, zeros)

    def forward(self, current: torch.Tensor, state: F.ALIFState) -> F.ALIFState:
        c = self.config
        return F.alif_step(current, state, F.decay(self.tau_m), F.decay(self.tau_adp),
                           theta0=c.theta0, beta=c.beta, spike=self.spike)


class LIFLayer(nn.Module):
    """LIF baseline: ALIF without adaptation, one trainable membrane time constant (in steps)."""

    def __init__(self, size: int, config: NeuronConfig):
        super().__init__()
        self.config = config
        self.size = size
        self.tau_m = nn.Parameter(torch.empty(size).normal_(*config.tau_m_init))
        self.spike = spike_fn(config.surrogate)

    def validate(self) -> None:
        if not torch.isfinite(self.tau_m).all():
            raise ValueError("LIF tau_m contains NaN or inf")

    def constrain_(self) -> None:
        pass

    def initial_state(self, batch: int, like: torch.Tensor) -> F.ALIFState:
        zeros = like.new_zeros(batch, self.size)
        return F.ALIFState(zeros, zeros, zeros)

    def forward(self, current: torch.Tensor, state: F.ALIFState) -> F.ALIFState:
        return F.lif_step(current, state, F.decay(self.tau_m), theta0=self.config.theta0, spike=self.spike)


class LIReadout(nn.Module):
    """Leaky-integrator output neurons with trainable time constant tau_o (in steps)."""

    def __init__(self, size: int, tau_init: tuple[float, float] = (20.0, 1.0)):
        super().__init__()
        self.size = size
        self.tau_o = nn.Parameter(torch.empty(size).normal_(*tau_init))

    @property
    def alpha(self) -> torch.Tensor:
        return F.decay(self.tau_o)

    def forward(self, current: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return F.li_step(current, o, self.alpha)


def hidden_layer(size: int, config: NeuronConfig) -> nn.Module:
    layers = {"alif": ALIFLayer, "lif": LIFLayer}
    return layers.get(config.kind, ResonatorLayer)(size, config)
