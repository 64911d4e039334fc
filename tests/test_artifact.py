"""Artifact round trip, and every malformed or inconsistent field refused by name."""

import io
import json

import numpy as np
import pytest
import torch

from brf_hw import golden
from brf_hw.artifact import ArtifactError, arrays_digest, load_artifact, save_artifact
from brf_hw.fixed import spec_for_model
from brf_hw.fixed.qat import to_int_network
from brf_hw.model import ModelConfig, build_model


@pytest.fixture(scope="module")
def net():
    model = build_model(ModelConfig(4, 12, 3), seed=0)
    with torch.no_grad():
        model.synapses.weight.mul_(30)
    return to_int_network(model, spec_for_model(model, 8))


@pytest.fixture
def saved(tmp_path, net):
    return save_artifact(tmp_path / "a.npz", net, task="ecg", dt=0.01, theta=1.0, gamma=0.9,
                         metrics={"test_acc": 12.5})


def test_round_trip(saved, net):
    loaded, manifest = load_artifact(saved)
    for name in ("w_in", "w_rec", "w_out", "d", "c", "alpha"):
        assert np.array_equal(getattr(loaded, name), getattr(net, name))
    assert (loaded.dtq, loaded.gamma, loaded.theta, loaded.spec) == (net.dtq, net.gamma, net.theta, net.spec)
    assert manifest["metrics"]["test_acc"] == 12.5 and manifest["format"] == "brf-hw-artifact/3"
    assert manifest["spec"]["weight"]["fxp"].startswith("fxp-s8/")
    x = (np.random.default_rng(0).random((50, 2, 4)) < 0.3).astype(np.int64)
    assert np.array_equal(golden.run(loaded, x).outputs, golden.run(net, x).outputs)


def test_multibit_input_and_mean_readout_round_trip(tmp_path):
    """Version 3 carries the input format (unsigned bits, unit) and the readout rule with its sum
    width; version-2 artifacts load as spike inputs with a per-step readout."""
    from brf_hw.fixed.spec import InputFormat, Readout

    model = build_model(ModelConfig(2, 8, 3), seed=2)
    spec = spec_for_model(model, 8, inputs=InputFormat(8, 1 / 255))
    net = to_int_network(model, spec, Readout.for_steps("mean", spec.output.bits, 784))
    assert net.readout.sum_bits == 16 + 10
    loaded, manifest = load_artifact(save_artifact(tmp_path / "m.npz", net, task="smnist", dt=0.01, theta=1.0,
                                                   gamma=0.9))
    assert loaded.spec.input == InputFormat(8, 1 / 255) and loaded.readout == net.readout
    assert manifest["spec"]["input"]["fxp"] == "fxp-u8/0" and manifest["readout"]["rule"] == "mean"
    ecg = save_artifact(tmp_path / "v2.npz", to_int_network(model, spec_for_model(model, 8)), task="ecg", dt=0.01,
                        theta=1.0, gamma=0.9)

    def to_v2(m):  # version 2 had neither an input format nor a readout
        m["format"] = "brf-hw-artifact/2"
        del m["spec"]["input"], m["readout"]
    rewrite(ecg, mutate_manifest=to_v2)
    old, old_manifest = load_artifact(ecg)
    assert old_manifest["format"] == "brf-hw-artifact/2"
    assert old.spec.input == InputFormat(1, 1.0) and old.readout == Readout("per_step", 0)


def test_version_1_artifacts_load_with_one_weight_format(tmp_path):
    """Version 1 had one format for input and recurrent weights: it is read as rec_weight = weight."""
    model = build_model(ModelConfig(4, 12, 3), seed=1)
    spec = spec_for_model(model, 8)
    spec = spec_for_model(model, 8, weight_frac=spec.weight.frac, rec_weight_frac=spec.weight.frac)
    path = save_artifact(tmp_path / "v1.npz", to_int_network(model, spec), task="ecg", dt=0.01, theta=1.0, gamma=0.9)

    def to_v1(m):
        m["format"] = "brf-hw-artifact/1"
        del m["spec"]["rec_weight"]
    rewrite(path, mutate_manifest=to_v1)
    loaded, manifest = load_artifact(path)
    assert manifest["format"] == "brf-hw-artifact/1" and loaded.spec == spec


def rewrite(path, mutate_manifest=None, mutate_arrays=None, rehash=True):
    with np.load(path) as data:
        contents = {k: data[k] for k in data.files}
    manifest = json.loads(str(contents.pop("manifest")))
    if mutate_arrays:
        mutate_arrays(contents)
        if rehash:
            manifest["sha256"] = arrays_digest(contents)
    if mutate_manifest:
        mutate_manifest(manifest)
    buffer = io.BytesIO()
    np.savez(buffer, manifest=np.array(json.dumps(manifest)), **contents)
    path.write_bytes(buffer.getvalue())


def _set(key_path, value):
    def mutate(m):
        *parents, last = key_path
        for k in parents:
            m = m[k]
        m[last] = value
    return mutate


def _delete(key_path):
    def mutate(m):
        *parents, last = key_path
        for k in parents:
            m = m[k]
        del m[last]
    return mutate


@pytest.mark.parametrize("mutate, message", [
    (_set(["format"], "brf-hw-artifact/0"), "manifest.format"),
    (_delete(["shape"]), "manifest.shape is missing"),
    (_set(["shape", "hidden"], 11), "array w_in has shape"),
    (_set(["shape", "inputs"], -1), "manifest.shape.inputs"),
    (_delete(["spec", "state"]), "manifest.spec.state is missing"),
    (_delete(["spec", "rec_weight"]), "manifest.spec.rec_weight is missing"),
    (_set(["spec", "rec_weight", "bits"], 3), "array w_rec has values"),
    (_set(["spec", "weight", "bits"], 4), "array w_in has values"),
    (_set(["spec", "coef", "bits"], 64), "manifest.spec is invalid"),
    (_set(["sha256"], "0" * 64), "manifest.sha256"),
    (_delete(["scalars", "theta"]), "manifest.scalars.theta is missing"),
    (_set(["scalars", "gamma"], 1.5), "manifest.scalars.gamma must be an integer"),
    (_set(["scalars", "theta"], 10**9), "manifest.scalars.theta has values"),
])
def test_malformed_manifest_is_refused(saved, mutate, message):
    rewrite(saved, mutate_manifest=mutate)
    with pytest.raises(ArtifactError, match=message.replace(".", r"\.")):
        load_artifact(saved)


@pytest.mark.parametrize("mutate, message, rehash", [
    (lambda a: a.pop("w_rec"), "array w_rec is missing", True),
    (lambda a: a.update(d=a["d"].astype(np.int32)), "array d has dtype int32", True),
    (lambda a: a.update(w_out=a["w_out"][:, :-1]), "array w_out has shape", True),
    (lambda a: a.update(alpha=a["alpha"] + 10**6), "array alpha has values", True),
    (lambda a: a.update(c=a["c"] * 0 + 16384), r"array c \(dt\*omega\)", True),
    (lambda a: a["w_in"].__setitem__((0, 0), a["w_in"][0, 0] ^ 1), "manifest.sha256 does not match", False),
])
def test_malformed_arrays_are_refused(saved, mutate, message, rehash):
    rewrite(saved, mutate_arrays=mutate, rehash=rehash)
    with pytest.raises(ArtifactError, match=message):
        load_artifact(saved)


def test_unreadable_files_are_refused(tmp_path, saved):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a readable"):
        load_artifact(junk)
    with np.load(saved) as data:
        contents = {k: data[k] for k in data.files if k != "manifest"}
    np.savez(tmp_path / "bare.npz", **contents)
    with pytest.raises(ArtifactError, match="manifest is missing"):
        load_artifact(tmp_path / "bare.npz")
