"""The domain of applicability of a trained model: what its training crystals covered.

A model has only learned the fields of crystals like its training data. :class:`Domain`
records that data's elements (with counts), atoms per cell, cell lengths and angles (ranges,
in the setting the model sees) and crystal systems; :meth:`Domain.check` names every way in
which a crystal lies outside it, so that a reconstruction of such a crystal is never returned
without a warning.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from nesf.data.crystal import Crystal

#: Crystal systems in the order of the International Tables.
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")

#: Slack on the trained ranges: relative for lengths, degrees for angles.
LENGTH_SLACK = 0.02
ANGLE_SLACK_DEG = 1.0

#: spglib tolerance (Angstrom) for the crystal system.
SYMPREC = 0.1


def symmetry_dataset(crystal: Crystal, symprec: float = SYMPREC):  # noqa: ANN201
    """The spglib symmetry dataset of a crystal at ``symprec`` (Angstrom), or None where spglib finds none."""
    import warnings

    import spglib

    cell = (crystal.lattice, crystal.frac % 1.0, crystal.numbers)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's notice about its error handling
            return spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception:  # spglib raises on degenerate cells
        return None


def span(low: float, high: float, fmt: str = "{}") -> str:
    """``"1-20"``, or ``"5"`` where both ends read the same in ``fmt`` (never ``"5-5"``)."""
    a, b = fmt.format(low), fmt.format(high)
    return a if a == b else f"{a}-{b}"


def crystal_system(crystal: Crystal, symprec: float = SYMPREC) -> str:
    """Crystal system of a crystal (spglib, ``symprec`` in Angstrom); ``"unknown"`` if spglib fails."""
    dataset = symmetry_dataset(crystal, symprec)
    if dataset is None:
        return "unknown"
    number = int(dataset.number if hasattr(dataset, "number") else dataset["number"])
    for limit, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal")):
        if number <= limit:
            return name
    if number <= 167:
        return "trigonal"
    return "hexagonal" if number <= 194 else "cubic"


def fingerprint(crystals: Sequence[Crystal]) -> str:
    """A short order-independent fingerprint of a set of crystals (ids, species, cells to 1e-3 A).

    Two training sets with the same fingerprint hold the same crystals.
    """
    keys = []
    for c in crystals:
        h = hashlib.sha256(str(c.id).encode())
        h.update(np.asarray(c.numbers, dtype=np.int64).tobytes())
        h.update(np.round(np.asarray(c.lattice, dtype=np.float64), 3).tobytes())
        keys.append(h.digest())
    total = hashlib.sha256()
    for k in sorted(keys):
        total.update(k)
    return total.hexdigest()[:16]


@dataclass
class Domain:
    """What a model's training crystals covered.

    Attributes:
        elements: atomic number -> number of training crystals holding it.
        atoms: ``(min, max)`` atoms per cell.
        lengths: ``(min, max)`` cell lengths in Angstrom (over a, b and c).
        angles_deg: ``(min, max)`` cell angles in degrees.
        systems: crystal system -> number of training crystals.
        n_crystals: training crystals.
        sources: fingerprints of the training sets counted (:func:`fingerprint`), so that a
            continuation on the same data does not count its crystals twice.
    """

    elements: dict[int, int]
    atoms: tuple[int, int]
    lengths: tuple[float, float]
    angles_deg: tuple[float, float]
    systems: dict[str, int] = field(default_factory=dict)
    n_crystals: int = 0
    sources: tuple[str, ...] = ()

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal]) -> Domain:
        """The domain of crystals, in the setting they are given in (that of the model)."""
        if not crystals:
            raise ValueError("a domain needs at least one crystal")
        elements: Counter[int] = Counter()
        for c in crystals:
            elements.update({int(z) for z in c.numbers})
        params = np.stack([c.lattice_params for c in crystals])
        counts = [c.n_atoms for c in crystals]
        systems = Counter(c.info.get("crystal_system") or crystal_system(c) for c in crystals)
        return cls(
            elements=dict(sorted(elements.items())),
            atoms=(int(min(counts)), int(max(counts))),
            lengths=(float(params[:, :3].min()), float(params[:, :3].max())),
            angles_deg=(float(np.degrees(params[:, 3:].min())), float(np.degrees(params[:, 3:].max()))),
            systems={s: systems[s] for s in (*CRYSTAL_SYSTEMS, "unknown") if systems.get(s)},
            n_crystals=len(crystals),
            sources=(fingerprint(crystals),),
        )

    def merged(self, other: Domain) -> Domain:
        """The domain of both training sets (a fine-tuned model covers its initial model's too).

        Crystals are counted once: when ``other`` already counts this domain's training set (a
        continuation on the same data) its counts are kept, and only its ranges of atoms per
        cell, lengths and angles are widened to this record's, which may see the same crystals
        in another setting (a continuation that switches to primitive cells, say). Records
        written before fingerprints were kept are recognised by identical crystal and element
        counts (setting-independent, unlike crystal systems found at a tolerance).
        """
        if (self.sources and set(self.sources) <= set(other.sources)) or (
            not other.sources and self._same_counts(other)
        ):
            return replace(
                self._widened(other),
                elements=dict(other.elements),
                systems=dict(other.systems),
                n_crystals=other.n_crystals,
                sources=tuple(dict.fromkeys((*other.sources, *self.sources))),
            )
        elements = Counter(self.elements)
        elements.update(other.elements)
        systems = Counter(self.systems)
        systems.update(other.systems)
        return replace(
            self._widened(other),
            elements=dict(sorted(elements.items())),
            systems={s: systems[s] for s in (*CRYSTAL_SYSTEMS, "unknown") if systems.get(s)},
            n_crystals=self.n_crystals + other.n_crystals,
            sources=tuple(dict.fromkeys((*other.sources, *self.sources))),
        )

    def _widened(self, other: Domain) -> Domain:
        """This record with the ranges (atoms, lengths, angles) spanning both records."""
        return replace(
            self,
            atoms=(min(self.atoms[0], other.atoms[0]), max(self.atoms[1], other.atoms[1])),
            lengths=(min(self.lengths[0], other.lengths[0]), max(self.lengths[1], other.lengths[1])),
            angles_deg=(min(self.angles_deg[0], other.angles_deg[0]), max(self.angles_deg[1], other.angles_deg[1])),
        )

    def _same_counts(self, other: Domain) -> bool:
        return self.n_crystals == other.n_crystals and self.elements == other.elements

    def check(self, crystal: Crystal) -> list[str]:
        """Reasons why ``crystal`` (in the model's setting) lies outside the domain; empty if inside."""
        from ase.data import chemical_symbols

        reasons = []
        unseen = sorted({int(z) for z in crystal.numbers} - set(self.elements))
        if unseen:
            names = ", ".join(chemical_symbols[z] for z in unseen)
            reasons.append(f"element{'s' if len(unseen) > 1 else ''} {names} never seen in training")
        if not self.atoms[0] <= crystal.n_atoms <= self.atoms[1]:
            reasons.append(f"{crystal.n_atoms} atoms per cell, trained on {span(*self.atoms)}")
        params = crystal.lattice_params
        lo, hi = self.lengths
        lengths = params[:3]
        if lengths.min() < lo * (1 - LENGTH_SLACK) or lengths.max() > hi * (1 + LENGTH_SLACK):
            shown = ", ".join(f"{v:.2f}" for v in lengths)
            reasons.append(f"cell lengths {shown} A outside the trained {span(lo, hi, '{:.2f}')} A")
        angles = np.degrees(params[3:])
        lo, hi = self.angles_deg
        if angles.min() < lo - ANGLE_SLACK_DEG or angles.max() > hi + ANGLE_SLACK_DEG:
            shown = ", ".join(f"{v:.1f}" for v in angles)
            reasons.append(f"cell angles {shown} deg outside the trained {span(lo, hi, '{:.1f}')} deg")
        if self.systems:
            system = crystal_system(crystal)
            seen = self.systems.get(system, 0)
            if system != "unknown" and seen == 0:
                reasons.append(f"{system} crystal system never seen in training")
            elif system != "unknown" and seen < self.rare_count:
                reasons.append(
                    f"{system} crystal system rarely seen in training ({seen} of {self.n_crystals} crystals)"
                )
        return reasons

    @property
    def rare_count(self) -> int:
        """Crystal systems with fewer training crystals than this (0.5 % of them) count as rarely seen."""
        return max(1, math.ceil(0.005 * self.n_crystals))

    def to_dict(self) -> dict:
        """Plain-data form (stored in checkpoints and model cards; JSON keys are strings)."""
        return {
            "elements": {str(z): n for z, n in self.elements.items()},
            "atoms": list(self.atoms),
            "lengths": list(self.lengths),
            "angles_deg": list(self.angles_deg),
            "systems": dict(self.systems),
            "n_crystals": self.n_crystals,
            "sources": list(self.sources),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Domain:
        """Inverse of :meth:`to_dict`."""
        return cls(
            elements={int(z): int(n) for z, n in d["elements"].items()},
            atoms=(int(d["atoms"][0]), int(d["atoms"][1])),
            lengths=(float(d["lengths"][0]), float(d["lengths"][1])),
            angles_deg=(float(d["angles_deg"][0]), float(d["angles_deg"][1])),
            systems={str(k): int(v) for k, v in d.get("systems", {}).items()},
            n_crystals=int(d.get("n_crystals", 0)),
            sources=tuple(str(x) for x in d.get("sources", ())),
        )

    def describe(self) -> str:
        """A few readable lines for ``nesf models``."""
        from ase.data import chemical_symbols

        top = sorted(self.elements.items(), key=lambda kv: -kv[1])
        elems = ", ".join(chemical_symbols[z] for z, _ in top[:12]) + (
            f" and {len(top) - 12} more" if len(top) > 12 else ""
        )
        systems = ", ".join(f"{s} {n}" for s, n in self.systems.items())
        plural = "s" if len(self.elements) != 1 else ""
        return (
            f"{self.n_crystals} training crystals; {len(self.elements)} element{plural} ({elems}); "
            f"{span(*self.atoms)} atoms per cell; cell lengths {span(*self.lengths, '{:.2f}')} A, "
            f"angles {span(*self.angles_deg, '{:.1f}')} deg; "
            f"crystal systems: {systems or 'not recorded'}"
        )


__all__ = ["CRYSTAL_SYSTEMS", "Domain", "crystal_system", "fingerprint", "span"]
