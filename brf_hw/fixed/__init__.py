"""The one fixed-point definition (formats, integer step) and quantization-aware training."""

from .formats import Format
from .spec import FixedSpec, IntNetwork, spec_for_model

__all__ = ["Format", "FixedSpec", "IntNetwork", "spec_for_model"]
