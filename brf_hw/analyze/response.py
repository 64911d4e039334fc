"""Frequency response of single BRF neurons, float against integer (the paper's Appendix A.4).

Method (paper): for input frequencies relative to the neuron's omega, omega_in = ratio * omega,
positive spikes arrive in phase, one at the start of every period 2*pi/omega_in (step
round(k * period / dt)), for 20 s at dt = 0.01; the response is the mean |u| over the sequence.
The neuron is driven below threshold (the threshold is set out of reach, so no spike and no
refractory q): the response of its damped oscillation, as the paper's figure shows.

Float: the project's BRF step (``neurons.functional.brf_step``) in float64. Integer: the golden
model (``golden.run``, i.e. ``fixed.arith.brf_step``) on an ``IntNetwork`` of the same neurons:
built by ``fixed.qat.to_int_network`` from the float parameters and a ``FixedSpec`` (default: the
project's formats, ``--state-bits/--state-frac/--coef-bits`` to try others), or, given an integer
artifact, its own d, c and formats. The integer threshold is set to the state format's maximum,
which u can never exceed (saturation), so the integer neuron stays subthreshold too.

Both neurons get the same input: the integer step adds dt*w quantized (weight format) and shifted
onto the state grid; the float step is given exactly that increment (``weight`` in the CSV is the
w it corresponds to), so what differs is the dynamics alone: rounded d = 1 + dt*(p(omega) -
b_offset) and c = dt*omega, and the rounding and saturation of u and v at every step. Without a
network, w defaults to 1 (the paper's unit spikes); with one, to each neuron's mean |W_in| over its
non-zero inputs: the size of an input spike that neuron really sees, which sets how many state
LSBs its response spans.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np
import torch

from ..cli_util import NON_NEGATIVE_INT, NON_NEGATIVE_FLOAT, POSITIVE_FLOAT, WORD_BITS, int_range
from .common import DEFAULT_OUT, UserError, load_checkpoint, load_int_artifact, out_path, pyplot, save_png, write_csv

SECONDS = 20.0
MIN_PERIODS = 3  # default neuron choice: omega >= 2*pi*3/20 s = 0.94 rad/s


def add_arguments(p) -> None:
    p.add_argument("--network", help="take the neurons from this checkpoint (.pt) or integer artifact (.npz)")
    p.add_argument("--neurons", nargs="+", type=NON_NEGATIVE_INT,
                   help="hidden-neuron indices of --network (default: 4 spread over its omega range)")
    p.add_argument("--omegas", nargs="+", type=POSITIVE_FLOAT, default=[5.0, 20.0, 50.0],
                   help="without --network: omega of each neuron (rad/s)")
    p.add_argument("--b-offsets", nargs="+", type=NON_NEGATIVE_FLOAT, default=[0.1],
                   help="without --network: b_offset per neuron (one value: all)")
    p.add_argument("--dt", type=POSITIVE_FLOAT, default=0.01)
    p.add_argument("--weight", type=POSITIVE_FLOAT, help="input weight w: u grows by dt*w per input spike (default: 1 "
                   "without --network; each neuron's mean |W_in| with one)")
    p.add_argument("--ratios", nargs=3, type=POSITIVE_FLOAT, default=[0.1, 3.0, 0.01], metavar=("FROM", "TO", "STEP"),
                   help="input frequency / omega grid (default 0.1 3.0 0.01)")
    p.add_argument("--seconds", type=POSITIVE_FLOAT, default=SECONDS)
    p.add_argument("--weight-bits", type=WORD_BITS, default=8)
    p.add_argument("--state-bits", type=WORD_BITS, default=16)
    p.add_argument("--state-frac", type=int_range(1, 31), help="state fraction bits (default: state bits - 6, Q5.10 at 16)")
    p.add_argument("--coef-bits", type=int_range(3, 32), default=16)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--name", default="response", help="file stem of the PNG and CSVs")


class Neurons(NamedTuple):
    omega: np.ndarray  # [H] rad/s, what the float step uses
    b_offset: np.ndarray  # [H]
    weight: np.ndarray  # [H] input weight w, snapped to the increment the integer step adds
    dt: float
    gamma: float
    int_net: object  # IntNetwork: one input channel per neuron, weight w on the diagonal, nothing else
    labels: list[str]


# --------------------------------------------------------------------------- inputs
def spike_trains(omega: np.ndarray, ratios: np.ndarray, dt: float, seconds: float) -> np.ndarray:
    """x [T, len(ratios), H] in {0, 1}: neuron h at ratio r gets a spike at each multiple of the
    period 2*pi / (r * omega_h), rounded to the nearest step (binary: at most one per step)."""
    steps = int(round(seconds / dt))
    x = np.zeros((steps, len(ratios), len(omega)), np.int64)
    for b, r in enumerate(ratios):
        for h, w in enumerate(omega):
            period = 2.0 * math.pi / (r * w * dt)  # in steps
            idx = np.round(np.arange(0.0, steps / period) * period).astype(np.int64)
            x[idx[idx < steps], b, h] = 1
    return x


# --------------------------------------------------------------------------- the two neurons
def float_response(neurons: Neurons, x: np.ndarray) -> np.ndarray:
    """mean |u| [B, H] of the float BRF step, below threshold (theta = inf)."""
    from ..neurons.functional import ResonatorState, brf_step
    from ..neurons.surrogate import spike_fn

    omega = torch.from_numpy(neurons.omega).double()
    b_off = torch.from_numpy(neurons.b_offset).double()
    xs = torch.from_numpy(x).double() * torch.from_numpy(neurons.weight)
    zeros = xs.new_zeros(xs.shape[1:])
    state = ResonatorState(zeros, zeros, zeros, zeros)
    total = torch.zeros_like(zeros)
    spike = spike_fn("double_gaussian")
    with torch.no_grad():
        for t in range(xs.shape[0]):
            state = brf_step(xs[t], state, omega, b_off, dt=neurons.dt, theta=math.inf, gamma=neurons.gamma,
                             spike=spike)
            total += state.u.abs()
    return (total / xs.shape[0]).numpy()


def int_response(neurons: Neurons, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mean |u| [B, H] of the golden model (dequantized), and the fraction of steps u or v sat at
    the state format's bounds (saturation flattens a response)."""
    from .. import golden

    net = neurons.int_net
    s = net.spec.state
    silent = dataclasses.replace(net, theta=s.max_int)  # u' <= max_int always: never above threshold
    res = golden.run(silent, x, record=True)
    u, v = res.traces["u"], res.traces["v"]
    saturated = ((u <= s.min_int) | (u >= s.max_int) | (v <= s.min_int) | (v >= s.max_int)).mean(0)
    return np.abs(u).mean(0) / s.scale, saturated


# --------------------------------------------------------------------------- building the neurons
def _probe_model(omega, b_offset, dt, weight, theta=1.0, gamma=0.9):
    """A 1-to-1 network of the given neurons: input h drives neuron h with weight w_h, no recurrence."""
    from ..model import ModelConfig, build_model
    from ..neurons import NeuronConfig

    h = len(omega)
    cfg = ModelConfig(h, h, 1, neuron=NeuronConfig(kind="brf", dt=dt, theta=theta, gamma=gamma,
                                                   omega_init=(0.5 / dt, 0.5 / dt)))
    model = build_model(cfg, seed=0, kernel="reference")
    with torch.no_grad():
        model.hidden.omega_param.copy_(torch.as_tensor(omega))
        model.hidden.b_offset_param.copy_(torch.as_tensor(b_offset))
        model.synapses.weight.zero_()
        model.synapses.weight[:, :h] = torch.diag(torch.as_tensor(weight, dtype=torch.float32))
        model.readout.weight.fill_(0.0)
    model.validate()
    return model


def _spec(model, args):
    from ..fixed.formats import Format
    from ..fixed.spec import spec_for_model

    spec = spec_for_model(model, weight_bits=args.weight_bits, state_bits=args.state_bits,
                          coef_bits=args.coef_bits, state_frac=args.state_frac)
    # recurrent and output weights are all zero here; give them a harmless format of their own
    return dataclasses.replace(spec, rec_weight=Format(args.weight_bits, args.weight_bits - 1),
                               out_weight=Format(args.weight_bits, args.weight_bits - 1))


def snapped_weight(net, dt: float) -> np.ndarray:
    """The w whose dt*w is exactly the increment of u the integer step adds per input spike
    (diagonal weight aligned to the accumulator, then ``arith.rshift`` onto the state grid)."""
    from ..fixed.arith import rshift

    w_in, _ = net.aligned_weights()
    cur = np.array([rshift(int(w), net.spec.weight_shift) for w in np.diag(w_in)], np.float64)
    return cur / net.spec.state.scale / dt


def neurons_from_floats(omega, b_offset, dt, weight, args, gamma=0.9, labels=None) -> Neurons:
    from ..fixed.qat import to_int_network

    omega = np.asarray(omega, np.float64)
    b_offset = np.broadcast_to(np.asarray(b_offset, np.float64), omega.shape).copy()
    weight = np.broadcast_to(np.asarray(weight, np.float64), omega.shape).copy()
    if np.any(omega <= 0) or np.any(omega * dt >= 1.0):
        raise UserError(f"omegas must lie in (0, 1/dt) = (0, {1 / dt:g}); got {list(omega)}")
    model = _probe_model(omega, b_offset, dt, weight, gamma=gamma)
    net = to_int_network(model, _spec(model, args))
    labels = labels or [f"omega {w:g}, b_off {b:g}" for w, b in zip(omega, b_offset)]
    snapped = snapped_weight(net, dt)
    if np.any(snapped == 0):
        raise UserError(f"input weight(s) {list(weight[snapped == 0])}: dt*w rounds to 0 on the state grid "
                        f"{net.spec.state.describe()}; use a larger --weight or more --state-frac")
    return Neurons(omega, b_offset, snapped, dt, gamma, net, labels)


def _mean_abs_input_weight(w: np.ndarray) -> np.ndarray:
    """Per neuron (row), the mean |weight| over its non-zero inputs (1 where a row is all zero)."""
    nz = (w != 0).sum(1)
    return np.where(nz > 0, np.abs(w).sum(1) / np.maximum(nz, 1), 1.0)


def neurons_from_artifact(path, indices, weight):
    """The artifact's own integer neurons (d, c, formats, dt, gamma); the float side gets the
    omega and b_offset those integers stand for."""
    from ..fixed.spec import IntNetwork
    from .common import artifact_neuron_params

    full, manifest = load_int_artifact(path)
    params = artifact_neuron_params(full, manifest)
    indices = _pick(indices, params.omega)
    h = len(indices)
    spec = full.spec
    dt = params.dt
    if weight is None:  # the artifact stores dt*W_in in the weight format
        weight = _mean_abs_input_weight(spec.weight.to_float(full.w_in))[indices] / dt
    w_int = spec.weight.quantize(dt * np.broadcast_to(np.asarray(weight, np.float64), (h,)))
    if np.any(w_int == 0):
        raise UserError(f"--weight {weight}: dt*w rounds to 0 in the artifact's weight format "
                        f"{spec.weight.describe()}")
    net = IntNetwork(spec=spec, w_in=np.diag(w_int).astype(np.int64), w_rec=np.zeros((h, h), np.int64),
                     w_out=np.zeros((1, h), np.int64), d=full.d[indices], c=full.c[indices],
                     alpha=full.alpha[:1], dtq=full.dtq, gamma=full.gamma, theta=full.theta)
    gamma = float(manifest["float_constants"]["gamma"])
    labels = [f"neuron {i}: omega {params.omega[i]:.3g}, b_off {params.b_offset[i]:.3g}" for i in indices]
    neurons = Neurons(params.omega[indices], params.b_offset[indices], snapped_weight(net, dt), dt, gamma, net,
                      labels)
    return neurons, indices


def _pick(indices, omega) -> list[int]:
    """The asked-for neurons, or 4 spread over the omega range. omega = 0 (c rounded to 0, or a
    trained omega at 0) is a damped integrator with no frequency to be relative to."""
    n = len(omega)
    if indices:
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise UserError(f"--neurons {bad}: the network has hidden neurons 0..{n - 1}")
        flat = [i for i in indices if not omega[i] > 0]
        if flat:
            raise UserError(f"--neurons {flat}: omega is 0 there, so there is no resonance to measure")
        return list(indices)
    # at least MIN_PERIODS input periods at ratio 1 within the run, else the grid's low end sees
    # one or two spikes in all and the curve says little
    candidates = np.flatnonzero(omega * SECONDS / (2 * math.pi) >= MIN_PERIODS)
    if not len(candidates):
        raise UserError(f"the network has no neuron with {MIN_PERIODS} periods in {SECONDS:g} s; pick some with --neurons")
    order = candidates[np.argsort(omega[candidates])]
    picks = np.unique(np.linspace(0, len(order) - 1, min(4, len(order))).round().astype(int))
    return sorted(int(order[k]) for k in picks)


def load_neurons(args):
    if args.network is None:
        omegas = args.omegas
        if len(args.b_offsets) not in (1, len(omegas)):
            raise UserError(f"--b-offsets needs 1 or {len(omegas)} values, got {len(args.b_offsets)}")
        weight = 1.0 if args.weight is None else args.weight
        return neurons_from_floats(omegas, args.b_offsets, args.dt, weight, args), None
    if str(args.network).endswith(".npz"):
        return neurons_from_artifact(args.network, args.neurons, args.weight)
    model, _ = load_checkpoint(args.network, args.paper_neuron)
    cfg = model.config.neuron
    if cfg.kind != "brf":
        raise UserError(f"{args.network} holds {cfg.kind} neurons; the response analysis is for BRF networks")
    omega = model.hidden.omega.detach().double().numpy()
    indices = _pick(args.neurons, omega)
    b_off = model.hidden.b_offset.detach().double().numpy()
    weight = args.weight
    if weight is None:
        weight = _mean_abs_input_weight(model.input_weight.detach().double().numpy())[indices]
    labels = [f"neuron {i}: omega {omega[i]:.3g}, b_off {b_off[i]:.3g}" for i in indices]
    neurons = neurons_from_floats(omega[indices], b_off[indices], cfg.dt, weight, args, cfg.gamma, labels)
    return neurons, indices


# --------------------------------------------------------------------------- peaks
def peak(ratios: np.ndarray, response: np.ndarray) -> dict:
    """Peak position and height, full width at half the peak height (in ratio units, clipped to
    the grid) and contrast (peak / median response): flattening lowers the contrast, widens the
    width."""
    k = int(np.argmax(response))
    height = float(response[k])
    above = response >= 0.5 * height
    lo = k
    while lo > 0 and above[lo - 1]:
        lo -= 1
    hi = k
    while hi < len(response) - 1 and above[hi + 1]:
        hi += 1
    return {"ratio": float(ratios[k]), "height": height, "fwhm": float(ratios[hi] - ratios[lo]),
            "contrast": height / max(float(np.median(response)), 1e-300)}


def dead_zone(net, h: int) -> float:
    """Estimate of the integer neuron's dead zone, in u units: below threshold (q = 0) the
    damping removes (1 - e)*|u| per step, e = d / 2^cf, and round-half-up cancels any decrement
    under half an LSB, so |u| stops decaying below about 2^-sf / (2 (1 - e)). A response that
    lives inside this band is set by rounding, not by the resonance: the peak flattens."""
    e = net.d[h] / net.spec.coef.scale
    return float("inf") if e >= 1 else float(0.5 / (1.0 - e) / net.spec.state.scale)


class Response(NamedTuple):
    ratios: np.ndarray
    float_u: np.ndarray  # [B, H]
    int_u: np.ndarray  # [B, H]
    saturated: np.ndarray  # [B, H]
    peaks: list[dict]


def measure(neurons: Neurons, ratios: np.ndarray, seconds: float = SECONDS) -> Response:
    x = spike_trains(neurons.omega, ratios, neurons.dt, seconds)
    f = float_response(neurons, x)
    i, sat = int_response(neurons, x)
    peaks = []
    for h in range(len(neurons.omega)):
        pf, pi = peak(ratios, f[:, h]), peak(ratios, i[:, h])
        peaks.append({"neuron": h, "omega": neurons.omega[h], "b_offset": neurons.b_offset[h],
                      "weight": neurons.weight[h],
                      "float_peak_ratio": pf["ratio"], "int_peak_ratio": pi["ratio"],
                      "peak_shift": pi["ratio"] - pf["ratio"],
                      "float_peak": pf["height"], "int_peak": pi["height"],
                      "float_fwhm": pf["fwhm"], "int_fwhm": pi["fwhm"],
                      "float_contrast": pf["contrast"], "int_contrast": pi["contrast"],
                      "rel_diff": float(np.linalg.norm(i[:, h] - f[:, h]) / np.linalg.norm(f[:, h])),
                      "saturated_max": float(sat[:, h].max()),
                      "dead_zone_u": dead_zone(neurons.int_net, h)})
    return Response(ratios, f, i, sat, peaks)


def ratio_grid(start: float, stop: float, step: float) -> np.ndarray:
    if not (0 < start < stop and step > 0):
        raise UserError(f"--ratios: need 0 < FROM < TO and STEP > 0, got {start} {stop} {step}")
    return np.round(np.arange(start, stop + step / 2, step), 10)


def plot(resp: Response, neurons: Neurons, spec_text: str, path) -> None:
    plt = pyplot()
    n = len(neurons.omega)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.4 * rows), squeeze=False)
    for h in range(n):
        ax = axes[h // cols][h % cols]
        p = resp.peaks[h]
        ax.plot(resp.ratios, resp.float_u[:, h], color="C0", label="float")
        ax.plot(resp.ratios, resp.int_u[:, h], "--", color="C3", label="integer")
        ax.axvline(1.0, color="gray", lw=0.8, ls=":")
        ax.plot([p["float_peak_ratio"]], [p["float_peak"]], "o", color="C0")
        ax.plot([p["int_peak_ratio"]], [p["int_peak"]], "x", color="C3")
        ax.set_title(f"{neurons.labels[h]}\npeak float {p['float_peak_ratio']:.2f}, integer {p['int_peak_ratio']:.2f}",
                     fontsize=8)
        ax.set_xlabel("input frequency / omega")
        ax.set_ylabel("mean |u|")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.suptitle(f"BRF frequency response, {SECONDS:g} s at dt = {neurons.dt:g}; integer: {spec_text}", fontsize=8)
    fig.tight_layout()
    save_png(fig, path)
    plt.close(fig)


def run(args) -> None:
    neurons, indices = load_neurons(args)
    ratios = ratio_grid(*args.ratios)
    resp = measure(neurons, ratios, args.seconds)
    spec = neurons.int_net.spec
    spec_text = f"state {spec.state.describe()}, coef {spec.coef.describe()}"
    # per neuron omega, b_offset and w are in the peaks CSV
    rows = [{"neuron": (indices[h] if indices else h), "ratio": r, "float_mean_abs_u": resp.float_u[b, h],
             "int_mean_abs_u": resp.int_u[b, h], "int_saturated": resp.saturated[b, h]}
            for h in range(len(neurons.omega)) for b, r in enumerate(ratios)]
    write_csv(out_path(args.out, f"{args.name}.csv"), rows)
    for p in resp.peaks:
        if indices:
            p["neuron"] = indices[p["neuron"]]
    write_csv(out_path(args.out, f"{args.name}_peaks.csv"), resp.peaks)
    plot(resp, neurons, spec_text, out_path(args.out, f"{args.name}.png"))
    print(f"integer formats: {spec_text}")
    for p in resp.peaks:
        print(f"neuron {p['neuron']} (omega {p['omega']:.3g}, b_off {p['b_offset']:.3g}): peak at "
              f"{p['float_peak_ratio']:.2f} x omega float, {p['int_peak_ratio']:.2f} integer; height "
              f"{p['float_peak']:.4g} vs {p['int_peak']:.4g}, FWHM {p['float_fwhm']:.2f} vs {p['int_fwhm']:.2f}, "
              f"contrast {p['float_contrast']:.2f} vs {p['int_contrast']:.2f}, relative difference {p['rel_diff']:.3f}, "
              f"dead zone |u| < {p['dead_zone_u']:.3g}")
    print(f"wrote {args.out}/{args.name}.png, {args.name}.csv, {args.name}_peaks.csv")
