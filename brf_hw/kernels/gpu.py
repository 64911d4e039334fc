"""GPU kernels: not written yet; the CUDA path uses the reference loop."""


def unavailable_reason() -> str:
    return "no GPU kernel yet"
