"""Loaders on the real files, and the fetch rules: checksum, download, clear offline error."""

import shutil
import urllib.error
from pathlib import Path

import pytest
import torch

from brf_hw.data import DataError, fetch, load_mnist
from brf_hw.data.ecg import FILES as ECG_FILES
from brf_hw.data.fetch import RemoteFile, data_dir
from brf_hw.data.mnist import FILES as MNIST_FILES, as_sequences, permutation


def test_ecg_splits(ecg_splits):
    train, val, test = ecg_splits["train"], ecg_splits["val"], ecg_splits["test"]
    assert (len(train), len(val), len(test)) == (557, 61, 141)
    assert train.inputs.shape == (557, 1300, 4) and train.labels.shape == (557, 1300)
    assert set(torch.unique(train.inputs).tolist()) == {0.0, 1.0}  # end-marker step dropped
    # all-zero label steps (unannotated): labelled class 0 as in the paper, flagged here
    assert int((~train.annotated).sum() + (~val.annotated).sum()) == 65_697
    assert int((~test.annotated).sum()) == 19_034
    assert torch.all(train.labels[~train.annotated] == 0)
    assert set(torch.unique(test.labels).tolist()) == set(range(6))


def test_ecg_validation_split_is_fixed_and_disjoint(ecg_splits):
    from brf_hw.data import load_ecg

    again = load_ecg()
    assert torch.equal(again["val"].inputs, ecg_splits["val"].inputs)
    rows = {tuple(r.flatten().nonzero().flatten()[:40].tolist()) for r in ecg_splits["train"].inputs}
    assert not any(tuple(r.flatten().nonzero().flatten()[:40].tolist()) in rows for r in ecg_splits["val"].inputs)


def test_mnist_sequences():
    plain, permuted = load_mnist(), load_mnist(permuted=True)
    assert (len(plain["train"]), len(plain["val"]), len(plain["test"])) == (54_000, 6_000, 10_000)
    assert plain["test"].labels[:5].tolist() == [7, 2, 1, 0, 4]  # the canonical first test digits
    seq = as_sequences(plain["test"].images[:3])
    assert seq.shape == (784, 3, 1) and 0.0 <= seq.min() and seq.max() == 1.0
    perm = permutation()
    assert torch.equal(perm, permutation()) and sorted(perm.tolist()) == list(range(784))
    assert torch.equal(permuted["test"].images, plain["test"].images[:, perm])


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("BRF_HW_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    assert data_dir("/elsewhere") == Path("/elsewhere")


def test_missing_file_is_downloaded_and_verified(tmp_path):
    source = Path(data_dir()).resolve() / ECG_FILES["test"].relpath  # a file URI needs an absolute path
    remote = RemoteFile(ECG_FILES["test"].relpath, ECG_FILES["test"].sha256, (source.as_uri(),))
    path = fetch(remote, tmp_path)
    assert path == tmp_path / "qtdb" / "QTDB_test.mat" and path.read_bytes() == source.read_bytes()


def test_download_with_wrong_checksum_is_refused(tmp_path):
    source = Path(data_dir()).resolve() / MNIST_FILES["t10k-labels-idx1-ubyte.gz"].relpath
    remote = RemoteFile("mnist/x.gz", "0" * 64, (source.as_uri(),))
    with pytest.raises(DataError, match="SHA-256"):
        fetch(remote, tmp_path)
    assert not list(tmp_path.rglob("*"))[1:]  # nothing but the created folder is left behind


def test_corrupt_local_file_is_refused(tmp_path):
    remote = MNIST_FILES["t10k-labels-idx1-ubyte.gz"]
    target = tmp_path / remote.relpath
    target.parent.mkdir(parents=True)
    shutil.copy(Path(data_dir()) / remote.relpath, target)
    with open(target, "r+b") as f:
        f.seek(100)
        f.write(b"\xff")
    with pytest.raises(DataError, match="corrupt"):
        fetch(remote, tmp_path)


def test_offline_gives_a_clear_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DataError) as err:
        fetch(ECG_FILES["train"], tmp_path)
    message = str(err.value)
    assert str(tmp_path / "qtdb" / "QTDB_train.mat") in message
    assert "BRF_HW_DATA" in message and ECG_FILES["train"].sha256 in message
