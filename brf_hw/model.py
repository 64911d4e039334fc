"""The recurrent spiking network: inputs -> fully recurrent hidden layer -> LI readout.

One bias-free linear over [x_t, z_(t-1)] drives the hidden neurons; an optional fixed pruning
mask zeroes part of the recurrent weights (the paper's ablation). Tensors are time-major:
x is [T, B, inputs], outputs are [T, B, outputs].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from . import kernels
from .neurons.modules import LIReadout, NeuronConfig, hidden_layer


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape (inputs, hidden neurons, LI outputs), its hidden neurons' configuration
    (kind, dt, theta, gamma, init ranges), the readout's time-constant init and the fraction of
    recurrent weights pruned."""

    inputs: int
    hidden: int
    outputs: int
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    tau_o_init: tuple[float, float] = (20.0, 1.0)  # N(mean, std), in steps
    mask_prob: float = 0.0  # fraction of recurrent weights pruned to zero

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        neuron = {k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("neuron").items()}
        d["tau_o_init"] = tuple(d["tau_o_init"])
        return cls(neuron=NeuronConfig(**neuron), **d)


class RSNNOutput(NamedTuple):
    outputs: torch.Tensor  # [T, B, outputs] LI potentials o[t]
    spikes_per_step: torch.Tensor  # [T, B] number of hidden spikes at each step
    traces: dict[str, torch.Tensor] | None  # hidden state per step, [T, B, hidden] each


class RSNN(nn.Module):
    """``kernel`` picks the BPTT implementation (see ``brf_hw.kernels``); ``tbptt`` > 0 truncates
    BPTT: the hidden state is detached every ``tbptt`` steps."""

    def __init__(self, config: ModelConfig, kernel: str = "auto", tbptt: int = 0):
        super().__init__()
        if kernel not in kernels.KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {kernels.KERNELS}")
        if tbptt < 0:
            raise ValueError(f"tbptt must be >= 0, got {tbptt}")
        self.kernel = kernel
        self.tbptt = tbptt
        self.fixed = None  # a FixedSpec switches the forward to the integer (QAT) network
        if not 0.0 <= config.mask_prob < 1.0:
            raise ValueError(f"mask_prob must be in [0, 1), got {config.mask_prob}")
        self.config = config
        n_in, n_hid, n_out = config.inputs, config.hidden, config.outputs
        self.synapses = nn.Linear(n_in + n_hid, n_hid, bias=False)
        self.hidden = hidden_layer(n_hid, config.neuron)
        self.readout = nn.Linear(n_hid, n_out, bias=False)
        self.output = LIReadout(n_out, config.tau_o_init)
        nn.init.xavier_uniform_(self.synapses.weight)
        nn.init.xavier_uniform_(self.readout.weight)
        mask = (torch.rand(n_hid, n_hid) >= config.mask_prob).to(torch.float32)
        self.register_buffer("recurrent_mask", mask)

    @property
    def input_weight(self) -> torch.Tensor:
        return self.synapses.weight[:, : self.config.inputs]

    @property
    def recurrent_weight(self) -> torch.Tensor:
        return self.synapses.weight[:, self.config.inputs :] * self.recurrent_mask

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def constrain_(self) -> None:
        """Project parameters back into their valid range (call after each optimiser step)."""
        self.hidden.constrain_()
        with torch.no_grad():
            self.synapses.weight[:, self.config.inputs :].mul_(self.recurrent_mask)

    def validate(self) -> None:
        self.hidden.validate()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.validate()
        return result

    def forward(self, x: torch.Tensor, record: bool = False) -> RSNNOutput:
        if x.dim() != 3 or x.shape[-1] != self.config.inputs:
            raise ValueError(f"expected x of shape [T, B, {self.config.inputs}], got {tuple(x.shape)}")
        if self.fixed is not None:
            from .fixed.qat import qat_forward

            outputs, z, states = qat_forward(self, x, self.fixed)
            counts = z.sum(-1)
        else:
            x = x.to(self.synapses.weight.dtype)
            if kernels.choose(self.kernel, self.config.neuron.kind, x.device) != "fused":
                return self.reference_forward(x, record)
            outputs, z, counts, states = kernels.fused_sequence(self, x, self.tbptt, record)
        traces = {**states, "z": z} if record else None
        return RSNNOutput(outputs, counts, traces)

    def reference_forward(self, x: torch.Tensor, record: bool = False) -> RSNNOutput:
        """Reference BPTT loop: one Python iteration per time step, autograd does the rest."""
        steps, batch, _ = x.shape
        input_current = x @ self.input_weight.t()  # all steps at once; only the recurrence loops
        w_rec_t = self.recurrent_weight.t()
        state = self.hidden.initial_state(batch, x)
        spikes = []
        traces: dict[str, list] = {name: [] for name in state._fields} if record else {}
        for t in range(steps):
            if self.tbptt and t and t % self.tbptt == 0:
                state = type(state)(*(s.detach() for s in state))
            state = self.hidden(input_current[t] + state.z @ w_rec_t, state)
            spikes.append(state.z)
            for name in traces:
                traces[name].append(getattr(state, name))
        z = torch.stack(spikes)
        outputs = self.readout_sequence(z)
        stacked = {k: torch.stack(v) for k, v in traces.items()} if record else None
        return RSNNOutput(outputs, z.sum(-1), stacked)

    def readout_sequence(self, z: torch.Tensor) -> torch.Tensor:
        """LI potentials for a whole spike train z [T, B, hidden]."""
        drive = self.readout(z)
        o = drive.new_zeros(drive.shape[1:])
        outs = []
        for t in range(drive.shape[0]):
            o = self.output(drive[t], o)
            outs.append(o)
        return torch.stack(outs)


def build_model(config: ModelConfig, seed: int | None = None, **options) -> RSNN:
    """Build an RSNN; with a seed, initialisation is reproducible and independent of global RNG use."""
    if seed is None:
        return RSNN(config, **options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RSNN(config, **options)
