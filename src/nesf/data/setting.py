"""Cell settings: one canonical setting per crystal, equivalent re-set copies, and the way back.

The same crystal can be written in many cells: any origin, any of the equivalent choices of
axes, a reduced or an unreduced cell. A model that reads fractional coordinates sees each of
those as a different input. :func:`canonical_setting` brings every description of a crystal
to one and the same cell and origin, so that a model trained and queried in that setting
gives the same answer whatever setting the user's file used:

1. the lattice is Niggli-reduced (pymatgen), a basis that depends only on the lattice, turned
   right-handed if needed (negating all three vectors keeps every length and angle);
2. every right-handed basis with the same lengths and the same angles up to their
   supplements (the lattice's rotations and the reduced cell with vectors reversed, integer
   matrices with entries in {-1, 0, 1} in a reduced basis; near 90 degrees a reduction's
   choice of acute or obtuse angles hangs on rounding) is a candidate, and so is every atom of the
   crystal's rarest species (ties: heavier first) as the origin;
   (or, with the ``roomiest`` rule, every atom farthest from its nearest neighbour),
3. of these candidates the one whose sorted list of (species rank, fractional coordinates on a
   1e-3 grid) is lexicographically smallest is kept. Symmetry-equivalent candidates give the
   same list, so the choice depends only on the crystal, never on how it was given.

:class:`SettingTransform` records what was done, so that a reconstruction made in the
canonical setting is written back in the input's own cell and origin
(:meth:`SettingTransform.to_input`).

:func:`resettle` makes the equivalent copies used to check a model: a random origin shift,
a permutation of the axes that keeps the cell right-handed, and the Niggli-reduced cell.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from nesf.data.crystal import Crystal, carried_info, lattice_to_params, nearest_neighbours, params_to_lattice

#: Grid (fractional units) on which coordinates are compared when choosing the canonical candidate.
KEY_GRID = 1000

#: Relative tolerance on the metric tensor for a basis change to count as a lattice rotation.
METRIC_TOL = 2e-3


@functools.cache
def _unimodular_candidates() -> np.ndarray:
    """All integer 3x3 matrices with entries in {-1, 0, 1} and determinant +1, ``[K, 3, 3]``.

    Built on first use and kept (the 3^9 candidates cost tens of milliseconds of start-up).
    """
    digits = np.arange(3**9, dtype=np.int64)[:, None] // 3 ** np.arange(8, -1, -1, dtype=np.int64) % 3
    vals = (digits - 1).reshape(-1, 3, 3)
    det = np.rint(np.linalg.det(vals.astype(np.float64))).astype(np.int64)
    return vals[det == 1]


def lattice_rotations(lattice: np.ndarray, tol: float = METRIC_TOL, signs: bool = True) -> np.ndarray:
    """Right-handed basis changes that keep the metric of a reduced ``lattice`` ``[3, 3]``.

    Returns integer matrices ``M`` ``[K, 3, 3]`` (identity first) with
    ``M G M^T = G`` within ``tol`` times the largest diagonal entry of ``G = L L^T``. With
    ``signs=False`` the off-diagonal entries are compared by magnitude: the result also holds
    the bases whose angles are the supplements of these (the same reduced cell with vectors
    reversed), between which a reduction's choice hangs on rounding near 90 degrees.
    """
    g = lattice @ lattice.T
    candidates = _unimodular_candidates()
    mgm = np.einsum("kij,jl,kml->kim", candidates, g, candidates)
    if not signs:
        mgm, g = np.abs(mgm), np.abs(g)
    ok = np.all(np.abs(mgm - g) <= tol * np.max(np.diag(g)), axis=(1, 2))
    mats = candidates[ok]
    eye = np.all(mats == np.eye(3, dtype=np.int64), axis=(1, 2))
    return np.concatenate([mats[eye], mats[~eye]])


def niggli_basis(lattice: np.ndarray) -> np.ndarray:
    """Integer matrix ``T`` ``[3, 3]`` with det +1 such that ``T @ lattice`` has the Niggli-reduced metric."""
    from pymatgen.core import Lattice

    reduced = Lattice(lattice).get_niggli_reduced_lattice().matrix
    t = np.rint(reduced @ np.linalg.inv(lattice)).astype(np.int64)
    if not np.allclose(t @ lattice, reduced, atol=1e-6 * max(1.0, np.abs(lattice).max())):
        raise ValueError("the Niggli reduction did not give an integer basis change")
    if round(np.linalg.det(t.astype(np.float64))) < 0:
        t = -t
    return t


def _species_rank(numbers: np.ndarray) -> np.ndarray:
    """Rank of each atom's species: rarest species first, ties broken by the heavier element."""
    elems, counts = np.unique(numbers, return_counts=True)
    order = sorted(range(len(elems)), key=lambda i: (counts[i], -elems[i]))
    rank = {int(elems[i]): r for r, i in enumerate(order)}
    return np.array([rank[int(z)] for z in numbers], dtype=np.int64)


def _wrap(frac: np.ndarray) -> np.ndarray:
    out = frac - np.floor(frac)
    out[out >= 1.0 - 1e-9] = 0.0
    return out


@dataclass
class SettingTransform:
    """How an input crystal was brought to its canonical setting.

    Canonical fractional coordinates are ``u_c = wrap(u_p @ inv(basis) - shift)`` and the
    canonical cell is ``basis @ L_p`` (rows are vectors), where ``L_p`` is the input's cell, or
    its primitive cell when the model reduces crystals to one: then ``L_in = supercell @ L_p``.
    ``basis`` is an integer matrix with determinant +1, ``shift`` a fractional vector of the
    canonical cell, ``supercell`` an integer matrix with determinant the number of primitive
    cells in the input's cell (the identity when no reduction was made).

    Attributes:
        basis: ``[3, 3]`` integer basis change.
        shift: ``[3]`` origin of the canonical setting, fractional in the canonical cell.
        supercell: ``[3, 3]`` integer matrix from the reduced cell to the input's.
    """

    basis: np.ndarray
    shift: np.ndarray
    supercell: np.ndarray = field(default_factory=lambda: np.eye(3, dtype=np.int64))

    @property
    def is_identity(self) -> bool:
        """True when the canonical setting is the input's own."""
        eye = np.eye(3, dtype=np.int64)
        return bool(
            np.array_equal(self.basis, eye) and np.array_equal(self.supercell, eye) and np.allclose(self.shift, 0.0)
        )

    @property
    def cells(self) -> int:
        """How many reduced (primitive) cells the input's cell holds."""
        return round(abs(np.linalg.det(self.supercell.astype(np.float64))))

    def to_input(self, crystal: Crystal) -> Crystal:
        """A crystal in the canonical setting (e.g. a reconstruction) written in the input's cell and origin.

        The lattice is ``supercell @ inv(basis) @ L`` in pymatgen's standard orientation of its
        parameters, the atoms are moved back by ``shift``, wrapped into the cell and, where the
        input's cell held several primitive cells, repeated over them (pymatgen's supercell).
        """
        inv = np.rint(np.linalg.inv(self.basis.astype(np.float64))).astype(np.int64)
        frac = _wrap((crystal.frac + self.shift) @ self.basis)
        info = carried_info(crystal.info)
        info["setting"] = "input"
        lattice_p = inv @ crystal.lattice
        numbers = crystal.numbers.copy()
        if not np.array_equal(self.supercell, np.eye(3, dtype=np.int64)):
            from pymatgen.core import Lattice, Structure

            if crystal.n_atoms:
                big = Structure(Lattice(lattice_p), numbers.tolist(), frac)
                big.make_supercell(self.supercell)
                frac, numbers = _wrap(big.frac_coords), np.array([s.specie.Z for s in big], dtype=np.int64)
            lattice_p = self.supercell.astype(np.float64) @ lattice_p
        lattice = params_to_lattice(lattice_to_params(lattice_p))
        return Crystal(lattice, frac @ lattice, numbers, crystal.id, info)

    def to_dict(self) -> dict:
        """Plain-data form (for JSON)."""
        return {
            "basis": self.basis.tolist(),
            "shift": [float(v) for v in self.shift],
            "supercell": self.supercell.tolist(),
        }


#: Distance tolerance (Angstrom) of the primitive-cell search (pymatgen's default).
PRIMITIVE_TOLERANCE = 0.25
#: Largest distance (Angstrom) any atom may move when a crystal is reduced to a primitive cell: a
#: reduction that would move an atom further (a distorted supercell) is not made.
PRIMITIVE_EXACTNESS = 0.01


def primitive_cell(crystal: Crystal, tolerance: float = PRIMITIVE_TOLERANCE) -> tuple[Crystal, np.ndarray]:
    """The crystal in a primitive cell, and the integer matrix ``M`` with ``L_in = M @ L_p``.

    pymatgen's primitive-cell search (same Cartesian frame; atoms within ``tolerance`` merged),
    kept only when the primitive cell, repeated over the input's cell, puts every input atom back
    within :data:`PRIMITIVE_EXACTNESS` (else the search is tried again at that tolerance). Where
    no exact smaller cell exists (a distorted supercell, say), or the one found is not an integer
    sub-lattice of the input's, the crystal itself and the identity are returned: a reduction
    never erases a real distortion.
    """
    eye = np.eye(3, dtype=np.int64)
    if crystal.n_atoms <= 1:
        return crystal, eye
    if math.gcd(*np.unique(crystal.numbers, return_counts=True)[1].tolist()) == 1:
        # a k-fold supercell holds a multiple of k atoms of every element: counts that share no
        # factor (SrTiO3, Fe2O3, a 2-atom NaCl cell, ...) leave no smaller cell: no search
        return crystal, eye
    structure = crystal.to_pymatgen()
    for tol in (tolerance, PRIMITIVE_EXACTNESS):
        prim = structure.get_primitive_structure(tolerance=tol)
        if len(prim) >= crystal.n_atoms:
            return crystal, eye
        m_float = crystal.lattice @ np.linalg.inv(prim.lattice.matrix)
        m = np.rint(m_float).astype(np.int64)
        cells = abs(round(np.linalg.det(m.astype(np.float64))))
        if not np.allclose(m_float, m, atol=1e-3) or cells * len(prim) != crystal.n_atoms:
            continue
        numbers = np.array([s.specie.Z for s in prim])
        out = Crystal(
            prim.lattice.matrix.copy(), prim.cart_coords.copy(), numbers, crystal.id, carried_info(crystal.info)
        )
        if largest_displacement(crystal, out, m) <= PRIMITIVE_EXACTNESS:
            return out, m
    return crystal, eye


def largest_displacement(crystal: Crystal, prim: Crystal, supercell: np.ndarray) -> float:
    """How far (A) the input's atoms lie from the primitive cell's repeated over ``supercell`` (inf: not paired).

    Each input atom is paired with the nearest repeated atom of its element (periodic images
    by the nearest fractional image in the input's cell); a pairing that is not one to one, or
    any atom left over, gives infinity.
    """
    from pymatgen.core import Lattice, Structure

    big = Structure(Lattice(prim.lattice), prim.numbers.tolist(), prim.cart, coords_are_cartesian=True)
    big.make_supercell(supercell)
    other = Crystal(big.lattice.matrix, big.cart_coords, np.array([s.specie.Z for s in big]))
    if other.n_atoms != crystal.n_atoms or sorted(other.numbers) != sorted(crystal.numbers):
        return float("inf")
    frac_in = crystal.frac
    frac_out = np.linalg.solve(crystal.lattice.T, other.cart.T).T  # in the input's cell
    worst = 0.0
    for z in np.unique(crystal.numbers):
        a, b = frac_in[crystal.numbers == z], frac_out[other.numbers == z]
        diff = a[:, None, :] - b[None, :, :]
        diff -= np.rint(diff)
        dist = np.linalg.norm(diff @ crystal.lattice, axis=-1)  # [Na, Nb]
        nearest = dist.argmin(axis=1)
        if len(np.unique(nearest)) != len(a):
            return float("inf")
        worst = max(worst, float(dist.min(axis=1).max()))
    return worst


#: Rules for the atoms that may sit at the canonical origin.
ORIGIN_RULES = ("rarest", "roomiest")

#: Nearest-neighbour distances are compared on this grid (Angstrom) by the ``roomiest`` rule.
ROOM_GRID = 0.02


def origin_candidates(crystal: Crystal, rule: str) -> np.ndarray:
    """Indices of the atoms that may sit at the canonical origin.

    ``"rarest"``: the atoms of the rarest species (ties: the heavier element). ``"roomiest"``:
    the atoms farthest from their nearest neighbour (on a 0.02 A grid; ties: rarest species,
    then heavier), a geometric choice that picks the same kind of site across a family of
    crystals (the A site of every perovskite, whichever of A and B is heavier).
    """
    rank = _species_rank(crystal.numbers)
    if rule == "rarest":
        return np.flatnonzero(rank == 0)
    if rule != "roomiest":
        raise ValueError(f"unknown origin rule {rule!r}; choose one of {', '.join(ORIGIN_RULES)}")
    if crystal.n_atoms == 1:
        return np.array([0])
    room = np.rint(nearest_neighbours(crystal)[0] / ROOM_GRID).astype(np.int64)
    best = room == room.max()
    top = rank[best].min()
    return np.flatnonzero(best & (rank == top))


def canonical_setting(
    crystal: Crystal, origin: str = "rarest", primitive: bool = False
) -> tuple[Crystal, SettingTransform]:
    """The crystal in its canonical setting, and the transform from the input's setting.

    The result is in pymatgen's standard orientation of its lattice parameters with the atoms
    wrapped into the cell, one of :func:`origin_candidates` (rule ``origin``) at the origin.
    Any two settings of the same crystal (origin, axes, reduced or not) give the same
    canonical crystal, up to rounding. With ``primitive`` the crystal is first reduced to a
    primitive cell (:func:`primitive_cell`), so that a conventional cell and a supercell give
    the canonical crystal of the primitive one.
    """
    supercell = np.eye(3, dtype=np.int64)
    if primitive:
        crystal, supercell = primitive_cell(crystal)
    lattice = np.asarray(crystal.lattice, dtype=np.float64)
    t = niggli_basis(lattice)
    reduced = t @ lattice
    equivalent = lattice_rotations(reduced, signs=False)  # [K, 3, 3]
    bases = np.einsum("kij,jl->kil", equivalent, t)  # [K, 3, 3] integer: basis changes from the input
    frac_in = crystal.frac
    rank = _species_rank(crystal.numbers)
    origins = origin_candidates(crystal, origin)
    best_key: np.ndarray | None = None
    best: tuple[np.ndarray, np.ndarray] | None = None
    # candidates compared in chunks of origins: [J, N] sorted codes at most ~4M integers at once
    chunk = max(1, 4_000_000 // max(1, crystal.n_atoms))
    for basis in bases:
        u = frac_in @ np.linalg.inv(basis.astype(np.float64))  # [N, 3] fractional in the candidate basis
        for start in range(0, len(origins), chunk):
            js = origins[start : start + chunk]
            q = np.rint(_wrap(u[None, :, :] - u[js][:, None, :]) * KEY_GRID).astype(np.int64) % KEY_GRID  # [J, N, 3]
            codes = ((rank[None, :] * KEY_GRID + q[..., 0]) * KEY_GRID + q[..., 1]) * KEY_GRID + q[..., 2]
            codes.sort(axis=1)
            j = int(np.lexsort(codes.T[::-1])[0])  # lexicographically smallest sorted code list
            if best_key is None or tuple(codes[j]) < tuple(best_key):
                best_key = codes[j]
                best = (basis, u[js[j]])
    assert best is not None
    basis, shift = best
    cell = basis.astype(np.float64) @ lattice
    new_lattice = params_to_lattice(lattice_to_params(cell))
    frac = _wrap(frac_in @ np.linalg.inv(basis.astype(np.float64)) - shift)
    info = carried_info(crystal.info)
    info["setting"] = "canonical"
    out = Crystal(new_lattice, frac @ new_lattice, crystal.numbers.copy(), crystal.id, info)
    return out, SettingTransform(basis.astype(np.int64), _wrap(shift[None, :])[0], supercell)


#: Right-handed permutations of the axes (integer basis changes), identity excluded:
#: the two cyclic ones and the three swaps with one axis reversed.
AXIS_PERMUTATIONS = (
    np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]]),
    np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]),
    np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]]),
    np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]]),
    np.array([[-1, 0, 0], [0, 0, 1], [0, 1, 0]]),
)

#: Kinds of re-set copies made by :func:`resettle`.
RESETTLE_KINDS = ("origin", "axes", "niggli", "all")


def change_basis(crystal: Crystal, basis: np.ndarray) -> Crystal:
    """The same crystal in the cell ``basis @ L`` (integer ``basis``, det +1), standard orientation, atoms wrapped."""
    basis = np.asarray(basis, dtype=np.int64)
    cell = basis.astype(np.float64) @ crystal.lattice
    lattice = params_to_lattice(lattice_to_params(cell))
    frac = _wrap(crystal.frac @ np.linalg.inv(basis.astype(np.float64)))
    return Crystal(lattice, frac @ lattice, crystal.numbers.copy(), crystal.id, carried_info(crystal.info))


def shift_origin(crystal: Crystal, shift: np.ndarray) -> Crystal:
    """The same crystal with its origin moved by ``shift`` (fractional), atoms wrapped back in."""
    frac = _wrap(crystal.frac + np.asarray(shift, dtype=np.float64))
    lattice = crystal.lattice.copy()
    return Crystal(lattice, frac @ lattice, crystal.numbers.copy(), crystal.id, carried_info(crystal.info))


#: Largest distance (Angstrom) from the origin at which a decoded atom is taken for the atom the
#: canonical setting put there (atoms of a crystal lie at least about 1 A apart).
PIN_RADIUS = 0.5


def pin_origin(crystal: Crystal, radius: float = PIN_RADIUS) -> Crystal:
    """A crystal decoded in the canonical setting, moved rigidly so that its atom nearest the origin sits on it.

    The canonical setting puts one atom of every crystal exactly at the origin
    (:func:`canonical_setting`), so a network trained in it decodes an atom near the origin; its
    distance from the origin is an error the whole crystal shares once it is symmetrised (the
    other atoms sit where the symmetry puts them relative to it). Moving every atom by that
    offset restores the setting's own convention from the decoded crystal alone. Crystals with no
    atom within ``radius`` (Angstrom) of the origin are returned unchanged.
    """
    if crystal.n_atoms == 0:
        return crystal
    frac = crystal.frac - np.round(crystal.frac)  # [N, 3] nearest image of each atom to the origin
    dist = np.linalg.norm(frac @ crystal.lattice, axis=1)
    j = int(np.argmin(dist))
    if dist[j] > radius or dist[j] == 0.0:
        return crystal
    moved = _wrap(crystal.frac - frac[j])
    lattice = crystal.lattice.copy()
    return Crystal(lattice, moved @ lattice, crystal.numbers.copy(), crystal.id, dict(crystal.info))


def resettle(crystal: Crystal, kind: str, rng: np.random.Generator) -> Crystal:
    """An equivalent copy of ``crystal`` in another setting.

    Args:
        crystal: the crystal.
        kind: ``"origin"`` (origin moved by a uniform random fraction of the cell), ``"axes"``
            (a random right-handed permutation of the axes), ``"niggli"`` (the Niggli-reduced
            cell) or ``"all"`` (Niggli cell, then permuted axes, then a random origin).
        rng: random generator (seeded by the caller).
    """
    if kind not in RESETTLE_KINDS:
        raise ValueError(f"unknown re-setting {kind!r}; choose one of {', '.join(RESETTLE_KINDS)}")
    out = crystal
    if kind in ("niggli", "all"):
        out = change_basis(out, niggli_basis(out.lattice))
    if kind in ("axes", "all"):
        out = change_basis(out, AXIS_PERMUTATIONS[int(rng.integers(len(AXIS_PERMUTATIONS)))])
    if kind in ("origin", "all"):
        out = shift_origin(out, rng.random(3))
    return out


__all__ = [
    "AXIS_PERMUTATIONS",
    "RESETTLE_KINDS",
    "ORIGIN_RULES",
    "SettingTransform",
    "canonical_setting",
    "origin_candidates",
    "change_basis",
    "primitive_cell",
    "lattice_rotations",
    "niggli_basis",
    "resettle",
    "shift_origin",
]
