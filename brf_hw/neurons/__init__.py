"""Neuron models: pure step functions (``functional``), surrogate spikes, thin modules.

Names resolve on first use, so ``neurons.flags`` (plain Python) is importable without torch."""

from importlib import import_module

_WHERE = {
    "ALIFState": "functional", "ResonatorState": "functional", "check_omega": "functional", "p_omega": "functional",
    "NEURON_KINDS": "modules", "NeuronConfig": "modules", "hidden_layer": "modules",
    "SURROGATES": "surrogate", "spike_fn": "surrogate",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
