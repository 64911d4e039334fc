"""Amaranth hardware: the streaming BRF-RSNN accelerator and its fixed-point datapath."""

__all__ = ["BRFAccelerator"]


def __getattr__(name):
    # lazy: the numpy-only modules here (layout, resources) load without Amaranth and numba, so
    # synth can refuse a shape that cannot fit before those imports
    if name == "BRFAccelerator":
        from .core import BRFAccelerator
        return BRFAccelerator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
