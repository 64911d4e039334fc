"""Divergence boundary of BRF neurons for several dt, with trained networks' neurons on it
(the paper's Section 3 and Appendix A.5).

Below threshold (q = 0) one BRF step is the linear map (u, v) -> (1 + dt*b) (u, v) + dt*omega
(-v, u) with b = p(omega) - b_offset: a rotation by about dt*omega, scaled by the modulus of its
eigenvalues, |1 + dt*b + i*dt*omega|. That modulus is 1 (sustained oscillation) exactly on

    b = p(omega) = (-1 + sqrt(1 - (dt*omega)^2)) / dt,     defined for dt*|omega| < 1,

below the curve the oscillation decays, above it it grows. BRF puts every neuron b_offset
below the curve (and the smooth reset q deeper still), so no trained neuron can diverge; the
curve ends at omega = 1/dt (b = -1/dt), the highest angular frequency a neuron can have.
The curve is ``neurons.functional.p_omega``; ``spectral_radius`` measures the map's modulus from
the project's own ``brf_step``, which the tests use to check that the curve is where it crosses 1.

Plot: the curve for each dt (full range, and zoomed to the networks' omega range with each
neuron at (omega, p(omega) - b_offset)). A checkpoint gives float parameters; an integer
artifact the omega and b_offset its integer d and c stand for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cli_util import POSITIVE_FLOAT, int_range
from .common import DEFAULT_OUT, UserError, load_neuron_params, out_path, pyplot, save_png, write_csv

DEFAULT_DTS = [0.005, 0.01, 0.02, 0.05]


def add_arguments(p) -> None:
    p.add_argument("networks", nargs="*", help="checkpoints (.pt) or integer artifacts (.npz) whose neurons to plot")
    p.add_argument("--dts", nargs="+", type=POSITIVE_FLOAT, default=DEFAULT_DTS, help="dt of each boundary curve (s)")
    p.add_argument("--omega-max", type=POSITIVE_FLOAT, default=100.0, help="right end of the full-range plot (rad/s)")
    p.add_argument("--points", type=int_range(2), default=400, help="points per curve")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--name", default="boundary")


def curve(omega: np.ndarray, dt: float) -> np.ndarray:
    """b on the divergence boundary: p(omega), NaN where dt*|omega| >= 1 (no boundary there)."""
    from ..neurons.functional import p_omega

    w = np.asarray(omega, np.float64)
    inside = np.abs(w) * dt < 1.0
    b = np.full(w.shape, np.nan)
    b[inside] = p_omega(torch.from_numpy(w[inside]), dt).numpy()
    return b


def omega_grid(omega_max: float, dt: float, points: int) -> np.ndarray:
    """omega from 0 to omega_max, or to just short of 1/dt, where the curve ends at b = -1/dt."""
    return np.linspace(0.0, min(omega_max, (1.0 - 1e-12) / dt), points)


def spectral_radius(omega: float, b_offset: float, dt: float) -> float:
    """Largest |eigenvalue| of one BRF step below threshold, measured from ``brf_step``: the
    step's linear map applied to the unit vectors u = 1 and v = 1 (zero input, q = 0). A negative
    b_offset puts b above p(omega), which the trained neuron (|b_offset|) never reaches."""
    from ..neurons.functional import ResonatorState, brf_step
    from ..neurons.surrogate import spike_fn

    one, zero = torch.ones(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    u0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    state = ResonatorState(u0, 1.0 - u0, zero, zero)  # column 0: u = 1, column 1: v = 1
    new = brf_step(zero, state, one * omega, one * b_offset, dt=dt, theta=float("inf"), gamma=0.9,
                   spike=spike_fn("double_gaussian"))
    jac = torch.stack([new.u, new.v]).numpy()  # [[du/du, du/dv], [dv/du, dv/dv]]
    return float(np.abs(np.linalg.eigvals(jac)).max())


def _neuron_rows(label: str, params) -> list[dict]:
    p = curve(params.omega, params.dt)
    return [{"network": label, "neuron": i, "dt": params.dt, "omega": w, "b_offset": bo, "p_omega": pw,
             "b": pw - bo, "dt_omega": params.dt * w, "radius": spectral_radius(w, bo, params.dt)}
            for i, (w, bo, pw) in enumerate(zip(params.omega, params.b_offset, p))]


def plot(dts, omega_max, points, networks, path: Path) -> None:
    plt = pyplot()
    fig, (ax, zx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, dt in enumerate(sorted(dts)):
        w = omega_grid(omega_max, dt, points)
        ax.plot(w, curve(w, dt), color=f"C{k}", label=f"dt = {dt:g} (ends at omega = {1 / dt:g})")
    ax.set_xlabel("omega (rad/s)")
    ax.set_ylabel("b = p(omega) on the boundary")
    ax.set_title("divergence boundary: oscillation grows above a curve, decays below", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if networks:
        hi = max(float(np.max(p.omega)) for _, p in networks) * 1.1 + 1e-9
        wz = np.linspace(0.0, hi, points)
        for k, dt in enumerate(sorted(dts)):
            zx.plot(wz, curve(wz, dt), color=f"C{k}", lw=1, label=f"boundary, dt = {dt:g}")
        markers = "os^Dv"
        for m, (label, p) in enumerate(networks):
            b = curve(p.omega, p.dt) - p.b_offset
            zx.scatter(p.omega, b, s=18, marker=markers[m % len(markers)], facecolors="none",
                       edgecolors=f"C{len(dts) + m}", label=f"{label} (dt = {p.dt:g}): p(omega) - b_offset")
        bmin = min(float(np.min(curve(p.omega, p.dt) - p.b_offset)) for _, p in networks)
        zx.set_ylim(bmin * 1.1 - 0.1, 0.3)
        zx.set_xlim(0.0, hi)
        zx.set_title("trained neurons: b_offset below their boundary", fontsize=9)
    else:
        zx.axis("off")
    zx.set_xlabel("omega (rad/s)")
    zx.set_ylabel("b")
    zx.grid(alpha=0.3)
    if networks:
        zx.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def run(args) -> None:
    if any(dt <= 0 for dt in args.dts):
        raise UserError(f"--dts must be positive, got {args.dts}")
    networks = []
    for path in args.networks:
        networks.append(("/".join(Path(path).parts[-3:]), load_neuron_params(path, args.paper_neuron)))
    rows = [{"dt": dt, "omega": wi, "p_omega": b} for dt in args.dts
            for wi, b in zip(omega_grid(args.omega_max, dt, args.points),
                             curve(omega_grid(args.omega_max, dt, args.points), dt))]
    write_csv(out_path(args.out, f"{args.name}.csv"), rows)
    neuron_rows = [r for label, p in networks for r in _neuron_rows(label, p)]
    if neuron_rows:
        write_csv(out_path(args.out, f"{args.name}_neurons.csv"), neuron_rows)
    plot(args.dts, args.omega_max, args.points, networks, out_path(args.out, f"{args.name}.png"))
    for dt in args.dts:
        print(f"dt = {dt:g}: boundary defined for |omega| < {1 / dt:g}, p(1/(2 dt)) = {curve(np.array([0.5 / dt]), dt)[0]:.4g}")
    for label, p in networks:
        r = [x for x in neuron_rows if x["network"] == label]
        print(f"{label}: {len(r)} neurons, dt*omega <= {max(x['dt_omega'] for x in r):.3f}, b_offset "
              f"{min(x['b_offset'] for x in r):.3g}..{max(x['b_offset'] for x in r):.3g} below the boundary, "
              f"step modulus <= {max(x['radius'] for x in r):.5f}")
    print(f"wrote {args.out}/{args.name}.png, {args.name}.csv" + (f", {args.name}_neurons.csv" if neuron_rows else ""))
