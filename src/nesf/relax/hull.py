"""A stability proxy: energy above a convex hull built from a potential's energies of training crystals.

For each chemical system of the generated crystals, the hull is pymatgen's ``PhaseDiagram`` of
the training crystals whose elements all lie in that system (elemental crystals included),
with the potential's energy per atom of each. Systems of more than :data:`MAX_DIAGRAM_ELEMENTS`
elements (decoded samples hold up to a dozen) are beyond a convex-hull construction in that many
dimensions; for those the hull energy at the crystal's composition is found as the linear
programme it is (the lowest energy of a non-negative mix of the references with that
composition, scipy's HiGHS), which gives the same value. An element without any crystal of its own in the
training set takes its reference from a table shipped with nesf when the energies are CHGNet's
(:func:`elemental_references`: the lowest CHGNet energy per atom among the element's crystals in
the Materials Project training set, 84 elements; a training set of compounds only, such as
perov_5, needs it for every element); an element outside the table, or energies from another
potential, get a reference at 0 eV/atom, so that every hull is defined (noble gases are the usual
case; their solids lie within a few tens of meV of 0). A crystal counts as stable by the proxy
when it lies within ``threshold`` (default 0.1 eV/atom) of its hull.

The training crystals' energies are computed as needed and cached on disk
(:func:`default_cache_dir`, ``~/.cache/nesf/hull/``), one JSON file per potential and training set
(the key hashes the potential's name and the training crystals' lattices, positions and
species), so a second run over the same training set computes only the crystals it has not met.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nesf.data.crystal import Crystal

#: Share of crystals within this energy above the hull (eV/atom) is the stability proxy.
STABLE_THRESHOLD = 0.1

#: Largest chemical system (number of elements) whose hull is a pymatgen ``PhaseDiagram``.
MAX_DIAGRAM_ELEMENTS = 5

#: A function giving energies per atom (eV/atom, None where it fails) of crystals.
EnergyFn = Callable[[list[Crystal]], list[float | None]]

#: The shipped table of the elements' CHGNet energies (``benchmarks/elemental_references.py``).
ELEMENTAL_REFERENCES = Path(__file__).with_name("elemental_references.json")


def elemental_references(potential: str | None, path: str | Path = ELEMENTAL_REFERENCES) -> dict[str, float]:
    """Each element's reference energy per atom (eV/atom) from the table, if it was made with ``potential``.

    Returns an empty dict when ``potential`` (a :func:`nesf.relax.potential.model_tag`) is not the
    table's: energies of different potentials do not mix in one hull.
    """
    table = json.loads(Path(path).read_text())
    if potential is None or table.get("potential") != potential:
        return {}
    return {el: float(row["energy_per_atom_ev"]) for el, row in table["elements"].items()}


def default_cache_dir() -> Path:
    """``$NESF_CACHE_DIR/hull``, else ``$XDG_CACHE_HOME/nesf/hull``, else ``~/.cache/nesf/hull``."""
    from nesf.io.cache import cache_dir

    return cache_dir("hull")


def crystals_sha256(crystals: Sequence[Crystal]) -> str:
    """SHA-256 over the crystals' lattices, positions and atomic numbers, in order."""
    h = hashlib.sha256()
    for c in crystals:
        for arr in (c.lattice, c.cart):
            h.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(c.numbers, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


def chemical_system(crystal: Crystal) -> frozenset[str]:
    """The set of element symbols of a crystal."""
    return frozenset(crystal.symbols)


class EnergyCache:
    """Energies per atom (eV/atom) of training crystals by index, in one JSON file per potential and training set.

    Args:
        folder: the cache folder (e.g. :func:`default_cache_dir`).
        model: name of the potential (part of the key).
        training_sha256: :func:`crystals_sha256` of the training crystals (part of the key).
    """

    def __init__(self, folder: str | Path, model: str, training_sha256: str) -> None:
        self.model = model
        self.training_sha256 = training_sha256
        key = hashlib.sha256(f"{model}\n{training_sha256}".encode()).hexdigest()[:24]
        self.path = Path(folder) / f"{key}.json"
        self.energies: dict[int, float | None] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("model") == model and data.get("training_sha256") == training_sha256:
                    self.energies = {int(k): v for k, v in data["energies"].items()}
            except (OSError, ValueError, KeyError, TypeError):  # a damaged cache is rebuilt
                self.energies = {}

    def save(self) -> None:
        """Write the cache (atomically)."""
        from nesf.io.writers import write_json

        write_json(
            self.path,
            {
                "model": self.model,
                "training_sha256": self.training_sha256,
                "units": "eV/atom",
                "energies": {str(k): v for k, v in sorted(self.energies.items())},
            },
        )


class HullProxy:
    """Convex hulls of reference compositions and energies, one per chemical system (built when first asked).

    Args:
        entries: reference ``(composition, energy per atom in eV/atom)`` pairs; a composition is
            anything pymatgen's ``Composition`` takes (``"NaCl"``, ``{"Na": 1, "Cl": 1}``).
        missing_element_ev: the energy per atom (eV/atom) of an element without an entry of its own
            and without one in ``element_references``.
        element_references: energies per atom (eV/atom) by element symbol for elements without an
            entry of their own (e.g. :func:`elemental_references`).
    """

    def __init__(
        self,
        entries: Iterable[tuple[object, float]],
        missing_element_ev: float = 0.0,
        element_references: Mapping[str, float] | None = None,
    ) -> None:
        from pymatgen.core import Composition

        self.missing_element_ev = missing_element_ev
        self.element_references = dict(element_references or {})
        self._by_system: dict[frozenset[str], list[tuple[Composition, float]]] = {}
        for comp, energy in entries:
            if energy is None or not np.isfinite(energy):
                continue
            c = Composition(comp)
            system = frozenset(str(e) for e in c.elements)
            self._by_system.setdefault(system, []).append((c, float(energy)))
        self._diagrams: dict[frozenset[str], object] = {}
        self.missing_elements: set[str] = set()  # met without an entry of their own

    @property
    def default_elements(self) -> set[str]:
        """Elements met without an entry of their own or a table value: at ``missing_element_ev``."""
        return self.missing_elements - self.element_references.keys()

    def references(self, system: frozenset[str]) -> list[tuple[object, float]]:
        """The ``(Composition, eV/atom)`` references of a chemical system, missing elements at their default."""
        from pymatgen.core import Composition

        refs = []
        for k in range(1, len(system) + 1):
            for sub in itertools.combinations(sorted(system), k):
                refs.extend(self._by_system.get(frozenset(sub), []))
        for el in sorted(system):
            if frozenset([el]) not in self._by_system:
                self.missing_elements.add(el)
                refs.append((Composition(el), self.element_references.get(el, self.missing_element_ev)))
        return refs

    def _diagram(self, system: frozenset[str]):  # noqa: ANN202
        from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram

        if system not in self._diagrams:
            self._diagrams[system] = PhaseDiagram([PDEntry(c, e * c.num_atoms) for c, e in self.references(system)])
        return self._diagrams[system]

    def hull_energy(self, composition: object, method: str = "auto") -> float:
        """Energy of the hull (eV/atom) at a composition.

        ``method``: ``diagram`` (pymatgen ``PhaseDiagram``), ``lp`` (the linear programme) or
        ``auto`` (the diagram up to :data:`MAX_DIAGRAM_ELEMENTS` elements, else the programme).
        """
        from pymatgen.core import Composition

        comp = Composition(composition)
        system = frozenset(str(e) for e in comp.elements)
        if method == "diagram" or (method == "auto" and len(system) <= MAX_DIAGRAM_ELEMENTS):
            return float(self._diagram(system).get_hull_energy_per_atom(comp))
        return _lp_hull_energy(comp, self.references(system))

    def e_above_hull(self, composition: object, energy_per_atom: float, method: str = "auto") -> float:
        """Energy above the hull (eV/atom) of a composition at ``energy_per_atom`` (negative: below it)."""
        return float(energy_per_atom) - self.hull_energy(composition, method)


def _lp_hull_energy(comp, refs: list[tuple[object, float]]) -> float:  # noqa: ANN001
    """Lowest energy per atom (eV/atom) of a non-negative mix of references with composition ``comp``."""
    from scipy.optimize import linprog

    elements = sorted({str(e) for c, _ in refs for e in c.elements} | {str(e) for e in comp.elements})
    a = np.array([[c.get_atomic_fraction(el) for el in elements] for c, _ in refs]).T  # [E, R]
    b = np.array([comp.get_atomic_fraction(el) for el in elements])
    energies = np.array([e for _, e in refs])
    res = linprog(energies, A_eq=a, b_eq=b, bounds=(0, None), method="highs")
    if not res.success:
        raise ValueError(f"no hull at {comp.reduced_formula}: {res.message}")
    return float(res.fun)


def _counts(crystal: Crystal) -> dict[str, int]:
    symbols, counts = np.unique(crystal.symbols, return_counts=True)
    return {str(s): int(n) for s, n in zip(symbols, counts)}


def needed_indices(training: Sequence[Crystal], systems: Iterable[frozenset[str]]) -> list[int]:
    """Indices of training crystals whose elements all lie in one of ``systems``."""
    targets = set(systems)
    subsets: set[frozenset[str]] = set()
    for s in targets:
        for k in range(1, len(s) + 1):
            subsets.update(frozenset(sub) for sub in itertools.combinations(sorted(s), k))
    return [i for i, c in enumerate(training) if c.n_atoms and chemical_system(c) in subsets]


def training_hull(
    training: Sequence[Crystal],
    systems: Iterable[frozenset[str]],
    energies: EnergyFn,
    cache: EnergyCache | None = None,
    chunk: int = 256,
    progress: bool = True,
    element_references: Mapping[str, float] | None = None,
) -> tuple[HullProxy, dict]:
    """A :class:`HullProxy` of the training crystals in ``systems``' chemical systems, and a record.

    Energies missing from ``cache`` are computed with ``energies`` in chunks of ``chunk``
    crystals, the cache saved after each chunk. ``element_references``: energies of elements
    without a training crystal of their own (:class:`HullProxy`).
    """
    idx = needed_indices(training, systems)
    known = cache.energies if cache is not None else {}
    todo = [i for i in idx if i not in known]
    computed: dict[int, float | None] = {}
    bar = tqdm(total=len(todo), desc="hull energies", unit="crystal", disable=not progress or not todo)
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        for i, e in zip(part, energies([training[i] for i in part])):
            computed[i] = e
        if cache is not None:
            cache.energies.update(computed)
            cache.save()
        bar.update(len(part))
    bar.close()
    values = {**known, **computed}
    entries = [(_counts(training[i]), values.get(i)) for i in idx]
    hull = HullProxy(entries, element_references=element_references)
    record = {
        "hull_training_crystals": len(idx),
        "hull_energies_computed": len(todo),
        "hull_energies_failed": sum(values.get(i) is None for i in idx),
        "hull_cache": str(cache.path) if cache is not None else None,
    }
    return hull, record


__all__ = [
    "ELEMENTAL_REFERENCES",
    "MAX_DIAGRAM_ELEMENTS",
    "STABLE_THRESHOLD",
    "EnergyCache",
    "HullProxy",
    "chemical_system",
    "crystals_sha256",
    "default_cache_dir",
    "elemental_references",
    "needed_indices",
    "training_hull",
]
