"""Site tables: each atom of a crystal as its element and its place, in an order set by the local environment.

A crystal's property depends on which element sits on which site: in a perovskite ABX3 the
same three elements give another heat of formation when A and B swap, which a composition
vector cannot tell. A site table lists every atom as

- its atomic number (for a learned element embedding) and :data:`ELEMENT_PROPERTY_NAMES`
  (tabulated element properties from pymatgen);
- its environment: the distance to its nearest neighbour (A) and its coordination number,
  the neighbours within 1.15 times that distance;

ordered by coordination number (largest first), then electronegativity, then atomic number,
so that the same site of related crystals lands in the same row (perovskites: A with 12
neighbours, B with 6, then the three anions). Counting neighbours within a ratio of the
nearest distance keeps the order stable under the ~0.01 A noise of decoded positions, where an
order by raw distances would not be.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np

from nesf.data.crystal import Crystal

#: Tabulated properties of an element, in the order of a site row's numeric part.
ELEMENT_PROPERTY_NAMES = (
    "group",
    "row",
    "electronegativity",
    "atomic_radius_A",
    "mendeleev_number",
    "average_ionic_radius_A",
    "max_oxidation_state",
    "min_oxidation_state",
    "atomic_mass_u",
    "electron_affinity_eV",
    "ionization_energy_eV",
)
#: Environment columns after the element properties.
ENVIRONMENT_NAMES = ("nearest_neighbour_A", "coordination_number")
#: Per-crystal columns.
GLOBAL_NAMES = ("volume_per_atom_A3", "cube_root_volume_A", "n_atoms")
#: Neighbours within this factor of an atom's nearest-neighbour distance count for its coordination.
COORDINATION_FACTOR = 1.15
#: Largest distance (A) searched for neighbours; an atom with none inside gets this distance.
SEARCH_RADIUS = 6.0


def _number(value: object) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


@functools.cache
def element_properties(z: int) -> tuple[float, ...]:
    """:data:`ELEMENT_PROPERTY_NAMES` of element ``z`` (NaN where pymatgen has no value)."""
    from pymatgen.core import Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = Element.from_Z(int(z))
        states = list(e.common_oxidation_states or ()) or [0]
        return (
            _number(e.group),
            _number(e.row),
            _number(e.X),
            _number(e.atomic_radius),
            _number(e.mendeleev_no),
            _number(e.average_ionic_radius),
            float(max(states)),
            float(min(states)),
            _number(e.atomic_mass),
            _number(e.electron_affinity),
            _number(e.ionization_energy),
        )


@dataclass
class SiteTable:
    """One crystal's sites in their environment order.

    Attributes:
        numbers: atomic numbers ``[n]``.
        values: element properties then environment ``[n, P]`` (P =
            ``len(ELEMENT_PROPERTY_NAMES) + len(ENVIRONMENT_NAMES)``; NaN where unknown).
        globals_: :data:`GLOBAL_NAMES` ``[G]``.
    """

    numbers: np.ndarray
    values: np.ndarray
    globals_: np.ndarray


def site_table(crystal: Crystal) -> SiteTable:
    """The :class:`SiteTable` of a crystal with at least one atom.

    Raises:
        ValueError: the crystal has no atoms.
    """
    n = crystal.n_atoms
    if n == 0:
        raise ValueError(f"crystal {crystal.id!r} has no atoms: it has no site table")
    numbers = np.asarray(crystal.numbers, dtype=int)
    nearest = np.full(n, SEARCH_RADIUS)
    coordination = np.zeros(n)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            centre, _, _, dist = crystal.to_pymatgen().get_neighbor_list(SEARCH_RADIUS)
        keep = dist > 1e-6
        centre, dist = centre[keep], dist[keep]
        np.minimum.at(nearest, centre, dist)
        within = dist <= COORDINATION_FACTOR * nearest[centre]
        coordination = np.bincount(centre[within], minlength=n).astype(float)
    except Exception:  # a degenerate decoded cell: environment unknown  # noqa: BLE001
        nearest[:] = math.nan
        coordination[:] = math.nan
    props = np.array([element_properties(int(z)) for z in numbers], dtype=float)
    order = np.lexsort((numbers, np.nan_to_num(props[:, 2], nan=0.0), -np.nan_to_num(coordination, nan=0.0)))
    values = np.concatenate([props, nearest[:, None], coordination[:, None]], axis=1)[order]
    volume = float(crystal.volume)
    return SiteTable(numbers[order], values, np.array([volume / n, np.cbrt(max(volume, 0.0)), float(n)]))


def site_arrays(crystals: list[Crystal], max_sites: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Padded site tables: numbers ``[N, S]`` (0: padding), values ``[N, S, P]``, mask ``[N, S]``, globals ``[N, G]``.

    Raises:
        ValueError: a crystal has no atoms or more than ``max_sites`` atoms (its id is named).
    """
    p = len(ELEMENT_PROPERTY_NAMES) + len(ENVIRONMENT_NAMES)
    numbers = np.zeros((len(crystals), max_sites), dtype=np.int64)
    values = np.zeros((len(crystals), max_sites, p))
    mask = np.zeros((len(crystals), max_sites), dtype=bool)
    glob = np.zeros((len(crystals), len(GLOBAL_NAMES)))
    for i, c in enumerate(crystals):
        if c.n_atoms > max_sites:
            raise ValueError(
                f"crystal {c.id!r} has {c.n_atoms} atoms; this head was fitted on crystals of at most {max_sites}"
            )
        t = site_table(c)
        numbers[i, : c.n_atoms] = t.numbers
        values[i, : c.n_atoms] = t.values
        mask[i, : c.n_atoms] = True
        glob[i] = t.globals_
    return numbers, values, mask, glob


__all__ = [
    "COORDINATION_FACTOR",
    "ELEMENT_PROPERTY_NAMES",
    "ENVIRONMENT_NAMES",
    "GLOBAL_NAMES",
    "SiteTable",
    "element_properties",
    "site_arrays",
    "site_table",
]
