"""Helpers of the design tests (a module of its own: every test folder has a conftest of that name)."""

from __future__ import annotations

import numpy as np

NAMES = ("NaCl-rocksalt", "CsCl", "MgO-rocksalt", "SrTiO3-perovskite", "KCl-sylvite", "LiF-griceite", "PbS-galena")


def volume_per_atom(crystal) -> float:
    """The made-up property of the tests: volume per atom (A^3)."""
    return float(crystal.volume / crystal.n_atoms)


def random_features(n: int = 60, f: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random regression data ``[n, f]``, ``[n]``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    return x, x[:, 0] * 2 - x[:, 1] + 0.1 * rng.normal(size=n)
