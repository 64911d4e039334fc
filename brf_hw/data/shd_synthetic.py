"""Small files in SHD's HDF5 layout, for running the SHD flow where the real files are not (they
are not redistributed; ``shd``): class-structured samples whose spikes crowd a band of channels
that moves with the class, so a network learns them in a few epochs and then spikes like a trained
network; or uniformly random ones. Not a benchmark: accuracy on these files means nothing.

    python -m brf_hw.data.shd_synthetic DIR [--train 200] [--test 40] [--spikes 3000]
    brf-hw qat --task shd --data-dir DIR --epochs 8 --qat-epochs 1 --batch-size 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .shd import CHANNELS, CLASSES


def write_shd(path, samples, labels) -> None:
    """samples: list of (times in s, units) pairs, as SHD stores them (variable-length arrays)."""
    import h5py

    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        times = spikes.create_dataset("times", (len(samples),), dtype=h5py.vlen_dtype(np.float32))
        units = spikes.create_dataset("units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(samples):
            times[i], units[i] = np.asarray(t, np.float32), np.asarray(u, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint8))


def random_samples(n: int, seed: int, spikes: int = 300) -> list:
    rng = np.random.default_rng(seed)
    return [(np.sort(rng.uniform(0, 1.2, spikes)), rng.integers(0, CHANNELS, spikes)) for _ in range(n)]


def class_samples(n: int, seed: int, spikes: int = 3000) -> list:
    """Sample i (label i % 20): ``spikes`` spikes over 1 s on channels ~ N(100 + 30 * label, 20)."""
    rng = np.random.default_rng(seed)
    return [(np.sort(rng.uniform(0, 1.0, spikes)),
             rng.normal(100 + 30 * (i % CLASSES), 20, spikes).clip(0, CHANNELS - 1)) for i in range(n)]


def write_class_dir(root, train: int = 80, test: int = 20, spikes: int = 3000):
    """DIR/shd/shd_train.h5 and shd_test.h5 of class-structured samples; returns ``root``."""
    root = Path(root)
    (root / "shd").mkdir(parents=True, exist_ok=True)
    write_shd(root / "shd" / "shd_train.h5", class_samples(train, 0, spikes), np.arange(train) % CLASSES)
    write_shd(root / "shd" / "shd_test.h5", class_samples(test, 1, spikes), np.arange(test) % CLASSES)
    return root


def main(argv=None) -> None:
    from ..cli_util import POSITIVE_INT

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--train", type=POSITIVE_INT, default=200)
    parser.add_argument("--test", type=POSITIVE_INT, default=40)
    parser.add_argument("--spikes", type=POSITIVE_INT, default=3000, help="spikes per sample (1 s, 250 steps)")
    args = parser.parse_args(argv)
    write_class_dir(args.dir, args.train, args.test, args.spikes)
    print(f"wrote {args.dir / 'shd'}/shd_train.h5 ({args.train} samples) and shd_test.h5 ({args.test})")


if __name__ == "__main__":
    main()
