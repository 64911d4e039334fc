"""NIR (Neuromorphic Intermediate Representation, ``nir`` 1.0) export and import of BRF networks.

    python -m brf_hw.analyze nir CHECKPOINT.pt|ARTIFACT.npz --out net.nir [--check N]

The graph (node names are fixed; edges are NIR's identity edges, several into one node add up):

    input --> w_in --> brf --> w_out --> li --> output
                        ^  |
                        +--w_rec <--+

* ``w_in``, ``w_rec``, ``w_out``: ``nir.Linear`` (the network has no biases). Weights as the model
  uses them: W_in, W_rec with the pruning mask applied, W_out. They produce the current I of the
  BRF equations (u grows by dt*I per step), the drive of the readout.
* ``brf``: the BRF layer, a custom node. NIR has no resonator primitive, and ``nir.read`` rejects
  a whole file if one node has a type it does not know (NIR 1.0 has no extension mechanism), so
  the layer is stored as a node type every NIR reader knows, an ``nir.NIRGraph`` subgraph:
  input -> brf_update -> output, where ``brf_update`` is a placeholder ``nir.Scale`` by NaN. The
  file reads and type-checks everywhere; a tool that runs it without knowing BRF gets NaN, not
  plausible-looking numbers from some other neuron. The subgraph's ``metadata`` is the
  definition: ``brf_hw.node = "BRF"``, per-neuron ``omega`` (rad/s) and ``b_offset`` (1/s),
  ``dt``, ``theta``, ``gamma``, the ``recurrent_mask``, and ``update``, the discrete update as
  text (``UPDATE`` below).
  The recurrent edge brf -> w_rec -> brf carries the previous step's spikes z[t-1] (NIR leaves
  the delay of a cycle to the simulator; this is the one-step delay BRF needs).
* ``li``: ``nir.LI`` for the readout. NIR's LI is continuous: tau dv/dt = (v_leak - v) + R*I.
  Ours is discrete: o[t] = alpha*o[t-1] + (1 - alpha)*I[t] with alpha = exp(-1/|tau_o|), tau_o in
  steps. Forward Euler at step dt turns NIR's LI into v[t] = (1 - dt/tau) v[t-1] + (dt/tau) R I[t],
  which is ours exactly for tau = dt / (1 - alpha), R = 1, v_leak = 0: that is what is written
  (forward Euler is the usual discrete-time reading of NIR's ODEs). An exact-exponential
  integrator would want tau = dt*|tau_o| instead (also in the metadata, ``brf_hw.tau_exp``; the two
  differ by 2.5 % at tau_o = 20). The metadata also holds ``brf_hw.tau_o_steps``, the trained
  parameter itself, so brf-hw's own import is bit-exact; without it, alpha = 1 - dt/tau.

The top graph's metadata holds ``brf_hw.format`` and the model config as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FORMAT = "brf-hw-nir/1"
NODE_TAG = "brf_hw.node"

UPDATE = """\
Balanced resonate-and-fire (Higuchi et al., ICML 2024), per neuron, discrete step t (dt seconds):
  I[t] = sum of the incoming edges: w_in x[t] + w_rec z[t-1]
  p(omega) = (-1 + sqrt(1 - (dt*omega)^2)) / dt         (needs dt*omega < 1)
  b[t] = p(omega) - b_offset - q[t-1]
  u[t] = u[t-1] + dt * (b[t]*u[t-1] - omega*v[t-1] + I[t])
  v[t] = v[t-1] + dt * (omega*u[t-1] + b[t]*v[t-1])
  z[t] = 1 if u[t] - theta - q[t-1] > 0 else 0          (the output spikes)
  q[t] = gamma*q[t-1] + z[t]
u, v, q, z start at 0 for each sequence. Reference: brf_hw.neurons.functional.brf_step."""


class NIRImportError(ValueError):
    """The graph is not a brf-hw BRF network; the message says what is missing."""


# --------------------------------------------------------------------------- export
def to_nir(model, source: str = "") -> "nir.NIRGraph":  # noqa: F821
    """The float RSNN as an NIR graph (see the module docstring for the mapping)."""
    import nir

    cfg = model.config
    ncfg = cfg.neuron
    if ncfg.kind != "brf":
        raise ValueError(f"NIR export covers BRF networks; this one has {ncfg.kind} neurons")
    dt = float(ncfg.dt)
    f32 = lambda t: t.detach().cpu().to(torch.float32).numpy().copy()  # noqa: E731
    h = cfg.hidden
    tau_o = model.output.tau_o.detach().abs()
    alpha = model.output.alpha.detach().double().numpy()
    placeholder = nir.Scale(np.full(h, np.nan, np.float32), metadata={
        "brf_hw.placeholder": "stands in for the BRF update, which NIR cannot express; see the metadata of the "
                              "enclosing node. NaN on purpose: run without brf-hw's definition, the graph gives NaN, "
                              "never plausible numbers."})
    brf = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([h])), "brf_update": placeholder, "output": nir.Output(np.array([h]))},
        edges=[("input", "brf_update"), ("brf_update", "output")],
        metadata={
            NODE_TAG: "BRF",
            "brf_hw.format": FORMAT,
            "omega": f32(model.hidden.omega),
            "b_offset": f32(model.hidden.b_offset),
            "dt": dt,
            "theta": float(ncfg.theta),
            "gamma": float(ncfg.gamma),
            "recurrent_mask": f32(model.recurrent_mask),
            "surrogate": ncfg.surrogate,
            "update": UPDATE,
            "note": "custom node: its inner Scale(NaN) is a placeholder; run it with brf-hw (brf_hw.nir_io.from_nir)",
        },
    )
    li = nir.LI(
        tau=dt / (1.0 - alpha), r=np.ones_like(alpha), v_leak=np.zeros_like(alpha),
        metadata={"brf_hw.tau_o_steps": f32(tau_o), "brf_hw.alpha": alpha, "brf_hw.tau_exp": dt * tau_o.double().numpy(),
                  "brf_hw.discretization": "o[t] = alpha*o[t-1] + (1-alpha)*I[t]; tau = dt/(1-alpha) is exact "
                                           "under forward Euler at dt, tau_exp = dt*tau_o under exp(-dt/tau)"},
    )
    nodes = {
        "input": nir.Input(np.array([cfg.inputs])),
        "w_in": nir.Linear(f32(model.input_weight)),
        "brf": brf,
        "w_rec": nir.Linear(f32(model.recurrent_weight)),
        "w_out": nir.Linear(f32(model.readout.weight)),
        "li": li,
        "output": nir.Output(np.array([cfg.outputs])),
    }
    edges = [("input", "w_in"), ("w_in", "brf"), ("brf", "w_rec"), ("w_rec", "brf"), ("brf", "w_out"),
             ("w_out", "li"), ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={
        "brf_hw.format": FORMAT, "brf_hw.model_config": json.dumps(cfg.to_dict()), "brf_hw.source": source,
        "description": "brf-hw recurrent BRF network: inputs -> recurrent BRF layer (custom node 'brf', see its "
                       "metadata) -> LI readout. One graph step = dt seconds."})


def write(graph, path: str | Path) -> Path:
    import nir

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nir.write(path, graph)
    return path


# --------------------------------------------------------------------------- import
def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _single(edges, node: str, direction: str) -> list[str]:
    return [b for a, b in edges if a == node] if direction == "out" else [a for a, b in edges if b == node]


def from_nir(graph, kernel: str = "auto"):
    """An RSNN from a graph written by ``to_nir`` (or any graph of the same shape whose BRF node
    carries the metadata). Raises NIRImportError naming what does not fit."""
    import nir

    from .model import ModelConfig, build_model
    from .neurons import NeuronConfig

    brfs = [k for k, n in graph.nodes.items()
            if isinstance(n, nir.NIRGraph) and _text(n.metadata.get(NODE_TAG, "")) == "BRF"]
    if len(brfs) != 1:
        raise NIRImportError(f"expected one BRF node (a subgraph with metadata {NODE_TAG} = 'BRF'), found {len(brfs)}")
    b = brfs[0]
    meta = graph.nodes[b].metadata
    for key in ("omega", "b_offset", "dt", "theta", "gamma"):
        if key not in meta:
            raise NIRImportError(f"BRF node {b!r}: metadata {key!r} is missing")
    edges = [tuple(map(_text, e)) for e in graph.edges]
    into, out_of = _single(edges, b, "in"), _single(edges, b, "out")
    rec = [k for k in into if k in out_of and isinstance(graph.nodes[k], nir.Linear)]
    fwd_in = [k for k in into if k not in rec]
    fwd_out = [k for k in out_of if k not in rec]
    if len(rec) != 1 or len(fwd_in) != 1 or len(fwd_out) != 1:
        raise NIRImportError(f"BRF node {b!r}: expected one input Linear, one recurrent Linear (out of and back "
                             f"into it) and one output Linear; edges in {into}, out {out_of}")
    w_in_name, w_rec_name, w_out_name = fwd_in[0], rec[0], fwd_out[0]
    for k in (w_in_name, w_out_name):
        if not isinstance(graph.nodes[k], nir.Linear):
            raise NIRImportError(f"node {k!r} is a {type(graph.nodes[k]).__name__}, expected nir.Linear")
    li_names = _single(edges, w_out_name, "out")
    if len(li_names) != 1 or not isinstance(graph.nodes[li_names[0]], nir.LI):
        raise NIRImportError(f"node {w_out_name!r} should feed one nir.LI readout, feeds {li_names}")
    li = graph.nodes[li_names[0]]
    w_in = np.asarray(graph.nodes[w_in_name].weight)
    w_rec = np.asarray(graph.nodes[w_rec_name].weight)
    w_out = np.asarray(graph.nodes[w_out_name].weight)
    omega, b_offset = np.asarray(meta["omega"]), np.asarray(meta["b_offset"])
    n_hid, n_in = w_in.shape
    n_out = w_out.shape[0]
    if w_rec.shape != (n_hid, n_hid) or w_out.shape[1] != n_hid or omega.shape != (n_hid,):
        raise NIRImportError(f"shapes do not fit: w_in {w_in.shape}, w_rec {w_rec.shape}, w_out {w_out.shape}, "
                             f"omega {omega.shape}")
    if np.any(np.asarray(li.r) != 1) or np.any(np.asarray(li.v_leak) != 0):
        raise NIRImportError("the LI readout must have r = 1 and v_leak = 0 (brf-hw's readout has no gain or leak)")
    dt = float(meta["dt"])
    if "brf_hw.model_config" in graph.metadata:
        config = ModelConfig.from_dict(json.loads(_text(graph.metadata["brf_hw.model_config"])))
    else:
        config = ModelConfig(n_in, n_hid, n_out, neuron=NeuronConfig(
            kind="brf", dt=dt, theta=float(meta["theta"]), gamma=float(meta["gamma"]),
            surrogate=_text(meta.get("surrogate", "double_gaussian"))))
    model = build_model(config, seed=0, kernel=kernel)
    if "brf_hw.tau_o_steps" in li.metadata:
        tau_o = torch.as_tensor(np.asarray(li.metadata["brf_hw.tau_o_steps"]))
    else:  # a graph from another tool: alpha from NIR's tau under forward Euler
        alpha = 1.0 - dt / np.asarray(li.tau, np.float64)
        if np.any(alpha <= 0) or np.any(alpha >= 1):
            raise NIRImportError(f"LI tau {li.tau} gives a decay outside (0, 1) at dt = {dt}")
        tau_o = torch.as_tensor(-1.0 / np.log(alpha))
    with torch.no_grad():
        model.synapses.weight.copy_(torch.from_numpy(np.concatenate([w_in, w_rec], 1)))
        mask = meta.get("recurrent_mask")
        model.recurrent_mask.copy_(torch.from_numpy(np.asarray(mask, np.float32)) if mask is not None
                                   else torch.ones(n_hid, n_hid))
        model.hidden.omega_param.copy_(torch.from_numpy(omega))
        model.hidden.b_offset_param.copy_(torch.from_numpy(b_offset))
        model.output.tau_o.copy_(tau_o)
        model.readout.weight.copy_(torch.from_numpy(w_out))
    model.validate()
    return model


def read(path: str | Path, kernel: str = "auto"):
    import nir

    return from_nir(nir.read(str(path)), kernel=kernel)
