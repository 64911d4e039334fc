"""Datasets: ECG-QTDB and (P)S-MNIST, read from a data directory with checksum-verified download;
SHD from files the user supplies."""

from .batch import ArraySplit, Batch
from .ecg import ECGSplit, load_ecg
from .fetch import DataError, data_dir, fetch
from .mnist import MNISTSplit, as_sequences, load_mnist
from .shd import SHDSplit, load_shd

__all__ = ["ArraySplit", "Batch", "ECGSplit", "load_ecg", "DataError", "data_dir", "fetch", "MNISTSplit", "as_sequences", "load_mnist",
           "SHDSplit", "load_shd"]
