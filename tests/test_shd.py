"""SHD loader on small files written in SHD's HDF5 layout (the real files are not on these
machines): binning by hand, splits, .gz unpacking, errors, and one training epoch of the task."""

import gzip

import h5py
import numpy as np
import pytest
import torch

from brf_hw.data import DataError, load_shd
from brf_hw.data.shd import CHANNELS, STEPS, read_shd_file
from brf_hw.data.shd_synthetic import random_samples, write_shd
from brf_hw.train import TrainConfig, Trainer


def test_binning_by_hand(tmp_path):
    # 4 ms bins: 0.0039 s -> step 0, 0.0041 s -> step 1, two spikes of one channel in one bin -> one
    # input, 0.9999 s -> step 249, 1.0 s and later -> dropped
    write_shd(tmp_path / "a.h5", [([0.0039, 0.0041, 0.0042, 0.9999, 1.0, 1.3], [5, 5, 5, 699, 3, 3]),
                                  ([], [])], [7, 19])
    split = read_shd_file(tmp_path / "a.h5")
    x = split.as_sequences()
    assert x.shape == (STEPS, 2, CHANNELS) and split.labels.tolist() == [7, 19]
    assert torch.nonzero(x[:, 0]).tolist() == [[0, 5], [1, 5], [249, 699]]
    assert x[:, 1].sum() == 0
    sub = split.subset([1, 0])
    assert sub.labels.tolist() == [19, 7] and torch.equal(sub.as_sequences()[:, 1], x[:, 0])


@pytest.fixture
def shd_dir(tmp_path):
    (tmp_path / "shd").mkdir()
    write_shd(tmp_path / "shd" / "shd_train.h5", random_samples(40, 0), np.arange(40) % 20)
    with gzip.open(tmp_path / "shd" / "shd_test.h5.gz", "wb") as f:  # as downloaded: packed
        write_shd(tmp_path / "plain_test.h5", random_samples(10, 1), np.arange(10) % 20)
        f.write((tmp_path / "plain_test.h5").read_bytes())
    return tmp_path


def test_splits_and_gz_unpacking(shd_dir):
    splits = load_shd(str(shd_dir))
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (36, 4, 10)
    assert (shd_dir / "shd" / "shd_test.h5").exists()
    train_x = splits["train"].as_sequences()
    assert set(train_x.unique().tolist()) == {0.0, 1.0} and train_x.sum() > 36 * 200
    assert sorted(splits["train"].labels.tolist() + splits["val"].labels.tolist()) == sorted(np.arange(40) % 20)
    again = load_shd(str(shd_dir))
    assert torch.equal(again["val"].labels, splits["val"].labels)  # the split is seeded


def test_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(DataError, match="shd_train.h5.*zenkelab.org"):
        load_shd(str(tmp_path))
    (tmp_path / "shd").mkdir()
    with h5py.File(tmp_path / "shd" / "shd_train.h5", "w") as f:
        f.create_dataset("labels", data=np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="not an SHD file"):
        load_shd(str(tmp_path))


def test_shd_task_trains(shd_dir, tmp_path):
    cfg = TrainConfig(task="shd", epochs=1, batch_size=16, data_dir=str(shd_dir), run_dir=str(tmp_path / "run"),
                      progress=False)
    trainer = Trainer(cfg)
    assert (trainer.model_config.inputs, trainer.model_config.hidden, trainer.model_config.outputs) == (700, 128, 20)
    row = trainer.fit()[-1]
    assert np.isfinite(row["train_loss"]) and 0 <= row["test_acc"] <= 100


def test_synth_activity_without_shd_files_is_random_at_the_stated_density(tmp_path, capsys):
    """No SHD files here: the synthesis report's cycles come from random spikes at --input-density,
    a stated assumption (700 channels x 0.05 = 35 input events per step on average)."""
    from brf_hw.hw.generate import shape_network
    from brf_hw.hw.synth import activity

    net = shape_network(700, 128, 20, input_bits=1, rule="mean", steps=STEPS)
    for density in (0.05, 0.02):
        act = activity(net, "shd", tmp_path, sequences=4, density=density)
        assert act.x.shape == (STEPS, 4, CHANNELS) and act.spikes.shape == (STEPS, 4, 128)
        assert abs(act.input_sources - CHANNELS * density) < 0.05 * CHANNELS * density
        assert f"{density:.0%} of input bits set" in act.measured
    assert "no shd test data" in capsys.readouterr().err


def test_synthetic_class_files_load_with_their_band(tmp_path):
    from brf_hw.data.shd_synthetic import main

    main([str(tmp_path), "--train", "40", "--test", "10", "--spikes", "500"])
    splits = load_shd(str(tmp_path))
    assert (len(splits["train"]) + len(splits["val"]), len(splits["test"])) == (40, 10)
    test = splits["test"]
    x = test.as_sequences()  # [T, N, C]
    for i, label in enumerate(test.labels.tolist()):
        channels = torch.nonzero(x[:, i].sum(0)).flatten().float()
        assert abs(channels.mean().item() - (100 + 30 * label)) < 15  # the class's band
