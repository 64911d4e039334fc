"""S-MNIST and PS-MNIST: each 28x28 image read as a 784-step sequence of one pixel in [0, 1].

PS-MNIST applies one fixed, seeded permutation of the pixel order to every image.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np
import torch

from .batch import Batch
from .fetch import RemoteFile, fetch

STEPS = 784
TRAIN_SIZE, VAL_SIZE, TEST_SIZE = 54_000, 6_000, 10_000
SPLIT_SEED = 0
PERMUTATION_SEED = 1234

_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/{name}",
    "https://storage.googleapis.com/cvdf-datasets/mnist/{name}",
)
_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FILES = {
    name: RemoteFile(f"mnist/{name}", digest, tuple(m.format(name=name) for m in _MIRRORS))
    for name, digest in _SHA256.items()
}


@dataclass(frozen=True)
class MNISTSplit:
    images: torch.Tensor  # [N, 784] uint8, kept compact; sequences are made per batch
    labels: torch.Tensor  # [N] int64

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index) -> "MNISTSplit":
        return MNISTSplit(self.images[index], self.labels[index])

    def to_batch(self) -> Batch:
        return Batch(as_sequences(self.images), self.labels, None)


def read_idx(path) -> np.ndarray:
    """Parse a (gzipped) IDX file: magic 0x00 0x00 dtype ndim, big-endian dims, then the data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def permutation(seed: int = PERMUTATION_SEED) -> torch.Tensor:
    return torch.randperm(STEPS, generator=torch.Generator().manual_seed(seed))


def load_mnist(data_dir=None, permuted: bool = False) -> dict[str, MNISTSplit]:
    """Train (54k) / validation (6k, seeded) / test (10k), pixel order permuted for PS-MNIST."""

    def split(kind: str) -> MNISTSplit:
        images = read_idx(fetch(FILES[f"{kind}-images-idx3-ubyte.gz"], data_dir)).reshape(-1, STEPS)
        labels = read_idx(fetch(FILES[f"{kind}-labels-idx1-ubyte.gz"], data_dir))
        images = torch.from_numpy(images.copy())
        if permuted:
            images = images[:, permutation()]
        return MNISTSplit(images, torch.from_numpy(labels.astype(np.int64)))

    full, test = split("train"), split("t10k")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return {"train": full.subset(order[:TRAIN_SIZE]), "val": full.subset(order[TRAIN_SIZE:]), "test": test}


def as_sequences(images: torch.Tensor) -> torch.Tensor:
    """[B, 784] uint8 -> [784, B, 1] float32 in [0, 1], time-major."""
    return (images.to(torch.float32) / 255.0).t().unsqueeze(-1)
