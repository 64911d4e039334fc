import os

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors (set before any
# triton import: the decorator reads it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def ecg_splits():
    from brf_hw.data import load_ecg

    return load_ecg()
