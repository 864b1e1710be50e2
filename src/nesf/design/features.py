"""Features of crystals for the independent evaluators: Magpie composition features and simple structure ones.

The evaluators score designed crystals from another representation than the latent codes the
heads read: the 132 Magpie composition features (matminer's ``ElementProperty`` "magpie"
preset; missing features 0) beside structure features computed from the cell and the atoms:

- volume per atom (A^3), density (g/cm^3), atoms per cell;
- cell lengths sorted (A) and the cell angles sorted (degrees);
- shortest interatomic distance (A) and each atom's nearest-neighbour distance averaged (A);
- the pair-distance histogram: neighbours per atom in 0.25 A shells from 1.0 to 4.0 A (12).

Composition alone tells a perovskite's formation energy only roughly: which element sits on
which site matters as much. With ``sites=K`` the first K rows of each crystal's site table
(:mod:`nesf.design.sites`: every atom's element properties and environment, in the order of
its coordination) follow, flattened (NaN beyond a crystal's atoms). The structure features are
what an evaluator of an all-carbon set (carbon_24) has to go on.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np

from nesf.data.crystal import Crystal

#: Shells of the pair-distance histogram (Angstrom).
SHELLS = np.arange(1.0, 4.0001, 0.25)
#: Names of the structure features, in order.
STRUCTURE_NAMES = [
    "volume_per_atom",
    "density",
    "n_atoms",
    "a_sorted_0",
    "a_sorted_1",
    "a_sorted_2",
    "angle_sorted_0",
    "angle_sorted_1",
    "angle_sorted_2",
    "min_distance",
    "mean_nn_distance",
    *[f"shell_{lo:.2f}_{hi:.2f}" for lo, hi in zip(SHELLS[:-1], SHELLS[1:])],
]
#: How many Magpie features there are.
N_MAGPIE = 132


@functools.cache
def _magpie():  # noqa: ANN202
    from matminer.featurizers.composition import ElementProperty

    return ElementProperty.from_preset("magpie", impute_nan=False)


@functools.cache
def _magpie_of_formula(formula: str) -> tuple[float, ...]:
    """Magpie features of a reduced formula (cached: designed crystals repeat formulas)."""
    from pymatgen.core import Composition

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            values = np.asarray(_magpie().featurize(Composition(formula)), dtype=float)
        except Exception:  # an element matminer has no data for
            values = np.full(N_MAGPIE, np.nan)
    return tuple(np.nan_to_num(values, nan=0.0).tolist())


def magpie_features(crystal: Crystal) -> np.ndarray:
    """The 132 Magpie composition features ``[132]`` of a crystal (zeros for an empty one)."""
    if crystal.n_atoms == 0:
        return np.zeros(N_MAGPIE)
    return np.asarray(_magpie_of_formula(reduced_formula(crystal)))


def reduced_formula(crystal: Crystal) -> str:
    """The reduced formula of a crystal (pymatgen's, e.g. ``"SrTiO3"``; ``""`` when it has no atoms)."""
    if crystal.n_atoms == 0:
        return ""
    from pymatgen.core import Composition

    symbols, counts = np.unique(np.asarray(crystal.symbols), return_counts=True)
    return Composition(dict(zip(symbols.tolist(), counts.tolist()))).reduced_formula


def structure_features(crystal: Crystal) -> np.ndarray:
    """The structure features ``[len(STRUCTURE_NAMES)]`` of a crystal (see the module docstring; NaN: failed)."""
    out = np.full(len(STRUCTURE_NAMES), np.nan)
    n = crystal.n_atoms
    if n == 0 or crystal.volume < 0.1:
        return out
    lattice = np.asarray(crystal.lattice, dtype=float)
    lengths = np.linalg.norm(lattice, axis=1)
    cos = [
        lattice[1] @ lattice[2] / (lengths[1] * lengths[2]),
        lattice[0] @ lattice[2] / (lengths[0] * lengths[2]),
        lattice[0] @ lattice[1] / (lengths[0] * lengths[1]),
    ]
    angles = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    try:
        s = crystal.to_pymatgen()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            centre, _, _, dist = s.get_neighbor_list(float(SHELLS[-1]) + 0.5)
    except Exception:  # a degenerate decoded cell
        return out
    keep = dist > 1e-6
    centre, dist = centre[keep], dist[keep]
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, centre, dist)
    nearest[~np.isfinite(nearest)] = np.nan
    hist = np.histogram(dist, bins=SHELLS)[0] / n
    out[:] = [
        crystal.volume / n,
        float(s.density),
        n,
        *np.sort(lengths),
        *np.sort(angles),
        float(dist.min()) if len(dist) else SHELLS[-1] + 0.5,
        float(np.nanmean(nearest)) if np.isfinite(nearest).any() else SHELLS[-1] + 0.5,
        *hist,
    ]
    return out


def _site_rows(crystal: Crystal, sites: int) -> np.ndarray:
    """The first ``sites`` rows of a crystal's site table, flattened ``[sites * P]`` (NaN beyond its atoms)."""
    from nesf.design.sites import ELEMENT_PROPERTY_NAMES, ENVIRONMENT_NAMES, site_table

    width = len(ELEMENT_PROPERTY_NAMES) + len(ENVIRONMENT_NAMES)
    out = np.full((sites, width), np.nan)
    if crystal.n_atoms:
        values = site_table(crystal).values[:sites]
        out[: len(values)] = values
    return out.reshape(-1)


def crystal_features(crystals: Sequence[Crystal], composition: bool = True, sites: int = 0) -> np.ndarray:
    """Evaluator features ``[N, F]``: Magpie (132, when ``composition``), structure features, then ``sites`` site rows.

    NaN marks a feature that could not be computed (or a site row beyond a crystal's atoms).
    """
    rows = []
    for c in crystals:
        parts = [magpie_features(c)] if composition else []
        parts.append(structure_features(c))
        if sites:
            parts.append(_site_rows(c, sites))
        rows.append(np.concatenate(parts))
    return np.array(rows, dtype=float).reshape(len(rows), len(feature_names(composition, sites)))


def feature_names(composition: bool = True, sites: int = 0) -> list[str]:
    """Names of the columns of :func:`crystal_features`."""
    from nesf.design.sites import ELEMENT_PROPERTY_NAMES, ENVIRONMENT_NAMES

    magpie = [f"magpie_{i}" for i in range(N_MAGPIE)] if composition else []
    site = [f"site{k}_{name}" for k in range(sites) for name in (*ELEMENT_PROPERTY_NAMES, *ENVIRONMENT_NAMES)]
    return magpie + list(STRUCTURE_NAMES) + site


__all__ = [
    "N_MAGPIE",
    "STRUCTURE_NAMES",
    "crystal_features",
    "feature_names",
    "magpie_features",
    "reduced_formula",
    "structure_features",
]
