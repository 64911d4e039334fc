"""Shared by tests/ and the notebooks in examples/ (run by nbmake)."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parent.parent / "shared" / "data"

# Tests, notebooks and CI read the verified copies in ../shared/data unless told otherwise (the
# notebooks' kernels inherit it).
if "BRF_HW_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["BRF_HW_DATA"] = str(SHARED_DATA)

# Notebooks that take minutes run with the slow tests (make test-slow); the others in make test.
SLOW_NOTEBOOKS = {"ecg_end_to_end.ipynb", "design_space.ipynb"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.suffix == ".ipynb" and item.path.name in SLOW_NOTEBOOKS:
            item.add_marker(pytest.mark.slow)
