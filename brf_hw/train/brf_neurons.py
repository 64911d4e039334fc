"""Checkpoints of the paper's own code (AdaptiveAILab/brf-neurons) as brf-hw networks.

That code saves ``model.state_dict()`` (alone or as ``{'model_state_dict': ...}``) of a network
input -> one recurrent hidden cell -> LI readout, with these tensors:

    hidden.linear.weight  [H, I+H]  input columns first, then the recurrent ones (the cell sees
                                    torch.cat((x[t], z[t-1])))
    hidden.linear.mask    [H, I+H]  only with pruning (LinearMask); the forward uses weight * mask
    hidden.omega, hidden.b_offset   [H]  resonator cells (RFCell, BRFCell, HRFCell): |.| enters the maths
    hidden.tau_mem, hidden.tau_adp  [H]  ALIFCell
    out.linear.weight     [O, H]
    out.tau_mem           [O]       LI readout, alpha = exp(-1/|tau_mem|)

The names and the equations map one to one onto brf-hw's RSNN (``synapses``, ``hidden``,
``readout``, ``output``; the same |.| and exp(-1/|tau|)), so the conversion copies tensors. RF,
BRF and BHRF cells store the same tensors: which one trained the file is not in it, so the caller
names it (``resonator``; the paper's main model, BRF, by default). The constants its cells hard-code
(dt = 0.01, theta = 1, gamma = 0.9; ALIF theta0 = 0.01, beta = 1.8) are brf-hw's defaults.
"""

from __future__ import annotations

import torch

from ..cli_util import UserError
from ..model import RSNN, ModelConfig, build_model
from ..neurons import NeuronConfig
from ..neurons.modules import RESONATOR_KINDS

FORMAT = "brf-neurons"
_RESONATOR = ("omega", "b_offset")
_ALIF = ("tau_mem", "tau_adp")
_READOUT = {"out.linear.weight", "out.tau_mem"}


class BrfNeuronsError(UserError, ValueError):
    """A brf-neurons checkpoint brf-hw cannot represent; the message says what is in the way."""


def state_dict_of(obj) -> dict | None:
    """The model state dict if ``obj`` (what torch.load returned) is a brf-neurons checkpoint."""
    if isinstance(obj, dict) and isinstance(obj.get("model_state_dict"), dict):
        obj = obj["model_state_dict"]
    if isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj) \
            and any(k.startswith(("hidden.", "hidden1.", "out.")) for k in obj):
        return obj
    return None


def _hidden_layer(state: dict) -> str:
    """'resonator' or 'alif' from the hidden cell's own parameters, or a refusal naming the layer."""
    if any(k.startswith("hidden1.") for k in state):
        raise BrfNeuronsError("it has two hidden layers (hidden1, hidden2: DoubleALIFRNN); brf-hw networks have one")
    names = {k[len("hidden."):] for k in state if k.startswith("hidden.") and not k.startswith("hidden.linear.")}
    if names == set(_RESONATOR):
        return "resonator"
    if names == set(_ALIF):
        return "alif"
    if names == {"tau_mem"}:
        raise BrfNeuronsError("its hidden layer is a LIF layer (hidden.tau_mem, no adaptation); brf-hw implements "
                              f"{', '.join(RESONATOR_KINDS)} and alif hidden layers")
    found = ", ".join(f"hidden.{n}" for n in sorted(names)) or "none"
    raise BrfNeuronsError(f"its hidden layer is of a type brf-hw does not implement (parameters: {found}); "
                          "known: hidden.omega + hidden.b_offset (RF/BRF/BHRF), hidden.tau_mem + hidden.tau_adp (ALIF)")


def _tensor(state: dict, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    t = state.get(key)
    if not isinstance(t, torch.Tensor):
        raise BrfNeuronsError(f"{key} is missing")
    if tuple(t.shape) != shape:
        raise BrfNeuronsError(f"{key} has shape {tuple(t.shape)}, expected {shape}")
    return t.detach().to(torch.float32)


def to_model(state: dict, resonator: str = "brf", kernel: str = "auto") -> RSNN:
    """brf-hw's float RSNN computing what the brf-neurons network of ``state`` computes.
    ``resonator``: the cell that trained a resonator file (brf, rf or bhrf); an ALIF file is
    recognised by its tensors."""
    if resonator not in RESONATOR_KINDS:
        raise BrfNeuronsError(f"a resonator checkpoint is read as one of {', '.join(RESONATOR_KINDS)}, not {resonator!r}")
    layer = _hidden_layer(state)
    own = _RESONATOR if layer == "resonator" else _ALIF
    biases = sorted(k for k in state if k.endswith(".bias"))
    if biases:
        raise BrfNeuronsError(f"it has biases ({', '.join(biases)}); brf-hw networks have none (as the paper's)")
    unknown = sorted(set(state) - {"hidden.linear.weight", "hidden.linear.mask", *_READOUT}
                     - {f"hidden.{name}" for name in own})
    if unknown:
        raise BrfNeuronsError(f"it holds tensors brf-hw does not know: {', '.join(unknown)}")
    weight = state.get("hidden.linear.weight")
    out_w = state.get("out.linear.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] <= weight.shape[0]:
        raise BrfNeuronsError("hidden.linear.weight must be a [hidden, inputs + hidden] matrix")
    if not isinstance(out_w, torch.Tensor) or out_w.dim() != 2:
        raise BrfNeuronsError("out.linear.weight must be an [outputs, hidden] matrix")
    n_hid, n_in, n_out = weight.shape[0], weight.shape[1] - weight.shape[0], out_w.shape[0]
    tensors = {
        "synapses.weight": _tensor(state, "hidden.linear.weight", (n_hid, n_in + n_hid)),
        "readout.weight": _tensor(state, "out.linear.weight", (n_out, n_hid)),
        "output.tau_o": _tensor(state, "out.tau_mem", (n_out,)),
        **{f"hidden.{name}": _tensor(state, f"hidden.{name}", (n_hid,)) for name in own},
    }
    mask = torch.ones(n_hid, n_in + n_hid)
    if "hidden.linear.mask" in state:
        mask = _tensor(state, "hidden.linear.mask", (n_hid, n_in + n_hid))
        if not ((mask == 0) | (mask == 1)).all():
            raise BrfNeuronsError("hidden.linear.mask holds values other than 0 and 1")
        if not mask[:, :n_in].all():
            raise BrfNeuronsError("hidden.linear.mask prunes input weights; brf-hw prunes only recurrent ones")
    kind = resonator if layer == "resonator" else "alif"
    # seeded: the values are overwritten, but reading a file must not advance the caller's RNG
    model = build_model(ModelConfig(n_in, n_hid, n_out, neuron=NeuronConfig(kind=kind)), seed=0, kernel=kernel)
    hidden = {"omega": model.hidden.omega_param, "b_offset": model.hidden.b_offset_param} if layer == "resonator" \
        else {"tau_mem": model.hidden.tau_m, "tau_adp": model.hidden.tau_adp}
    with torch.no_grad():
        model.synapses.weight.copy_(tensors["synapses.weight"] * mask)  # what LinearMask.forward uses
        model.recurrent_mask.copy_(mask[:, n_in:])
        model.readout.weight.copy_(tensors["readout.weight"])
        model.output.tau_o.copy_(tensors["output.tau_o"])
        for name, param in hidden.items():
            param.copy_(tensors[f"hidden.{name}"])
    try:
        model.validate()
    except ValueError as exc:
        raise BrfNeuronsError(f"read as {kind}: {exc}") from exc
    return model


def checkpoint_info(obj: dict, model: RSNN) -> dict:
    """What callers read from a brf-hw checkpoint dict, for a brf-neurons file: no training
    config (the paper's code keeps it in the file name), the epoch where the file has one."""
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    return {"format": FORMAT, "model_config": model.config.to_dict(), "train_config": {},
            "epoch": epoch if isinstance(epoch, int) else None}
