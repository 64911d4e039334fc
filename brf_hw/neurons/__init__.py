"""Neuron models: pure step functions (``functional``), surrogate spikes, thin modules."""

from .functional import ALIFState, ResonatorState, check_omega, p_omega
from .modules import NEURON_KINDS, NeuronConfig, hidden_layer
from .surrogate import SURROGATES, spike_fn

__all__ = [
    "ALIFState", "ResonatorState", "check_omega", "p_omega",
    "NEURON_KINDS", "NeuronConfig", "hidden_layer", "SURROGATES", "spike_fn",
]
