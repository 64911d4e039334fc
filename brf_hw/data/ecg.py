"""ECG QT database, preprocessed by Yin et al. (2021): 4 level-crossing spike channels, per-step
wave labels (P, PQ, QR, RS, ST, TP).

The files hold 1301 steps; the last one is an end marker (-1 on channel 0) and is dropped.
Steps without annotation have an all-zero label: ``labels`` maps them to class 0 as the paper's
code does (argmax), ``annotated`` marks the steps that really carry a label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.io
import torch

from .batch import Batch
from .fetch import RemoteFile, fetch

STEPS = 1300
CHANNELS = 4
CLASSES = ("P", "PQ", "QR", "RS", "ST", "TP")
TRAIN_SIZE, VAL_SIZE, TEST_SIZE = 557, 61, 141
SPLIT_SEED = 0

_SOURCES = (
    "https://github.com/byin-cwi/Efficient-spiking-networks/raw/HEAD/data/{name}",
    "https://github.com/AdaptiveAILab/brf-neurons/raw/HEAD/experiments/ecg/data/{name}",
)
FILES = {
    "train": RemoteFile(
        "qtdb/QTDB_train.mat",
        "72d1a10c96f1540880447e07256835d66da419c0b34f3dff495731a7928c5bc7",
        tuple(s.format(name="QTDB_train.mat") for s in _SOURCES),
    ),
    "test": RemoteFile(
        "qtdb/QTDB_test.mat",
        "916f11e21679a5b61988305bbb7cd1e6df8b34f1ed4a157a7a4e295d400ef232",
        tuple(s.format(name="QTDB_test.mat") for s in _SOURCES),
    ),
}


@dataclass(frozen=True)
class ECGSplit:
    inputs: torch.Tensor  # [N, 1300, 4] float32 spikes in {0, 1}
    labels: torch.Tensor  # [N, 1300] int64 class per step (unannotated -> 0)
    annotated: torch.Tensor  # [N, 1300] bool, True where the step carries a label

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def subset(self, index) -> "ECGSplit":
        return ECGSplit(self.inputs[index], self.labels[index], self.annotated[index])

    def to_batch(self) -> Batch:
        return Batch(self.inputs.transpose(0, 1), self.labels.t(), self.annotated.t())


def _read(path) -> ECGSplit:
    mat = scipy.io.loadmat(path)
    x = mat["x"][:, :STEPS, :]
    y = mat["y"][:, :STEPS, :]
    if x.shape[1:] != (STEPS, CHANNELS) or y.shape[1:] != (STEPS, len(CLASSES)):
        raise ValueError(f"{path}: unexpected shapes x{x.shape} y{y.shape}")
    if x.min() < 0:
        raise ValueError(f"{path}: negative input inside the first {STEPS} steps")
    return ECGSplit(
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(y.argmax(-1).astype(np.int64)),
        torch.from_numpy(y.sum(-1) > 0),
    )


def load_ecg(data_dir=None) -> dict[str, ECGSplit]:
    """Train (557) / validation (61) / test (141) splits; the validation split is fixed by SPLIT_SEED."""
    full = _read(fetch(FILES["train"], data_dir))
    test = _read(fetch(FILES["test"], data_dir))
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return {
        "train": full.subset(order[:TRAIN_SIZE]),
        "val": full.subset(order[TRAIN_SIZE:]),
        "test": test,
    }
