"""One module per neuron kind of the integer chain, and the registry that finds them by name.

A kind bundles what the integer chain needs to know about its hidden neurons: the per-neuron
arrays and scalar constants it keeps in an ``IntNetwork`` and an artifact (with their formats),
how QAT quantizes the float parameters into them, its integer step (``fixed.arith``), and the
checks an artifact's values must pass. Everything around the hidden layer (synapses, LI readout,
readout rule) is shared. Adding a kind is one module here that calls ``register``.

The artifact's manifest names the kind (``neuron``); artifacts older than the field are BRF.
"""

from __future__ import annotations

from typing import Protocol

DEFAULT = "brf"  # what an artifact or network without a neuron field holds


class NeuronKind(Protocol):
    name: str
    arrays: dict[str, tuple[str, tuple[str, ...]]]  # name -> (format name, shape in I, H, O)
    scalars: dict[str, str]  # name -> format name
    state_names: str  # the state the step keeps per neuron (golden traces)
    stored_state: str  # what of it the accelerator's state memory keeps
    multipliers: int  # products per lane in the accelerator's step (``hw.resources``)
    state_int_bits: int  # the state format's default integer bits (``spec.spec_for_model``)

    def input_gain(self, model): ...  # float factor of the synaptic current folded into the weights

    def quantize(self, model, spec, fake_quant) -> dict: ...
    def scalar_constants(self, model, spec) -> dict[str, int]: ...
    def check(self, net) -> str | None: ...
    def step_constants(self, net) -> tuple: ...
    def initial_state(self, batch: int, hidden: int) -> tuple: ...
    def step(self, net, acc, state, consts) -> tuple: ...


KINDS: dict[str, NeuronKind] = {}


class UnknownKind(ValueError):
    pass


def register(kind: NeuronKind) -> NeuronKind:
    KINDS[kind.name] = kind
    return kind


def get(name: str, what: str = "neuron type") -> NeuronKind:
    """The kind called ``name``; the error names it and the known ones."""
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise UnknownKind(f"{what} {name!r} has no integer implementation; known: {', '.join(KINDS)}")
    return kind


from . import resonator  # noqa: E402,F401  (registers BRF, its ablations and RF)
from . import adaptive  # noqa: E402,F401  (registers ALIF and LIF)
from . import harmonic  # noqa: E402,F401  (registers BHRF)
