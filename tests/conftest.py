"""Shared fixtures: the real datasets in ../shared/data and small generated crystals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "src" / "nesf" / "examples" / "classic_crystals.extxyz"

# one thread per pytest-xdist worker (the workers share the cores), else up to two
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Caches (fingerprints, hull energies) go to a folder of the test session, never the user's."""
    old = os.environ.get("NESF_CACHE_DIR")
    os.environ["NESF_CACHE_DIR"] = str(tmp_path_factory.mktemp("nesf-cache"))
    yield
    if old is None:
        os.environ.pop("NESF_CACHE_DIR", None)
    else:
        os.environ["NESF_CACHE_DIR"] = old


def data_dir() -> Path | None:
    """The shared data folder (``NESF_DATA_DIR`` or ``../shared/data``), or None if missing."""
    path = Path(os.environ.get("NESF_DATA_DIR", REPO.parent / "shared" / "data"))
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared datasets. Fails loudly on CI (CI=true) if missing; skips elsewhere."""
    path = data_dir()
    if path is None:
        msg = "shared datasets not found: set NESF_DATA_DIR or place them in ../shared/data"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def classic():
    """The example set of classic crystals in non-orthogonal cells, as shipped (``classic_crystals()``'s)."""
    from nesf import read_crystals

    return read_crystals(EXAMPLES)
