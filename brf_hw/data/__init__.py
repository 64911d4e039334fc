"""Datasets: ECG-QTDB and (P)S-MNIST, read from a data directory with checksum-verified download."""

from .ecg import ECGSplit, load_ecg
from .fetch import DataError, data_dir, fetch
from .mnist import MNISTSplit, as_sequences, load_mnist

__all__ = ["ECGSplit", "load_ecg", "DataError", "data_dir", "fetch", "MNISTSplit", "as_sequences", "load_mnist"]
