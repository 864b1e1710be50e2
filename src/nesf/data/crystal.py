"""The crystal record used throughout nesf, and conversions to and from pymatgen and ASE."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from nesf.errors import CrystalInputError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from pymatgen.core import Structure

#: ``info`` keys that describe a crystal's exact coordinates (its prepared setting, say) and so are
#: not carried over to a copy in another cell or origin.
SETTING_INFO_KEYS = ("prepared",)


def carried_info(info: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``info`` for a crystal derived from another by a change of cell or origin."""
    return {k: v for k, v in info.items() if k not in SETTING_INFO_KEYS}


#: Smallest cell volume (A^3) accepted as a real lattice.
MIN_CELL_VOLUME = 1e-3


@dataclass
class Limits:
    """What a crystal may be before any work is done on it (checked by :meth:`Crystal.validate`).

    The defaults cover every crystal of the shared data sets (at most 40 atoms, cells up to
    14 A) many times over and keep every command under a minute (a 2048-atom cell took about a
    minute and 1 GB in ``check-fields`` on one busy CPU thread).

    Attributes:
        max_atoms: atoms per cell (after symmetry expansion).
        max_cell_length: longest cell vector, Angstrom.
        max_coordinate: largest Cartesian coordinate magnitude, Angstrom.
        min_distance: closest two atoms may be (periodic), Angstrom; closer means a broken file.
    """

    max_atoms: int = 1000
    max_cell_length: float = 500.0
    max_coordinate: float = 1e5
    min_distance: float = 0.1


#: The limits in force (``nesf ... --max-atoms N`` changes ``max_atoms``).
LIMITS = Limits()


@contextmanager
def limits_changed(**changes: Any) -> Iterator[Limits]:
    """Change fields of :data:`LIMITS` inside a ``with`` block, restoring them on the way out.

    For instance ``limits_changed(min_distance=0.0)`` reads generated crystals whose atoms may
    overlap, where structural validity is the thing being measured.
    """
    names = {f.name for f in fields(Limits)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ValueError(f"unknown limits: {', '.join(unknown)}")
    before = {name: getattr(LIMITS, name) for name in changes}
    for name, value in changes.items():
        setattr(LIMITS, name, value)
    try:
        yield LIMITS
    finally:
        for name, value in before.items():
            setattr(LIMITS, name, value)


@dataclass
class Crystal:
    """One crystal: a lattice and the atoms of one cell.

    Attributes:
        lattice: ``[3, 3]`` cell matrix in Angstrom, rows are the vectors a, b, c.
        cart: ``[N, 3]`` Cartesian positions in Angstrom.
        numbers: ``[N]`` atomic numbers.
        id: an identifier (material id, file name, ...).
        info: free-form extra data carried along (never used for computation); ``info["properties"]``
            holds the crystal's scalar properties read from its file (a CSV's other columns, an
            extxyz frame's keys), which writers put back.
    """

    lattice: np.ndarray
    cart: np.ndarray
    numbers: np.ndarray
    id: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lattice = np.asarray(self.lattice, dtype=np.float64).reshape(3, 3)
        self.cart = np.asarray(self.cart, dtype=np.float64).reshape(-1, 3)
        self.numbers = np.asarray(self.numbers, dtype=np.int64).reshape(-1)

    # ------------------------------------------------------------------ properties
    @property
    def n_atoms(self) -> int:
        """Number of atoms in the cell."""
        return int(self.numbers.shape[0])

    @property
    def frac(self) -> np.ndarray:
        """``[N, 3]`` fractional coordinates (not wrapped)."""
        return np.linalg.solve(self.lattice.T, self.cart.T).T

    @property
    def volume(self) -> float:
        """Cell volume in A^3."""
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def lattice_params(self) -> np.ndarray:
        """``[6]`` a, b, c in Angstrom and alpha, beta, gamma in radians."""
        return lattice_to_params(self.lattice)

    @property
    def symbols(self) -> list[str]:
        """Element symbols of the atoms."""
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.numbers]

    @property
    def formula(self) -> str:
        """Reduced chemical formula (pymatgen convention)."""
        from pymatgen.core import Composition

        return Composition(dict(zip(*np.unique(self.symbols, return_counts=True)))).reduced_formula

    # ------------------------------------------------------------------ checks
    def validate(self, source: str = "<crystal>", location: str | None = None) -> Crystal:
        """Check that this is a usable crystal; raise :class:`CrystalInputError` if not.

        Checks: at least one atom, finite lattice and coordinates, positive cell volume,
        real atomic numbers. Returns ``self`` so it can be chained.
        """
        where = location if location is not None else (f"crystal {self.id!r}" if self.id else None)
        if self.n_atoms == 0:
            raise CrystalInputError(source, "the crystal has no atoms", where)
        if not np.all(np.isfinite(self.lattice)):
            raise CrystalInputError(source, "the lattice has NaN or infinite entries", where)
        if not np.all(np.isfinite(self.cart)):
            raise CrystalInputError(source, "atomic coordinates contain NaN or infinite values", where)
        lim = LIMITS
        biggest = float(np.abs(self.lattice).max())
        if biggest > lim.max_cell_length:  # before any product of such numbers can overflow
            raise CrystalInputError(
                source,
                f"a cell vector component of {biggest:.4g} A exceeds the limit of {lim.max_cell_length:g} A",
                where,
            )
        biggest = float(np.abs(self.cart).max())
        if biggest > lim.max_coordinate:
            raise CrystalInputError(
                source, f"a coordinate of {biggest:.4g} A exceeds the limit of {lim.max_coordinate:g} A", where
            )
        if self.volume < MIN_CELL_VOLUME:
            raise CrystalInputError(
                source, f"the lattice has zero volume ({self.volume:.3g} A^3): its vectors are not independent", where
            )
        if np.any(self.numbers < 1) or np.any(self.numbers > 118):
            raise CrystalInputError(source, "atomic numbers must lie between 1 and 118", where)
        if self.n_atoms > lim.max_atoms:
            raise CrystalInputError(
                source, f"{self.n_atoms} atoms in the cell, more than the limit of {lim.max_atoms} (--max-atoms)", where
            )
        lengths = np.linalg.norm(self.lattice, axis=1)
        if lengths.max() > lim.max_cell_length:
            raise CrystalInputError(
                source, f"a cell length of {lengths.max():.4g} A exceeds the limit of {lim.max_cell_length:g} A", where
            )
        close = closest_pair(self)
        if close is not None and close[2] < lim.min_distance:
            i, j, d = close
            raise CrystalInputError(
                source,
                f"atoms {i} and {j} are {d:.3g} A apart (less than {lim.min_distance:g} A): overlapping atoms, "
                "not a crystal (missing or duplicated positions?)",
                where,
            )
        return self

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_pymatgen(cls, structure: Structure, id: str = "") -> Crystal:
        """Build from an ordered pymatgen ``Structure`` (partial occupancies are refused)."""
        if not structure.is_ordered:
            raise CrystalInputError(
                id or structure.composition.reduced_formula,
                "partial occupancies are not supported (the structure is disordered)",
            )
        return cls(
            lattice=structure.lattice.matrix.copy(),
            cart=structure.cart_coords.copy(),
            numbers=np.array([site.specie.Z for site in structure], dtype=np.int64),
            id=id,
        )

    def to_pymatgen(self) -> Structure:
        """Return a pymatgen ``Structure`` (Cartesian positions kept as they are)."""
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), self.numbers.tolist(), self.cart, coords_are_cartesian=True)

    @classmethod
    def from_ase(cls, atoms: Atoms, id: str = "") -> Crystal:
        """Build from ASE ``Atoms`` with a 3D cell."""
        return cls(
            lattice=np.array(atoms.cell[:], dtype=np.float64),
            cart=atoms.get_positions().copy(),
            numbers=atoms.get_atomic_numbers().copy(),
            id=id or str(atoms.info.get("material_id", "")),
        )

    def to_ase(self) -> Atoms:
        """ASE ``Atoms`` with periodic boundaries; ``info`` holds ``material_id``, ``setting`` and the properties."""
        from ase import Atoms

        atoms = Atoms(numbers=self.numbers, positions=self.cart, cell=self.lattice, pbc=True)
        atoms.info.update(self.file_info())
        return atoms

    def file_info(self) -> dict[str, Any]:
        """What files carry beside the atoms: ``material_id``, ``setting`` and the scalar properties."""
        info: dict[str, Any] = {"material_id": self.id} if self.id else {}
        if isinstance(self.info.get("setting"), str):
            info["setting"] = self.info["setting"]
        for key, value in (self.info.get("properties") or {}).items():
            if key not in info and isinstance(value, (bool, int, float, str)):
                info[key] = value
        return info

    def to_conventional(self, symprec: float = 0.01) -> Crystal:
        """Conventional standard cell (pymatgen ``SpacegroupAnalyzer``), as the paper used."""
        from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

        conv = SpacegroupAnalyzer(self.to_pymatgen(), symprec=symprec).get_conventional_standard_structure()
        return Crystal.from_pymatgen(conv, id=self.id)

    def standardized(self) -> Crystal:
        """Copy in pymatgen's standard orientation of its lattice parameters, atoms wrapped in the cell.

        The cell is rebuilt from (a, b, c, alpha, beta, gamma) with
        ``Lattice.from_parameters``, so that a lattice decoded from parameters shares the frame
        of the training data (the periodic frame relies on it).
        """
        frac = self.frac % 1.0
        frac[frac >= 1.0 - 1e-12] = 0.0
        lattice = params_to_lattice(self.lattice_params)
        return Crystal(lattice, frac @ lattice, self.numbers.copy(), self.id, carried_info(self.info))

    def wrapped(self) -> Crystal:
        """Copy with every atom wrapped into the cell (fractional coordinates in [0, 1))."""
        frac = self.frac % 1.0
        frac[frac >= 1.0 - 1e-12] = 0.0
        return Crystal(self.lattice.copy(), frac @ self.lattice, self.numbers.copy(), self.id, carried_info(self.info))


#: Crystals up to this many atoms get their neighbours from all pairwise distances, larger ones from a k-d tree.
_PAIRWISE_MAX_ATOMS = 128


def nearest_neighbours(crystal: Crystal) -> tuple[np.ndarray, np.ndarray]:
    """Each atom's nearest other atom (periodic images included): distances ``[N]`` (A), indices ``[N]``.

    A k-d tree over the atoms and their images in the 26 neighbouring cells: O(N log N). For a
    very skewed cell a nearer image may lie further out, so a distance is then an upper bound.
    A one-atom cell's neighbour is its own nearest image.
    """
    n = crystal.n_atoms
    frac = crystal.frac % 1.0
    shifts = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
    pts = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3) @ crystal.lattice  # [27 N, 3]
    centres = frac @ crystal.lattice  # [N, 3]
    if n <= _PAIRWISE_MAX_ATOMS:  # every distance at once: quicker than a tree, and scipy stays unimported
        dist_all = np.sqrt(((centres[:, None, :] - pts[None, :, :]) ** 2).sum(-1))  # [N, 27 N]
        dist_all[np.arange(n), 13 * n + np.arange(n)] = np.inf  # each atom itself (shift 0 is the 14th)
        nearest = dist_all.argmin(axis=1)  # index s N + j: atom j in the cell shifted by shifts[s]
        return dist_all[np.arange(n), nearest], nearest % n
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(pts).query(centres, k=2)
    # k=2: the first neighbour is the atom itself (distance 0) unless another atom coincides with it
    return dist[:, 1], idx[:, 1] % n


def closest_pair(crystal: Crystal) -> tuple[int, int, float] | None:
    """The two closest atoms (periodic images included) and their distance in A; None for one atom."""
    if crystal.n_atoms < 2:
        return None
    dist, other = nearest_neighbours(crystal)
    i = int(np.argmin(dist))
    return i, int(other[i]), float(dist[i])


def lattice_to_params(lattice: np.ndarray) -> np.ndarray:
    """Lattice matrix(es) ``[..., 3, 3]`` -> ``[..., 6]`` (a, b, c in A; alpha, beta, gamma in rad)."""
    lattice = np.asarray(lattice, dtype=np.float64)
    lengths = np.linalg.norm(lattice, axis=-1)
    a, b, c = lattice[..., 0, :], lattice[..., 1, :], lattice[..., 2, :]

    def angle(u: np.ndarray, v: np.ndarray, nu: np.ndarray, nv: np.ndarray) -> np.ndarray:
        return np.arccos(np.clip(np.sum(u * v, axis=-1) / (nu * nv), -1.0, 1.0))

    alpha = angle(b, c, lengths[..., 1], lengths[..., 2])
    beta = angle(a, c, lengths[..., 0], lengths[..., 2])
    gamma = angle(a, b, lengths[..., 0], lengths[..., 1])
    return np.concatenate([lengths, np.stack([alpha, beta, gamma], axis=-1)], axis=-1)


def params_to_lattice(params: np.ndarray) -> np.ndarray:
    """``[..., 6]`` lattice parameters (A, rad) -> ``[..., 3, 3]`` matrices in pymatgen's orientation.

    The orientation is that of ``pymatgen.core.Lattice.from_parameters`` (c along z for the
    reciprocal construction), so a round trip through parameters keeps pymatgen's standard frame.
    Invalid angle triples (no real cell) raise ``ValueError``.
    """
    from pymatgen.core import Lattice

    params = np.asarray(params, dtype=np.float64)
    flat = params.reshape(-1, 6)
    bad = ~angles_form_cell(flat[:, 3:]) | np.any(flat[:, :3] <= 0, axis=1)
    if np.any(bad):
        i = int(np.argmax(bad))
        raise ValueError(f"lattice parameters {flat[i].round(4).tolist()} (A, rad) describe no real cell")
    out = np.empty((flat.shape[0], 3, 3))
    for i, (a, b, c, al, be, ga) in enumerate(flat):
        out[i] = Lattice.from_parameters(a, b, c, np.degrees(al), np.degrees(be), np.degrees(ga)).matrix
    return out.reshape(params.shape[:-1] + (3, 3))


def angles_form_cell(angles: np.ndarray, min_volume_factor: float = 1e-6) -> np.ndarray:
    """Whether angle triples ``[..., 3]`` (rad) form a real cell (positive volume)."""
    c = np.cos(np.asarray(angles, dtype=np.float64))
    factor = 1 - (c**2).sum(axis=-1) + 2 * c[..., 0] * c[..., 1] * c[..., 2]
    return factor > min_volume_factor


def make_valid_params(params: np.ndarray, min_volume_factor: float = 0.05) -> np.ndarray:
    """Pull predicted angles ``[..., 6]`` (A, rad) toward 90 degrees until they form a real cell.

    A decoder may predict an angle triple that no cell has; the smallest move toward
    right angles that restores a cell (volume factor >= ``min_volume_factor``) is taken.
    """
    params = np.array(params, dtype=np.float64, copy=True)
    flat = params.reshape(-1, 6)
    flat[:, :3] = np.maximum(flat[:, :3], 0.5)
    for t in np.linspace(1.0, 0.0, 21):
        angles = np.pi / 2 + t * (flat[:, 3:] - np.pi / 2)
        ok = angles_form_cell(angles, min_volume_factor)
        fix = ~angles_form_cell(flat[:, 3:], min_volume_factor) & ok
        flat[fix, 3:] = angles[fix]
    return flat.reshape(params.shape)
