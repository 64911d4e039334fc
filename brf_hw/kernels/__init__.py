"""Fused whole-sequence BPTT kernels and their selection.

``--kernel auto`` takes the fused kernel where one exists for the neuron type and device, else
the reference autograd loop; ``fused`` insists (an error names what is missing); ``reference``
always runs the plain loop, which stays the ground truth the kernels are tested against.
"""

from __future__ import annotations

import warnings

import torch

from ..neurons.functional import p_omega
from ..neurons.flags import RESONATOR_FLAGS, q_mode

KERNELS = ("auto", "fused", "reference")
FUSED_KINDS = tuple(RESONATOR_FLAGS)  # BRF, its ablations and RF: one kernel, q_mode switches
CPU_ONLY_KINDS = ("bhrf", "alif", "lif")  # their fused kernel is numba's (no Triton one yet)

_warned: set[str] = set()


def _cpu_backend():
    try:
        from . import fused
    except ImportError as exc:  # numba missing or broken
        return None, f"the CPU kernel needs numba ({exc})"
    return fused, None


def unavailable_reason(kind: str, device: torch.device) -> str | None:
    """Why the fused kernel cannot run this network here, or None if it can."""
    if kind not in FUSED_KINDS + CPU_ONLY_KINDS:
        return f"no fused kernel for {kind!r} neurons (fused: {', '.join(FUSED_KINDS + CPU_ONLY_KINDS)})"
    if kind in CPU_ONLY_KINDS and device.type != "cpu":
        return f"no GPU kernel for {kind!r} neurons (only the CPU one)"
    if device.type == "cpu":
        return _cpu_backend()[1]
    if device.type == "cuda":
        from . import gpu

        return gpu.unavailable_reason()
    return f"no fused kernel for device {device.type!r}"


def choose(requested: str, kind: str, device: torch.device) -> str:
    if requested not in KERNELS:
        raise ValueError(f"unknown kernel {requested!r}; choose one of {KERNELS}")
    if requested == "reference":
        return "reference"
    reason = unavailable_reason(kind, device)
    if reason is None:
        return "fused"
    if requested == "fused":
        raise RuntimeError(f"--kernel fused: {reason}")
    if kind in FUSED_KINDS + CPU_ONLY_KINDS and reason not in _warned:  # a missing tool, not a design choice: say so once
        _warned.add(reason)
        warnings.warn(f"falling back to the reference BPTT loop: {reason}", RuntimeWarning, stacklevel=3)
    return "reference"


def fused_sequence(model, x: torch.Tensor, tbptt: int, record: bool = True):
    """Hidden spikes and states, then LI potentials, for a whole sequence: on the CPU one fused
    call for the whole network (every weight gradient summed by the kernel in a fixed order), on
    CUDA one for the hidden layer and one for the LI readout (ALIF, LIF: one for the hidden layer and
    one for the readout on the CPU). Returns (outputs, z, spikes per step [T, B], traces), traces the
    hidden state per step by name, as the reference's state fields (only where ``record``: on the
    CPU the states are otherwise left in the kernel's own layout)."""
    hidden = model.hidden
    cfg = hidden.config
    if cfg.kind == "bhrf":
        return _bhrf_sequence(model, x, tbptt)
    if cfg.kind in CPU_ONLY_KINDS:
        return _alif_sequence(model, x, tbptt)
    flags = RESONATOR_FLAGS[cfg.kind]
    b0 = p_omega(hidden.omega, cfg.dt) - hidden.b_offset if flags.boundary else -hidden.b_offset
    constants = (cfg.dt, cfg.theta, cfg.gamma, q_mode(flags), cfg.surrogate, tbptt)
    if x.device.type != "cuda":
        fused = _cpu_backend()[0]
        outputs, z, counts, u, v, q = fused.FusedNetworkCPU.apply(
            x, model.input_weight, model.recurrent_weight, hidden.omega, b0, model.readout.weight,
            model.output.alpha, *constants, record)
        return outputs, z, counts, {"u": u, "v": v, "q": q}
    from . import gpu

    i_in = x @ model.input_weight.t()
    z, u, v, q = gpu.FusedResonatorGPU.apply(i_in, model.recurrent_weight, hidden.omega, b0, *constants)
    outputs = gpu.FusedLIGPU.apply(model.readout(z), model.output.alpha)
    return outputs, z, z.sum(-1), {"u": u, "v": v, "q": q}


def _bhrf_sequence(model, x: torch.Tensor, tbptt: int):
    from .fused import FusedBHRFCPU, FusedLICPU

    hidden = model.hidden
    cfg = hidden.config
    w2 = hidden.omega**2
    b0 = 0.5 * cfg.dt * w2 + hidden.b_offset  # the reference's b without q, in its order
    i_in = x @ model.input_weight.t()
    z, u, v, q = FusedBHRFCPU.apply(i_in, model.recurrent_weight, w2, b0, cfg.dt, cfg.theta, cfg.gamma,
                                    cfg.surrogate, tbptt)
    return FusedLICPU.apply(model.readout(z), model.output.alpha), z, z.sum(-1), {"u": u, "v": v, "q": q}


def _alif_sequence(model, x: torch.Tensor, tbptt: int):
    from .fused import FusedALIFCPU, FusedLICPU
    from ..neurons.functional import decay

    hidden = model.hidden
    cfg = hidden.config
    alpha = decay(hidden.tau_m)
    if cfg.kind == "alif":
        rho, beta = decay(hidden.tau_adp), cfg.beta
    else:  # LIF: no adaptation (beta = 0; rho = 1 keeps a at 0, as the reference step does)
        rho, beta = torch.ones_like(alpha), 0.0
    i_in = x @ model.input_weight.t()
    z, u, a = FusedALIFCPU.apply(i_in, model.recurrent_weight, alpha, rho, cfg.theta0, beta, cfg.surrogate, tbptt)
    return FusedLICPU.apply(model.readout(z), model.output.alpha), z, z.sum(-1), {"u": u, "a": a}
