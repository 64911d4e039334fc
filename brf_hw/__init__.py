"""brf-hw: Balanced resonate-and-fire spiking networks from PyTorch training to bit-exact hardware."""

__version__ = "0.1.0"
