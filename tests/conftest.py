import os
from pathlib import Path

import pytest
import torch

# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors (set before any
# triton import: the decorator reads it).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests and CI read the verified copies in ../shared/data unless told otherwise.
if "BRF_HW_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["BRF_HW_DATA"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def ecg_splits():
    from brf_hw.data import load_ecg

    return load_ecg()
