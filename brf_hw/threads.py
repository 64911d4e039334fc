"""CPU thread policy for training: one call, before anything is computed.

``set_threads(n)`` gives the compiled kernels (numba) ``n`` worker threads and pins torch's
intra-op pool to one thread; ``set_threads(None)`` picks ``n`` = the CPUs this process may run on
(its affinity mask), capped by ``NUMBA_NUM_THREADS`` when that is set.

Why torch gets one thread whatever ``n`` is:

* Results. torch's CPU reductions and its GEMMs with a long reduction dimension (weight gradients
  summed over time x batch, a mean over more than 32k elements) split the sum by thread count, so
  their low bits change with ``torch.get_num_threads()``: training diverges after an epoch or two.
  The fused kernels compute every cross-batch sum in one fixed order (``brf_hw.kernels``), so with
  torch on one thread the numbers do not depend on ``n`` at all.
* Speed. With the fused kernels torch only computes the loss, the optimiser step and a few small
  tensors; two thread pools (torch's OpenMP and numba's) competing for the same cores
  oversubscribe them, which on a busy machine cost 3x (fused) to 16x (reference loop) against
  one thread.

A busy machine. numba's default OpenMP workers spin for a while after every parallel loop before
they sleep; when all cores are taken, that spinning takes the CPU from the thread doing the work:
on the 2-core machine at load ~4.5 an ECG epoch took 1.3 s with one thread and 2.2 s with two.
(OMP_WAIT_POLICY=PASSIVE fixes it, but only if set before torch is imported: numba's OpenMP calls
go to the runtime torch loaded.) ``set_threads`` therefore switches numba to its ``workqueue``
threading layer, whose idle workers sleep, unless NUMBA_THREADING_LAYER is set or numba's pool has
already started; the kernels hand out their blocks of sequences one at a time, so a descheduled
worker holds up no one. Measured at load ~4: 0.66 s with one thread and 0.66 s with two, while an
idle machine still gets both cores. Hence the default: every CPU this process may use.
(workqueue cannot run parallel kernels from two Python threads at once; training never does.)
"""

from __future__ import annotations

import os

import torch

_state: dict[str, int] = {}


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """The default kernel thread count: every CPU this process may use, at most NUMBA_NUM_THREADS."""
    n = available_cpus()
    env = os.environ.get("NUMBA_NUM_THREADS")
    if env and env.strip().isdigit() and int(env) > 0:
        n = min(n, int(env))
    return n


def set_threads(n: int | None = None) -> int:
    """Set the thread counts for this process; returns the kernel thread count used.

    ``n`` (>= 1) worker threads for the numba kernels, capped at numba's pool size (which
    ``NUMBA_NUM_THREADS`` fixes when numba starts); ``None`` picks :func:`default_threads`. torch's
    intra-op pool gets one thread (see the module docstring): results do not depend on ``n``.
    """
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    wanted = default_threads() if n is None else n
    try:
        import numba
        from numba.np.ufunc import parallel
    except ImportError:  # no numba: the reference loop runs on torch alone
        used = 1
    else:
        if not os.environ.get("NUMBA_THREADING_LAYER") and not getattr(parallel, "_is_initialized", True):
            numba.config.THREADING_LAYER = "workqueue"  # takes effect when the pool starts, just below
        used = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
        numba.set_num_threads(used)
    # after numba: starting numba's OpenMP pool (where that layer is used) resets the OpenMP
    # thread count that torch shares with it
    torch.set_num_threads(1)
    _state["threads"] = used
    return used


def current_threads() -> int | None:
    """What the last :func:`set_threads` call chose (None before any call)."""
    return _state.get("threads")
