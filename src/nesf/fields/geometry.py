"""Exact periodic geometry for any cell: wrapping and minimum-image vectors.

scipy's ``cKDTree(boxsize=...)`` is only right for orthogonal boxes. Here every cell is
first LLL-reduced (same lattice, shorter and more orthogonal basis), a difference vector
is rounded into the reduced cell, and then a set of image shifts is searched that is
*proven* large enough: a lattice vector ``n`` can only give a shorter image if
``(|n_i| - 1/2) * h_i <= r_max`` for every axis ``i``, where ``h_i`` is the distance between
lattice planes along axis ``i`` and ``r_max`` the largest length a rounded difference can
have (half the longest cell diagonal). The result is exact for triclinic, hexagonal,
rhombohedral, long or skewed cells alike.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

#: Elements of the candidate images :meth:`PeriodicGeometry.minimum_image` holds at once (about
#: 16 MB in float32): the image shifts are tried in blocks of this size instead of one by one.
MINIMUM_IMAGE_ELEMENTS = 1 << 22


def lll_reduce(lattices: np.ndarray) -> np.ndarray:
    """LLL-reduce lattice matrices ``[B, 3, 3]`` (rows are vectors); same lattices, reduced bases."""
    from pymatgen.core import Lattice

    lattices = np.asarray(lattices, dtype=np.float64).reshape(-1, 3, 3)
    return np.stack([Lattice(m).get_lll_reduced_lattice().matrix for m in lattices])


def cell_heights(cells: np.ndarray) -> np.ndarray:
    """Distances ``[B, 3]`` (Angstrom) between neighbouring lattice planes along each axis of cells ``[B, 3, 3]``.

    ``h_i`` is the height of the cell over the face spanned by the two other vectors.
    """
    cells = np.asarray(cells, dtype=np.float64).reshape(-1, 3, 3)
    vol = np.abs(np.linalg.det(cells))
    cross = np.stack(
        [np.cross(cells[:, 1], cells[:, 2]), np.cross(cells[:, 2], cells[:, 0]), np.cross(cells[:, 0], cells[:, 1])],
        axis=1,
    )
    return vol[:, None] / np.linalg.norm(cross, axis=-1)


def shift_ranges(reduced: np.ndarray, half_cell: bool) -> np.ndarray:
    """Per-axis image range ``[B, 3]`` (integers) that provably contains the nearest image.

    Args:
        reduced: ``[B, 3, 3]`` cell matrices (any basis; reduced ones give small ranges).
        half_cell: True when differences are rounded into ``[-1/2, 1/2)^3`` before the search;
            False when both points are only wrapped into ``[0, 1)^3`` (difference in ``(-1, 1)^3``).
    """
    reduced = np.asarray(reduced, dtype=np.float64).reshape(-1, 3, 3)
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=3)))
    diag = np.einsum("sk,bkx->bsx", signs, reduced)
    r_max = 0.5 * np.linalg.norm(diag, axis=-1).max(axis=1)  # [B]
    heights = cell_heights(reduced)  # [B, 3]
    offset = 0.5 if half_cell else 1.0
    return np.floor(r_max[:, None] / heights + offset + 1e-9).astype(np.int64)


def integer_shifts(ranges: np.ndarray) -> np.ndarray:
    """All integer vectors ``[K, 3]`` with ``|n_i| <= ranges[i]``; the zero vector first."""
    axes = [np.arange(-int(r), int(r) + 1) for r in ranges]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    order = np.argsort(np.abs(grid).sum(axis=1), kind="stable")
    return grid[order]


@dataclass
class PeriodicGeometry:
    """Cell data of a batch of crystals, computed once, used for every periodic operation.

    Attributes:
        lattice: ``[B, 3, 3]`` cell matrices in Angstrom (rows a, b, c).
        inverse: ``[B, 3, 3]`` inverse of ``lattice`` (Cartesian -> fractional: ``x @ inverse``).
        reduced: ``[B, 3, 3]`` LLL-reduced basis of the same lattice.
        reduced_inverse: ``[B, 3, 3]`` its inverse.
        round_shifts: ``[B, K, 3]`` Cartesian image shifts (zero excluded) to search after rounding.
        wrap_shifts: ``[B, K2, 3]`` Cartesian shifts (zero first) covering points wrapped into the
            reduced cell; used to build periodic images of atoms for nearest-atom queries.
        safe_sq: ``[B]`` squared radius (Angstrom^2) within which a rounded difference is its own
            shortest image: the square of half the reduced cell's smallest height. Every
            lattice vector but zero is at least that height long (its component along one plane
            normal is a nonzero multiple of the height), so no image of a vector half as long
            is shorter.
    """

    lattice: torch.Tensor
    inverse: torch.Tensor
    reduced: torch.Tensor
    reduced_inverse: torch.Tensor
    round_shifts: torch.Tensor
    wrap_shifts: torch.Tensor
    safe_sq: torch.Tensor

    @classmethod
    def from_lattices(
        cls,
        lattices: np.ndarray | torch.Tensor,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        reduced: np.ndarray | None = None,
    ) -> PeriodicGeometry:
        """Build from lattice matrices ``[B, 3, 3]`` (Angstrom).

        ``reduced``: their :func:`lll_reduce` bases where the caller already has them.
        """
        if isinstance(lattices, torch.Tensor):
            device = device if device is not None else lattices.device
            lattices = lattices.detach().cpu().double().numpy()
        lat = np.asarray(lattices, dtype=np.float64).reshape(-1, 3, 3)
        red = lll_reduce(lat) if reduced is None else np.asarray(reduced, dtype=np.float64).reshape(-1, 3, 3)
        n_round = integer_shifts(shift_ranges(red, half_cell=True).max(axis=0))[1:]
        n_wrap = integer_shifts(shift_ranges(red, half_cell=False).max(axis=0))

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.tensor(x, dtype=dtype, device=device)

        return cls(
            lattice=t(lat),
            inverse=t(np.linalg.inv(lat)),
            reduced=t(red),
            reduced_inverse=t(np.linalg.inv(red)),
            round_shifts=t(np.einsum("kx,bxy->bky", n_round.astype(np.float64), red)),
            wrap_shifts=t(np.einsum("kx,bxy->bky", n_wrap.astype(np.float64), red)),
            safe_sq=t((0.4995 * cell_heights(red).min(axis=1)) ** 2),  # half the height, a hair less
        )

    @property
    def batch_size(self) -> int:
        """Number of cells ``B``."""
        return int(self.lattice.shape[0])

    def select(self, index: torch.Tensor) -> PeriodicGeometry:
        """Geometry of cells ``index`` (``[P]`` long): one row per element, e.g. per particle."""
        return PeriodicGeometry(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    def to(self, device: torch.device | str) -> PeriodicGeometry:
        """Move to a device."""
        return PeriodicGeometry(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))

    # ------------------------------------------------------------------ operations
    def to_frac(self, cart: torch.Tensor) -> torch.Tensor:
        """Cartesian ``[B, M, 3]`` -> fractional coordinates of the cell."""
        return torch.bmm(cart, self.inverse)

    def to_cart(self, frac: torch.Tensor) -> torch.Tensor:
        """Fractional ``[B, M, 3]`` -> Cartesian (Angstrom)."""
        return torch.bmm(frac, self.lattice)

    def wrap(self, cart: torch.Tensor) -> torch.Tensor:
        """Wrap Cartesian points ``[B, M, 3]`` into the cell (fractional coordinates in [0, 1))."""
        frac = self.to_frac(cart)
        frac = frac - torch.floor(frac)
        frac = torch.where(frac >= 1.0, frac - 1.0, frac)  # float rounding of values just below 0
        return self.to_cart(frac)

    def wrap_flat(self, cart: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Wrap flat points ``[P, 3]`` of cells ``index`` ``[P]`` into their cells."""
        frac = torch.bmm(cart.unsqueeze(1), self.inverse.index_select(0, index)).squeeze(1)
        frac = frac - torch.floor(frac)
        frac = torch.where(frac >= 1.0, frac - 1.0, frac)
        return torch.bmm(frac.unsqueeze(1), self.lattice.index_select(0, index)).squeeze(1)

    def wrap_reduced(self, cart: torch.Tensor) -> torch.Tensor:
        """Wrap Cartesian points ``[B, M, 3]`` into the LLL-reduced cell."""
        frac = torch.bmm(cart, self.reduced_inverse)
        return torch.bmm(frac - torch.floor(frac), self.reduced)

    def minimum_image(self, delta: torch.Tensor) -> torch.Tensor:
        """Shortest periodic image of difference vectors ``[B, M, 3]`` (Angstrom), exactly.

        A vector is first rounded into the reduced cell; only those longer than the cell's safe
        radius (``safe_sq``) are compared with their images under the proven shift range, the
        others are already the shortest (ties keep the rounded vector, as the search does).
        """
        frac = torch.bmm(delta, self.reduced_inverse)
        base = torch.bmm(frac - torch.round(frac), self.reduced)
        far = (base * base).sum(-1) > self.safe_sq.unsqueeze(1)  # [B, M]
        if self.round_shifts.shape[1] == 0 or not bool(far.any()):
            return base
        cell, point = far.nonzero(as_tuple=True)
        found = self._search_images(base[cell, point], cell)
        best = base.clone()
        best[cell, point] = found
        return best

    def _search_images(self, base: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """The shortest of rounded vectors ``[F, 3]`` of cells ``cell`` ``[F]`` and their shifted images.

        Shifts are tried in blocks, in shift order; the first shortest image wins.
        """
        best = base
        best_sq = (base * base).sum(-1)
        n_shifts = self.round_shifts.shape[1]
        block = max(1, min(n_shifts, MINIMUM_IMAGE_ELEMENTS // max(1, 3 * base.shape[0])))
        for start in range(0, n_shifts, block):
            shifts = self.round_shifts[:, start : start + block].index_select(0, cell)  # [F, k, 3]
            cand = base.unsqueeze(1) + shifts
            cand_sq, arg = (cand * cand).sum(-1).min(dim=1)  # [F]
            better = cand_sq < best_sq
            pick = torch.gather(cand, 1, arg[:, None, None].expand(-1, 1, 3)).squeeze(1)
            best = torch.where(better.unsqueeze(-1), pick, best)
            best_sq = torch.where(better, cand_sq, best_sq)
        return best
