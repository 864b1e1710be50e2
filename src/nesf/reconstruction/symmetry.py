"""Space groups of crystals, and symmetrisation of decoded crystals in their own cell and origin.

A decoded crystal carries the small, uncorrelated errors of a learned field: atoms sit a few
hundredths of an Angstrom off their sites and the cell's metric is slightly off its symmetric
form, so a strict symmetry search finds P1. :func:`symmetrize` looks for the crystal's space
group over a ladder of tolerances (spglib), and snaps the crystal onto the group it picks:

* the metric ``G = L L^T`` is averaged over the group's rotations ``W`` (fractional basis),
  ``G' = mean_W W^T G W``, and the new cell is the cell of metric ``G'`` nearest to the old
  one in orientation (orthogonal Procrustes), so the lattice vectors stay the decoded ones up
  to the snapped metric;
* every atom's fractional position is replaced by the mean of its images under the group:
  ``x_j' = mean_g (W_g x_{g^-1 j} + w_g + n_g)`` (``n_g`` the lattice vector that brings the
  image next to ``x_j``). That mean lies within the tolerance of ``x_j`` whenever every image
  does, and is exactly symmetric.

Only the decoded crystal is used (never an input). The result is written in the decoded
crystal's own cell and origin; a crystal whose group is P1 at every tolerance is returned
unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nesf.data.crystal import Crystal
from nesf.reconstruction.settings import SYMMETRY_LADDER, SYMMETRY_MEAN_MOVE, SYMMETRY_RULES, ReconstructionSettings

#: Tolerance (Angstrom) at which the space groups of inputs and outputs are compared in reports.
REPORT_SYMPREC = 0.1

#: Rules that pick the symmetrisation tolerance from the ladder (see :func:`pick_tolerance`).
TOLERANCE_RULES = SYMMETRY_RULES

#: Tolerance (Angstrom) at which a symmetrised crystal must show the group it was snapped to.
CHECK_SYMPREC = 1e-3

#: Crystal systems and the last space-group number of each.
_SYSTEMS = (
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (167, "trigonal"),
    (194, "hexagonal"),
    (230, "cubic"),
)


@dataclass(frozen=True)
class SpaceGroup:
    """A space group as spglib found it.

    Attributes:
        number: international number (1-230).
        symbol: Hermann-Mauguin symbol (e.g. ``"Fm-3m"``).
        symprec: the distance tolerance of the search, Angstrom.
    """

    number: int
    symbol: str
    symprec: float

    @property
    def crystal_system(self) -> str:
        """``"triclinic"``, ..., ``"cubic"``."""
        return crystal_system(self.number)

    def __str__(self) -> str:
        return f"{self.symbol} ({self.number})"


def crystal_system(number: int) -> str:
    """The crystal system of space group ``number`` (1-230)."""
    for last, name in _SYSTEMS:
        if number <= last:
            return name
    raise ValueError(f"no space group numbered {number}")


def _cell(crystal: Crystal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.asarray(crystal.lattice, dtype=np.float64), crystal.frac, np.asarray(crystal.numbers, dtype=np.int64)


def _dataset(crystal: Crystal, symprec: float):  # noqa: ANN202 - a spglib dataset or None
    """The symmetry dataset spglib finds for a crystal, or None (no atoms, or spglib found none)."""
    import spglib

    if crystal.n_atoms == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return spglib.get_symmetry_dataset(_cell(crystal), symprec=symprec)
        except Exception:  # a degenerate cell: no group
            return None


def space_group(crystal: Crystal, symprec: float = REPORT_SYMPREC) -> SpaceGroup | None:
    """The space group spglib finds at ``symprec`` (Angstrom); None for empty or degenerate crystals."""
    data = _dataset(crystal, symprec)
    if data is None:
        return None
    return SpaceGroup(int(data.number), str(data.international), float(symprec))


def space_groups(crystals: Sequence[Crystal], symprec: float = REPORT_SYMPREC) -> list[SpaceGroup | None]:
    """:func:`space_group` of each crystal (one spglib call per crystal)."""
    return [space_group(c, symprec) for c in crystals]


def pick_tolerance(numbers: Sequence[int | None], rule: str) -> int | None:
    """Index of the ladder tolerance to snap to, given the group number found at each (ascending ladder).

    ``"largest"``: the largest tolerance whose group is not P1. ``"stable"``: the largest
    tolerance whose group was also found at the tolerance below it (a group that appears only
    at the top of the ladder is taken for over-symmetrisation); the smallest tolerance counts
    as stable. None when every tolerance gives P1 (or nothing).
    """
    if rule not in TOLERANCE_RULES:
        raise ValueError(f"unknown tolerance rule {rule!r}; choose one of {', '.join(TOLERANCE_RULES)}")
    ok = [k for k, n in enumerate(numbers) if n is not None and n > 1]
    if not ok:
        return None
    if rule == "largest":
        return ok[-1]
    stable = [k for k in ok if k == 0 or numbers[k - 1] == numbers[k]]
    return stable[-1] if stable else ok[0]


def symmetrize(
    crystal: Crystal,
    tolerances: Sequence[float] = SYMMETRY_LADDER,
    rule: str = "largest",
    wrap: bool = True,
    mean_move: float = SYMMETRY_MEAN_MOVE,
    max_strain: float = 0.0,
    primitive: bool = False,
) -> tuple[Crystal, SpaceGroup | None]:
    """The crystal snapped onto the space group found over a ladder of tolerances.

    Args:
        crystal: a crystal (a decoded one).
        tolerances: spglib distance tolerances to try, Angstrom (sorted ascending here).
        rule: how the tolerance is picked (:func:`pick_tolerance`). Where snapping at the picked
            tolerance fails (an atom would move farther than the tolerance, or the result does
            not show the group, or the atoms move farther than ``mean_move`` on average), the
            next smaller tolerance with a group above P1 is tried.
        wrap: wrap the snapped atoms into the cell (periodic frames); otherwise each stays
            next to where it was (the paper frame's plain Cartesian positions).
        mean_move: the largest mean move of the atoms a snap may make, Angstrom (0: any up to
            the tolerance).
        max_strain: the largest change of the cell a snap may make (:func:`cell_strain`; 0: any).
            A group whose metric the decoded cell does not have is refused: with cells decoded
            to the input's (the refinement's lattice fit) this tells a pseudo-symmetric crystal
            from its more symmetric parent.
        primitive: refuse a group whose operations include a pure translation (identity
            rotation, translation not a lattice vector): the cell is a primitive cell, so such a
            group, which would make it a supercell, is a pseudo-symmetry of the decoded sites.

    Returns:
        The symmetrised crystal (in the input crystal's cell and origin, atoms in the same
        order, ``info["symmetrized"]`` recording the group and tolerance) and its group; the
        crystal itself and None when it stays P1.
    """
    ladder = sorted(float(t) for t in tolerances)
    if rule == "largest":  # the same pick, searching from the top: most crystals snap at the first try
        return _symmetrize_from_top(crystal, ladder, wrap, mean_move, max_strain, primitive)
    data = [_dataset(crystal, t) for t in ladder]
    numbers = [None if d is None else int(d.number) for d in data]
    k = pick_tolerance(numbers, rule)
    while k is not None:
        snapped = _snap_checked(crystal, data[k], ladder[k], wrap, mean_move, max_strain, primitive)
        if snapped is not None:
            return snapped
        lower = [j for j in range(k) if numbers[j] is not None and numbers[j] > 1]
        k = lower[-1] if lower else None
    return crystal, None


def _symmetrize_from_top(
    crystal: Crystal, ladder: Sequence[float], wrap: bool, mean_move: float, max_strain: float, primitive: bool
) -> tuple[Crystal, SpaceGroup | None]:
    """:func:`symmetrize` with the ``"largest"`` rule, spglib asked only as far down the ladder as needed.

    The largest tolerance whose group is above P1 is tried first and each smaller one after it,
    as :func:`pick_tolerance` and the fall-back order of :func:`symmetrize` say; the tolerances
    below the one that snaps are never searched (the search is slowest at the large ones, and
    most decoded crystals snap at the first tolerance tried).
    """
    for k in range(len(ladder) - 1, -1, -1):
        data = _dataset(crystal, ladder[k])
        if data is None or int(data.number) <= 1:
            continue
        snapped = _snap_checked(crystal, data, ladder[k], wrap, mean_move, max_strain, primitive)
        if snapped is not None:
            return snapped
    return crystal, None


def _snap_checked(
    crystal: Crystal,
    data: Any,
    tolerance: float,
    wrap: bool,
    mean_move: float,
    max_strain: float,
    primitive: bool = False,
) -> tuple[Crystal, SpaceGroup] | None:
    """The crystal snapped onto the group of spglib dataset ``data`` within :func:`symmetrize`'s limits, else None."""
    if primitive and pure_translations(data.rotations) > 1:
        return None
    number = int(data.number)
    snapped = snap_to_operations(crystal, data.rotations, data.translations, tolerance, wrap)
    if snapped is not None and mean_move and float(atom_moves(crystal, snapped).mean()) > mean_move:
        snapped = None
    if snapped is not None and max_strain and cell_strain(crystal.lattice, snapped.lattice) > max_strain:
        snapped = None
    if snapped is None:
        return None
    check = space_group(snapped, CHECK_SYMPREC)
    if check is None or check.number != number:
        return None
    group = SpaceGroup(number, str(data.international), tolerance)
    snapped.info["symmetrized"] = {"number": group.number, "symbol": group.symbol, "symprec": tolerance}
    return snapped, group


def pure_translations(rotations: np.ndarray) -> int:
    """How many operations of a group (rotations ``[K, 3, 3]``, cell basis) are pure translations, the identity too."""
    rot = np.asarray(rotations).reshape(-1, 3, 3)
    return int(np.all(rot == np.eye(3, dtype=rot.dtype), axis=(1, 2)).sum())


class FinishedOnce:
    """A finishing function (decoded crystals -> finished ones) that finishes each crystal object once.

    Checked codes finish their decodes to compare space groups, and the round trip finishes the
    kept decodes again; wrapped in this, the second call reuses the first's work. Each decoded
    crystal is held with its finished form, so its ``id`` is not reused while the cache lives.
    """

    def __init__(self, finish: Callable[[Sequence[Crystal]], list[Crystal]]) -> None:
        self.finish = finish
        self._done: dict[int, tuple[Crystal, Crystal]] = {}

    def __call__(self, crystals: Sequence[Crystal]) -> list[Crystal]:
        todo = list({id(c): c for c in crystals if id(c) not in self._done}.values())
        for c, f in zip(todo, self.finish(todo)):
            self._done[id(c)] = (c, f)
        return [self._done[id(c)][1] for c in crystals]


def finish_decoded(
    crystals: Sequence[Crystal], settings: ReconstructionSettings, periodic: bool = True
) -> list[Crystal]:
    """Decoded crystals as the settings want them: symmetrised when ``settings.symmetrize``, else as they are.

    Each crystal's mean-move limit is :meth:`ReconstructionSettings.mean_move_limit` of its
    number of atoms. ``periodic``: the frame is periodic (snapped atoms are wrapped into the cell).
    """
    if not settings.symmetrize:
        return list(crystals)
    s = settings
    return [
        symmetrize(
            c,
            s.symmetry_tolerances,
            s.symmetry_rule,
            periodic,
            s.mean_move_limit(c.n_atoms),
            s.symmetry_max_strain,
            s.symmetry_primitive,
        )[0]
        for c in crystals
    ]


def cell_strain(before: np.ndarray, after: np.ndarray) -> float:
    """How much a cell changed: the largest entry of the metric change ``|G' - G|`` over the largest of ``G``.

    ``G = L L^T`` for cells ``[3, 3]`` (rows a, b, c); about twice the relative change of a
    length, and about the change of an angle in radians. Independent of the cells' orientation.
    """
    g0 = before @ before.T
    g1 = after @ after.T
    return float(np.abs(g1 - g0).max() / np.abs(np.diag(g0)).max())


def symmetric_lattice(lattice: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """The cell ``[3, 3]`` (rows a, b, c, Angstrom) nearest ``lattice`` whose metric the rotations keep.

    ``rotations`` ``[G, 3, 3]`` are integer matrices acting on fractional column vectors. The
    metric is averaged over them and the cell of that metric is turned to the old cell's
    orientation (orthogonal Procrustes, proper rotations only).
    """
    g = lattice @ lattice.T
    w = np.asarray(rotations, dtype=np.float64)
    g_sym = np.einsum("kji,jl,klm->im", w, g, w) / len(w)  # mean of W^T G W
    g_sym = 0.5 * (g_sym + g_sym.T)
    a = np.linalg.cholesky(g_sym)  # a @ a.T = g_sym: one cell of that metric
    u, _, vt = np.linalg.svd(a.T @ lattice)
    d = np.sign(np.linalg.det(u @ vt))
    q = u @ np.diag([1.0, 1.0, d]) @ vt
    return a @ q


def snap_to_operations(
    crystal: Crystal, rotations: np.ndarray, translations: np.ndarray, tolerance: float, wrap: bool = True
) -> Crystal | None:
    """The crystal made exactly invariant under the operations ``(W, w)`` by averaging over them.

    Args:
        crystal: the crystal.
        rotations: ``[G, 3, 3]`` integer rotations on fractional column vectors.
        translations: ``[G, 3]`` fractional translations (``x -> W x + w``).
        tolerance: the largest move of an atom (in the crystal's own cell), Angstrom.
        wrap: wrap the atoms into the cell (else each stays next to its old position).

    Returns:
        The snapped crystal (same cell orientation and origin, atoms in the same order), or
        None when the operations do not permute the atoms (each image within twice the
        tolerance of an atom of its species, one image per atom) or an atom would move farther
        than ``tolerance``.
    """
    lattice, frac, numbers = _cell(crystal)
    w = np.asarray(rotations, dtype=np.float64)
    t = np.asarray(translations, dtype=np.float64)
    images = np.einsum("gij,nj->gni", w, frac) + t[:, None, :]  # [G, N, 3]: image of atom n under op g
    delta = frac[None, None, :, :] - images[:, :, None, :]  # [G, N(from), N(to), 3]
    shift = np.rint(delta)
    cart = (delta - shift) @ lattice  # [G, N, N, 3]
    dist = np.linalg.norm(cart, axis=-1)
    dist[:, numbers[:, None] != numbers[None, :]] = np.inf
    target = dist.argmin(axis=2)  # [G, N]: the atom each image lands on
    n = crystal.n_atoms
    g_idx, i_idx = np.meshgrid(np.arange(len(w)), np.arange(n), indexing="ij")
    if np.any(np.sort(target, axis=1) != np.arange(n)[None, :]):
        return None  # not a permutation of the atoms
    if float(dist[g_idx, i_idx, target].max()) > 2.0 * tolerance:
        return None
    moved = images + shift[g_idx, i_idx, target]  # [G, N, 3]: images placed next to their targets
    sums = np.zeros((n, 3))
    np.add.at(sums, target.reshape(-1), moved.reshape(-1, 3))
    new_frac = sums / len(w)
    step = new_frac - frac
    if float(np.linalg.norm((step - np.rint(step)) @ lattice, axis=-1).max()) > tolerance + 1e-9:
        return None
    new_lattice = symmetric_lattice(lattice, w)
    if wrap:
        new_frac = new_frac - np.floor(new_frac)
        new_frac[new_frac >= 1.0 - 1e-12] = 0.0
    return Crystal(new_lattice, new_frac @ new_lattice, numbers.copy(), crystal.id, dict(crystal.info))


def atom_moves(before: Crystal, after: Crystal) -> np.ndarray:
    """How far each atom moved between two versions of a crystal ``[N]`` (Angstrom, in ``before``'s cell).

    The fractional moves (shortest periodic image) measured with ``before``'s lattice, so that a
    change of the metric does not count as a move.
    """
    step = after.frac - before.frac
    return np.linalg.norm((step - np.rint(step)) @ before.lattice, axis=-1)


__all__ = [
    "CHECK_SYMPREC",
    "REPORT_SYMPREC",
    "SpaceGroup",
    "TOLERANCE_RULES",
    "atom_moves",
    "cell_strain",
    "crystal_system",
    "finish_decoded",
    "pick_tolerance",
    "snap_to_operations",
    "space_group",
    "space_groups",
    "symmetric_lattice",
    "symmetrize",
    "pure_translations",
]
