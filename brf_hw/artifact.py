"""The exported integer network: one versioned .npz file.

It holds the integer arrays and a JSON ``manifest`` entry: format version, fixed-point formats
(fxpmath notation too), shapes, dtypes, the scalar constants, the float dt/theta/gamma they came
from, the task, the accuracy the integer network achieved, and the SHA-256 of the arrays.
``load_artifact`` checks all of it and names the offending field when something is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
from importlib import resources
from pathlib import Path

import numpy as np

from .cli_util import UserError
from .fixed.formats import Format
from .fixed import kinds
from .fixed.spec import FORMAT_NAMES, FixedSpec, IntNetwork, Readout

FORMAT_VERSION = "brf-hw-artifact/3"
# 1: one format for input and recurrent weights; 1, 2: spike inputs and a per-step readout
READABLE_VERSIONS = (FORMAT_VERSION, "brf-hw-artifact/2", "brf-hw-artifact/1")
SHARED_ARRAYS = {  # name -> (format name, shape in terms of inputs I, hidden H, outputs O)
    "w_in": ("weight", ("H", "I")),
    "w_rec": ("rec_weight", ("H", "H")),
    "w_out": ("out_weight", ("O", "H")),
    "alpha": ("coef", ("O",)),
}
# manifest.neuron names the hidden neurons' kind (``fixed.kinds``), which brings its own arrays and
# scalars; files written before brf-hw had other kinds hold BRF (the field was there, always "brf")


# the kinds the accelerator has an update stage for (``hw.update.UPDATE_STAGES``)
HARDWARE_NEURONS = ("brf", "brf-no-boundary", "brf-no-refractory", "brf-no-reset", "rf", "alif", "lif", "bhrf")


def arrays_of(kind) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {**SHARED_ARRAYS, **kind.arrays}


def shipped_artifact(task: str = "ecg", weight_bits: int = 8) -> Path:
    """A network shipped with brf-hw, ``brf_hw/artifacts/{task}_brf_w{bits}.npz``; the ECG 8-bit
    one is the default of the generator, synthesis, simulation and the board."""
    return Path(str(resources.files("brf_hw") / "artifacts" / f"{task}_brf_w{weight_bits}.npz"))


class ArtifactError(UserError, ValueError):
    """The artifact is malformed or inconsistent; the message names the field."""


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def save_artifact(path: str | Path, net: IntNetwork, *, task: str, dt: float, theta: float, gamma: float,
                  metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write ``net`` as a versioned .npz artifact (atomically): its integer arrays (those of its
    neuron kind) and a JSON manifest of the neuron type, formats, readout, constants, the float
    ``dt``/``theta``/``gamma`` they came from, the ``task`` name, ``metrics`` and the arrays'
    SHA-256. ``extra`` adds manifest entries."""
    kind = net.kind
    layout = arrays_of(kind)
    arrays = {name: np.ascontiguousarray(getattr(net, name), dtype=np.int64) for name in layout}
    n_in, n_hid, n_out = net.shape
    manifest = {
        "format": FORMAT_VERSION,
        "task": task,
        "neuron": net.neuron,
        "shape": {"inputs": n_in, "hidden": n_hid, "outputs": n_out},
        "spec": net.spec.to_dict(),
        "readout": net.readout.to_dict(),
        "arrays": {name: {"dtype": "int64", "shape": list(a.shape), "format": layout[name][0]}
                   for name, a in arrays.items()},
        "scalars": {name: int(getattr(net, name)) for name in kind.scalars},
        "float_constants": {"dt": dt, "theta": theta, "gamma": gamma},
        "metrics": metrics or {},
        "sha256": arrays_digest(arrays),
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, manifest=np.array(json.dumps(manifest, indent=1)), **arrays)
    tmp = path.with_name(path.name + ".tmp")  # a crash mid-write never leaves a half artifact at path
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)
    return path


def _require(mapping: dict, key: str, where: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise ArtifactError(f"{where}.{key} is missing")
    return mapping[key]


def load_artifact(path: str | Path, neurons: tuple[str, ...] | None = None) -> tuple[IntNetwork, dict]:
    """Load and validate an artifact; returns the integer network and the manifest. ``neurons``:
    the neuron kinds the caller implements (default: every kind of ``fixed.kinds``); the hardware
    passes ``HARDWARE_NEURONS``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {k: data[k] for k in data.files}
    except Exception as exc:  # zip / npy errors of every kind
        raise ArtifactError(f"{path} is not a readable .npz artifact ({exc})") from exc
    if "manifest" not in contents:
        raise ArtifactError(f"{path}: manifest is missing")
    try:
        manifest = json.loads(str(contents.pop("manifest")))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: manifest is not valid JSON ({exc})") from exc
    version = _require(manifest, "format", "manifest")
    if version not in READABLE_VERSIONS:
        raise ArtifactError(f"manifest.format is {version!r}; this brf-hw reads {', '.join(READABLE_VERSIONS)}")
    neuron = manifest.get("neuron", kinds.DEFAULT)
    try:
        kind = kinds.get(neuron, "manifest.neuron")
    except kinds.UnknownKind as exc:
        raise ArtifactError(f"{path}: {exc}") from None
    if neurons is not None and neuron not in neurons:
        raise ArtifactError(f"{path}: manifest.neuron is {neuron!r}; this tool implements {', '.join(neurons)}")
    shape = _require(manifest, "shape", "manifest")
    dims = {}
    for key, letter in (("inputs", "I"), ("hidden", "H"), ("outputs", "O")):
        value = _require(shape, key, "manifest.shape")
        if not isinstance(value, int) or value < 1:
            raise ArtifactError(f"manifest.shape.{key} must be a positive integer, got {value!r}")
        dims[letter] = value
    try:
        spec_dict = dict(_require(manifest, "spec", "manifest"))
        if version == "brf-hw-artifact/1" and "weight" in spec_dict:
            spec_dict.setdefault("rec_weight", spec_dict["weight"])
        names = FORMAT_NAMES + (("input",) if version == FORMAT_VERSION else ())
        spec = FixedSpec.from_dict({name: _require(spec_dict, name, "manifest.spec") for name in names})
    except (TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"manifest.spec is invalid ({exc})") from exc
    try:
        readout = Readout.from_dict(_require(manifest, "readout", "manifest")) if version == FORMAT_VERSION \
            else Readout()
    except (TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"manifest.readout is invalid ({exc})") from exc
    arrays = {}
    for name, (fmt_name, dim_names) in arrays_of(kind).items():
        if name not in contents:
            raise ArtifactError(f"array {name} is missing")
        a = contents[name]
        expected = tuple(dims[d] for d in dim_names)
        if a.dtype != np.int64:
            raise ArtifactError(f"array {name} has dtype {a.dtype}, expected int64")
        if a.shape != expected:
            raise ArtifactError(f"array {name} has shape {a.shape}, expected {expected} from manifest.shape")
        _check_range(a, getattr(spec, fmt_name), f"array {name}")
        arrays[name] = a
    digest = _require(manifest, "sha256", "manifest")
    if digest != arrays_digest(arrays):
        raise ArtifactError("manifest.sha256 does not match the arrays: the file was altered or corrupted")
    scalars = _require(manifest, "scalars", "manifest")
    values = {}
    for name, fmt_name in kind.scalars.items():
        value = _require(scalars, name, "manifest.scalars")
        if not isinstance(value, int):
            raise ArtifactError(f"manifest.scalars.{name} must be an integer, got {value!r}")
        _check_range(np.array(value), getattr(spec, fmt_name), f"manifest.scalars.{name}")
        values[name] = value
    task = manifest.get("task")
    if not isinstance(task, str):
        raise ArtifactError(f"manifest.task must be a task name, got {task!r}")
    try:
        net = IntNetwork(spec=spec, readout=readout, neuron=neuron, **arrays, **values)
    except ValueError as exc:  # formats too wide for the golden model's integers
        raise ArtifactError(f"{path}: {exc}") from exc
    problem = kind.check(net)
    if problem:
        raise ArtifactError(problem)
    return net, manifest


def _check_range(a: np.ndarray, fmt: Format, what: str) -> None:
    if a.size and (a.min() < fmt.min_int or a.max() > fmt.max_int):
        raise ArtifactError(f"{what} has values in [{a.min()}, {a.max()}], outside {fmt.describe()} "
                            f"[{fmt.min_int}, {fmt.max_int}]")
