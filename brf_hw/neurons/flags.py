"""Which of BRF's mechanisms each Euler resonator kind keeps: plain Python, so that the integer
chain and the hardware (``fixed.kinds``) can name a kind's flags without importing torch."""

from __future__ import annotations

from typing import NamedTuple


class ResonatorFlags(NamedTuple):
    """Which of BRF's three mechanisms a resonator variant keeps (the paper's ablations).

    boundary      b includes p(omega), the damping at the divergence boundary
    refractory    the threshold is raised by q: z = H(u - theta - q)
    smooth_reset  q deepens the damping: b includes -q
    q evolves (q = gamma*q + z) when either of the last two uses it, else stays 0."""

    boundary: bool = True
    refractory: bool = True
    smooth_reset: bool = True

    @property
    def uses_q(self) -> bool:
        return self.refractory or self.smooth_reset


BRF = ResonatorFlags()
RF = ResonatorFlags(False, False, False)

# BRF, its three ablations and RF are one step with flags (one fused kernel, one integer step).
RESONATOR_FLAGS = {
    "brf": BRF,
    "brf-no-boundary": ResonatorFlags(boundary=False),  # p(omega) dropped from b
    "brf-no-refractory": ResonatorFlags(refractory=False),  # threshold without q
    "brf-no-reset": ResonatorFlags(smooth_reset=False),  # q not in the damping
    "rf": RF,  # Izhikevich RF without reset
}


def q_mode(flags: ResonatorFlags) -> int:
    """Where q enters the step, as the kernels' and the integer step's bits: 1 the damping
    (``cpu_resonator.Q_DAMP``), 2 the threshold (``Q_THRESH``)."""
    return (1 if flags.smooth_reset else 0) | (2 if flags.refractory else 0)
