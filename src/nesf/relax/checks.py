"""Checks of generated crystals that need no potential: symmetry, RMSD to a relaxed form, uniqueness, novelty.

- :func:`space_group_number`: spglib's space group at a tolerance in Angstrom;
- :func:`rmsd_to_relaxed`: the RMSD between a crystal and its relaxed form in Angstrom, by
  pymatgen's ``StructureMatcher`` (its normalised RMS scaled back to Angstrom), or, when the
  matcher finds no match, atom i to atom i (the relaxation keeps the order of the atoms);
- :func:`unique_mask` / :func:`novel_mask`: StructureMatcher among the samples, and against
  training crystals of the same reduced composition.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from nesf.data.crystal import Crystal


def space_group_number(crystal: Crystal, symprec: float = 0.1) -> int | None:
    """The spglib space group number of a crystal at ``symprec`` (Angstrom); None when spglib finds none."""
    import spglib

    if crystal.n_atoms == 0:
        return None
    cell = (crystal.lattice, crystal.frac % 1.0, crystal.numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            data = spglib.get_symmetry_dataset(cell, symprec=symprec)
        except Exception:  # spglib raises on degenerate cells in newer versions
            return None
    return None if data is None else int(data.number)


@functools.cache
def _matcher(kind: str):  # noqa: ANN202
    from pymatgen.analysis.structure_matcher import StructureMatcher

    if kind == "rmsd":  # no volume scaling: the RMSD is meant in Angstrom, the cell change included
        return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=False, scale=False)
    return StructureMatcher()  # pymatgen's defaults, as CDVAE-style uniqueness and novelty use


def fixed_order_rmsd(before: Crystal, after: Crystal) -> float:
    """RMSD (A) between two crystals with the same atoms in the same order.

    Fractional displacements are taken to their minimum image, their mean (a rigid translation)
    removed, and expressed in Angstrom with the mean of the two cells.
    """
    if before.n_atoms != after.n_atoms or before.n_atoms == 0:
        raise ValueError("fixed-order RMSD needs the same atoms in the same order")
    d = after.frac - before.frac
    d -= np.round(d)
    d -= d.mean(axis=0)
    d -= np.round(d)
    cart = d @ (0.5 * (before.lattice + after.lattice))
    return float(np.sqrt((cart**2).sum(axis=1).mean()))


def rmsd_to_relaxed(before: Crystal, after: Crystal) -> tuple[float, str]:
    """RMSD (A) between a crystal and its relaxed form, and the method (``matcher`` or ``fixed_order``).

    ``matcher``: pymatgen's ``StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, scale=False)``;
    its RMS, normalised by ``(V / N)^(1/3)``, is multiplied by that length of the mean volume per
    atom of the two cells. ``fixed_order`` (:func:`fixed_order_rmsd`) when the matcher finds no
    match (a large cell change or displacement).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            match = _matcher("rmsd").get_rms_dist(before.to_pymatgen(), after.to_pymatgen())
    except Exception:  # a degenerate cell the matcher cannot reduce
        match = None
    if match is not None:
        length = (0.5 * (before.volume / before.n_atoms + after.volume / after.n_atoms)) ** (1.0 / 3.0)
        return float(match[0]) * length, "matcher"
    return fixed_order_rmsd(before, after), "fixed_order"


def _groups(crystals: Sequence[Crystal]) -> dict[str, list[int]]:
    """Indices of crystals by reduced formula."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(crystals):
        if c.n_atoms:
            groups.setdefault(c.formula, []).append(i)
    return groups


def _fits(a, b) -> bool:  # noqa: ANN001
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(_matcher("default").fit(a, b))
    except Exception:  # a degenerate cell: no match
        return False


def unique_mask(crystals: Sequence[Crystal]) -> np.ndarray:
    """``[N]`` bool: crystal i matches (pymatgen ``StructureMatcher`` defaults) no earlier crystal.

    Only crystals of the same reduced formula are compared; the number of True entries is the
    number of distinct structures. Crystals without atoms are never unique.
    """
    keep = np.zeros(len(crystals), dtype=bool)
    for idx in _groups(crystals).values():
        kept: list = []
        for i in idx:
            s = crystals[i].to_pymatgen()
            if not any(_fits(s, t) for t in kept):
                keep[i] = True
                kept.append(s)
    return keep


def novel_mask(crystals: Sequence[Crystal], training: Iterable[Crystal]) -> np.ndarray:
    """``[N]`` bool: crystal i matches no training crystal of the same reduced formula.

    Training crystals are only converted for the formulas the crystals hold, so a large
    training set costs one pass over its compositions.
    """
    wanted = set(_groups(crystals))
    train_by_formula: dict[str, list] = {}
    for t in training:
        if t.n_atoms and t.formula in wanted:
            train_by_formula.setdefault(t.formula, []).append(t.to_pymatgen())
    novel = np.zeros(len(crystals), dtype=bool)
    for formula, idx in _groups(crystals).items():
        known = train_by_formula.get(formula, [])
        for i in idx:
            s = crystals[i].to_pymatgen()
            novel[i] = not any(_fits(s, t) for t in known)
    return novel


def percent(mask: np.ndarray) -> float | None:
    """Share of True entries in %, None for an empty mask."""
    return 100.0 * float(np.mean(mask)) if len(mask) else None


__all__ = [
    "fixed_order_rmsd",
    "novel_mask",
    "percent",
    "rmsd_to_relaxed",
    "space_group_number",
    "unique_mask",
]
