"""Frames: the geometry in which a structure field lives.

A frame knows how to wrap points, measure displacements and lay out a particle grid.
Fields, reconstruction and metrics ask the frame instead of branching on a flag.

* ``paper`` (published setting): Cartesian space, nearest atom among the cell's own atoms,
  no periodic images; particles over a bounding box.
* ``periodic`` (beyond the paper): nearest atom over all periodic images; particles over the
  unit cell only, wrapped back into the cell; minimum-image distances everywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from nesf.fields.geometry import PeriodicGeometry

FRAMES = ("paper", "periodic")


class Frame(ABC):
    """Geometry of a structure field; see the module docstring."""

    name: str
    periodic: bool

    @abstractmethod
    def wrap(self, points: torch.Tensor, geometry: PeriodicGeometry | None) -> torch.Tensor:
        """Bring Cartesian points ``[B, M, 3]`` into the frame's domain."""

    @abstractmethod
    def displacement(
        self, origin: torch.Tensor, target: torch.Tensor, geometry: PeriodicGeometry | None
    ) -> torch.Tensor:
        """Vector ``target - origin`` ``[B, M, 3]`` (minimum image in periodic frames), Angstrom."""

    @abstractmethod
    def particle_grid(
        self,
        batch_size: int,
        spacing: float,
        geometry: PeriodicGeometry | None = None,
        bbox: np.ndarray | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial particles ``[B, Q, 3]`` (Angstrom) and their validity mask ``[B, Q]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PaperFrame(Frame):
    """Cartesian, no periodic images (the published setting)."""

    name = "paper"
    periodic = False

    def wrap(self, points: torch.Tensor, geometry: PeriodicGeometry | None) -> torch.Tensor:
        return points

    def displacement(
        self, origin: torch.Tensor, target: torch.Tensor, geometry: PeriodicGeometry | None
    ) -> torch.Tensor:
        return target - origin

    def particle_grid(
        self,
        batch_size: int,
        spacing: float,
        geometry: PeriodicGeometry | None = None,
        bbox: np.ndarray | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A regular grid over ``bbox`` (``[2, 3]``: low and high corner, Angstrom), shared by all."""
        if bbox is None:
            raise ValueError("the paper frame needs a bounding box for its particle grid")
        grid = box_grid(np.asarray(bbox, dtype=np.float64), spacing)
        pts = torch.as_tensor(grid, dtype=dtype, device=device)
        pts = pts.unsqueeze(0).expand(batch_size, -1, -1)
        return pts, torch.ones(pts.shape[:2], dtype=torch.bool, device=pts.device)


class PeriodicFrame(Frame):
    """Nearest atom over all periodic images; points live in the unit cell."""

    name = "periodic"
    periodic = True

    def wrap(self, points: torch.Tensor, geometry: PeriodicGeometry | None) -> torch.Tensor:
        assert geometry is not None
        return geometry.wrap(points)

    def displacement(
        self, origin: torch.Tensor, target: torch.Tensor, geometry: PeriodicGeometry | None
    ) -> torch.Tensor:
        assert geometry is not None
        return geometry.minimum_image(target - origin)

    def particle_grid(
        self,
        batch_size: int,
        spacing: float,
        geometry: PeriodicGeometry | None = None,
        bbox: np.ndarray | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A regular grid of cell-centred points in the LLL-reduced cell (one cell, no duplicates).

        Along each reduced lattice vector of length ``l`` there are ``ceil(l / spacing)`` points,
        so the density is at least that of a cubic grid of ``spacing``. Points are returned
        wrapped into the original cell.
        """
        red = geometry.reduced
        lengths = torch.linalg.norm(red, dim=-1)  # [B, 3]
        counts = torch.clamp(torch.ceil(lengths / spacing - 1e-6), min=1).long()  # [B, 3]
        per = counts.prod(dim=1)  # [B]
        q = int(per.max())
        j = torch.arange(q, device=red.device).unsqueeze(0).expand(len(per), -1)  # [B, Q]
        mask = j < per.unsqueeze(1)
        n1, n2 = counts[:, 1:2], counts[:, 2:3]
        i0 = j // (n1 * n2)
        i1 = (j // n2) % n1
        i2 = j % n2
        idx = torch.stack([i0, i1, i2], dim=-1).to(red.dtype)  # [B, Q, 3]
        frac = (idx + 0.5) / counts.unsqueeze(1).to(red.dtype)
        cart = torch.bmm(frac, red)
        cart = geometry.wrap(cart)
        return torch.where(mask.unsqueeze(-1), cart, torch.zeros_like(cart)), mask


def box_grid(bbox: np.ndarray, spacing: float) -> np.ndarray:
    """Regular grid ``[Q, 3]`` with ``spacing`` (Angstrom) covering ``bbox`` ``[2, 3]``, corners included."""
    lo, hi = np.asarray(bbox[0], dtype=np.float64), np.asarray(bbox[1], dtype=np.float64)
    axes = [lo[i] + spacing * np.arange(int(np.floor((hi[i] - lo[i]) / spacing + 1e-9)) + 1) for i in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def get_frame(name: str | Frame) -> Frame:
    """``"paper"`` or ``"periodic"`` -> the frame object."""
    if isinstance(name, Frame):
        return name
    if name == "paper":
        return PaperFrame()
    if name == "periodic":
        return PeriodicFrame()
    raise ValueError(f"unknown frame {name!r}; choose one of {', '.join(FRAMES)}")
