"""Spiking Heidelberg Digits (Cramer et al., 2020): spoken digits 0-9 in English and German as
spike trains of 700 cochlea-model channels, 20 classes.

The files are not redistributed or fetched here: download ``shd_train.h5.gz`` and
``shd_test.h5.gz`` from https://zenkelab.org/datasets/ (check them against that page's
md5sums), and put them, or the unpacked ``.h5`` files, in DATA_DIR/shd/. A ``.gz`` is unpacked
next to itself once.

As the paper: spike times binned at 4 ms into 250 steps (later spikes dropped, shorter recordings
zero-padded); 7,341 training / 815 validation sequences (a seeded split of the training file),
2,264 test. An input is 1 where a channel spiked at least once within the step: the
accelerator takes binary spike vectors.
"""

from __future__ import annotations

import gzip
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .batch import Batch
from .fetch import DataError, data_dir

STEPS, BIN_SECONDS, CHANNELS, CLASSES = 250, 4e-3, 700, 20
TRAIN_SIZE, VAL_SIZE, TEST_SIZE = 7341, 815, 2264
SPLIT_SEED = 0
SOURCE = "https://zenkelab.org/datasets/"


@dataclass(frozen=True)
class SHDSplit:
    """Sparse events, made dense per batch: sample i owns events offsets[i]:offsets[i+1]."""

    offsets: np.ndarray  # [N+1] int64
    steps: np.ndarray  # [events] int16, time bin of each event
    units: np.ndarray  # [events] int16, channel of each event
    labels: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index) -> "SHDSplit":
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        lengths = self.offsets[index + 1] - self.offsets[index]
        picks = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in index]
                               + [np.zeros(0, np.int64)])
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return SHDSplit(offsets, self.steps[picks], self.units[picks], self.labels[torch.from_numpy(index)])

    def as_sequences(self) -> torch.Tensor:
        """[STEPS, N, CHANNELS] float32 spikes in {0, 1}."""
        x = torch.zeros(STEPS, len(self), CHANNELS)
        sample = np.repeat(np.arange(len(self)), np.diff(self.offsets))
        x[torch.from_numpy(self.steps.astype(np.int64)), torch.from_numpy(sample),
          torch.from_numpy(self.units.astype(np.int64))] = 1.0
        return x

    def to_batch(self) -> Batch:
        return Batch(self.as_sequences(), self.labels, None)


def _h5_file(directory: Path, name: str) -> Path:
    path = directory / "shd" / f"{name}.h5"
    packed = path.with_suffix(".h5.gz")
    if not path.exists() and packed.exists():
        tmp = path.with_suffix(".h5.part")
        with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.replace(path)
    if not path.exists():
        raise DataError(f"SHD file {path} (or {packed.name}) is missing. SHD is not downloaded automatically: "
                        f"get {name}.h5.gz from {SOURCE}, check its md5 against that page, and put it in "
                        f"{path.parent} (or pass --data-dir / set BRF_HW_DATA)")
    return path


def read_shd_file(path: Path) -> SHDSplit:
    """Bin one SHD HDF5 file (groups spikes/times, spikes/units and labels)."""
    try:
        import h5py
    except ImportError as exc:
        raise DataError("reading SHD needs h5py: pip install h5py") from exc
    try:
        with h5py.File(path, "r") as f:
            times, units, labels = f["spikes"]["times"][:], f["spikes"]["units"][:], np.asarray(f["labels"][:])
    except (OSError, KeyError) as exc:
        raise DataError(f"{path} is not an SHD file (expected HDF5 with spikes/times, spikes/units, labels): "
                        f"{exc}") from exc
    offsets, all_steps, all_units = [0], [], []
    for t, u in zip(times, units):
        step = np.floor(np.asarray(t, np.float64) / BIN_SECONDS).astype(np.int64)
        keep = (step >= 0) & (step < STEPS)
        # one event per (step, channel): the inputs are binary
        cell = np.unique(step[keep] * CHANNELS + np.asarray(u, np.int64)[keep])
        all_steps.append((cell // CHANNELS).astype(np.int16))
        all_units.append((cell % CHANNELS).astype(np.int16))
        offsets.append(offsets[-1] + len(cell))
    if len(labels) and (labels.min() < 0 or labels.max() >= CLASSES):
        raise DataError(f"{path}: labels outside 0..{CLASSES - 1}")
    empty = [np.zeros(0, np.int16)]
    return SHDSplit(np.asarray(offsets, np.int64), np.concatenate(all_steps + empty), np.concatenate(all_units + empty),
                    torch.from_numpy(labels.astype(np.int64)))


def load_shd(data_dir_: str | None = None) -> dict[str, SHDSplit]:
    """Train / validation (seeded split of the training file, 90 / 10 %) / test splits."""
    directory = data_dir(data_dir_)
    full = read_shd_file(_h5_file(directory, "shd_train"))
    test = read_shd_file(_h5_file(directory, "shd_test"))
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(SPLIT_SEED)).numpy()
    n_train = round(len(full) * TRAIN_SIZE / (TRAIN_SIZE + VAL_SIZE))
    return {"train": full.subset(order[:n_train]), "val": full.subset(order[n_train:]), "test": test}
