"""Amaranth hardware: the streaming BRF-RSNN accelerator and its fixed-point datapath."""

from .core import BRFAccelerator

__all__ = ["BRFAccelerator"]
