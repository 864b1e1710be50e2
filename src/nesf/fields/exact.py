"""Exact (ground-truth) structure fields of a batch of crystals."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nesf.data.batch import CrystalBatch
from nesf.fields.frame import Frame, get_frame
from nesf.fields.geometry import PeriodicGeometry

#: Largest number of query-target scores computed at once (bounds memory, ~128 MB in float32).
_CHUNK_ELEMENTS = 32_000_000


class ExactField:
    """Position and species fields of known crystals, in a frame.

    The position field at a query point is the vector to the nearest atom (in the paper
    frame among the cell's own atoms; in the periodic frame over all periodic images);
    the species field is the one-hot species of that atom.

    Field contract (shared with neural fields, used by reconstruction):
    ``position(points [B, Q, 3]) -> [B, Q, 3]`` (Angstrom),
    ``species(points [B, Q, 3]) -> [B, Q, S]`` (scores) and
    ``species_labels(points [B, Q, 3]) -> [B, Q]`` (arg-max class).

    Periodic frame: queries and atoms are wrapped into the LLL-reduced cell. Any atom in the
    cell bounds the nearest-atom distance of a query from above; images whose distance to the
    cell (measured through its lattice planes) exceeds the largest such bound cannot be nearest
    and are dropped before the search. The result is exact for any cell.

    Args:
        batch: the crystals.
        frame: ``"paper"``, ``"periodic"`` or a :class:`Frame`.
    """

    def __init__(self, batch: CrystalBatch, frame: str | Frame) -> None:
        self.batch = batch
        self.frame = get_frame(frame)
        self.n_species = len(batch.vocab)
        if self.frame.periodic:
            geom = batch.geometry
            frac = torch.bmm(batch.cart, geom.reduced_inverse)
            self._atom_frac = frac - torch.floor(frac)  # [B, N, 3] in the reduced cell
            self._atoms = torch.bmm(self._atom_frac, geom.reduced)
            self._shift_int = torch.round(
                torch.bmm(geom.wrap_shifts, geom.reduced_inverse)
            )  # [B, K, 3] integer shifts (same for all crystals)
            self._heights = _plane_heights(geom.reduced)  # [B, 3]

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the field's tensors."""
        return self.batch.cart.dtype

    @property
    def device(self) -> torch.device:
        """Device of the field's tensors."""
        return self.batch.cart.device

    @property
    def geometry(self) -> PeriodicGeometry | None:
        """The batch's periodic geometry (None in the paper frame)."""
        return self.batch.geometry if self.frame.periodic else None

    def nearest(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Displacement to the nearest atom ``[B, Q, 3]`` (Angstrom) and that atom's index ``[B, Q]``."""
        if not self.frame.periodic:
            n = self.batch.cart.shape[1]
            atom_index = torch.arange(n, device=points.device).expand(len(self.batch), n)
            return _nearest_target(points, self.batch.cart, self.batch.mask, atom_index)
        geom = self.batch.geometry
        q_in = geom.wrap_reduced(points)
        # upper bound of every query's nearest distance, from the atoms inside the cell
        d_in, _ = _nearest_target(q_in, self._atoms, self.batch.mask, None, distances_only=True)
        bound = d_in.max(dim=1).values  # [B]
        targets, mask, atom_index = self._images_within(bound)
        disp, idx = _nearest_target(q_in, targets, mask, atom_index)
        return disp, idx

    def _images_within(self, bound: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Periodic images of the atoms whose distance to the reduced cell is <= ``bound`` ``[B]``.

        Returns padded targets ``[B, M, 3]``, their mask ``[B, M]`` and atom index ``[B, M]``.
        """
        b, n, _ = self._atom_frac.shape
        k = self._shift_int.shape[1]
        frac = self._atom_frac.unsqueeze(1) + self._shift_int.unsqueeze(2)  # [B, K, N, 3]
        excess = torch.clamp(frac - 1.0, min=0.0) + torch.clamp(-frac, min=0.0)
        gap = (excess * self._heights[:, None, None, :]).amax(dim=-1)  # [B, K, N] lower bound, A
        keep = (gap <= bound[:, None, None] * (1 + 1e-4) + 1e-3) & self.batch.mask.unsqueeze(1)
        keep = keep.reshape(b, k * n)
        m = int(keep.sum(dim=1).max())
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :m]  # kept ones first
        cart = torch.bmm(frac.reshape(b, k * n, 3), self.batch.geometry.reduced)
        targets = torch.gather(cart, 1, order.unsqueeze(-1).expand(-1, -1, 3))
        mask = torch.gather(keep, 1, order)
        atom_index = order % n
        return targets, mask, atom_index

    def position(self, points: torch.Tensor) -> torch.Tensor:
        """Position field: vector to the nearest atom, ``[B, Q, 3]`` Angstrom."""
        return self.nearest(points)[0]

    def species_labels(self, points: torch.Tensor) -> torch.Tensor:
        """Species class index of the nearest atom, ``[B, Q]``."""
        return torch.gather(self.batch.species, 1, self.nearest(points)[1])

    def species(self, points: torch.Tensor) -> torch.Tensor:
        """Species field: one-hot species of the nearest atom, ``[B, Q, S]``."""
        return F.one_hot(self.species_labels(points), self.n_species).to(points.dtype)

    def __call__(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both fields at once: ``(displacement [B, Q, 3], species scores [B, Q, S])``."""
        disp, atom = self.nearest(points)
        spec = torch.gather(self.batch.species, 1, atom)
        return disp, F.one_hot(spec, self.n_species).to(points.dtype)


def _nearest_target(
    points: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor,
    target_index: torch.Tensor | None,
    distances_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest valid target of every point, by chunks.

    Args:
        points: ``[B, Q, 3]``.
        targets: ``[B, M, 3]``.
        mask: ``[B, M]`` valid targets.
        target_index: ``[B, M]`` label returned for each target (e.g. its atom index).
        distances_only: return ``(distance [B, Q], None)`` instead.

    Returns:
        ``(displacement [B, Q, 3], label [B, Q])`` or ``(distance [B, Q], None)``.
    """
    b, q, _ = points.shape
    m = targets.shape[1]
    sq = (targets * targets).sum(-1)
    sq = torch.where(mask, sq, torch.full_like(sq, float("inf")))
    targets_t = targets.transpose(1, 2)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, b * m))
    first, second = [], []
    for start in range(0, q, chunk):
        p = points[:, start : start + chunk]
        # |t|^2 - 2 p.t orders targets like |t - p|^2 (one batched matmul); padding scores inf
        score = torch.baddbmm(sq.unsqueeze(1), p, targets_t, alpha=-2.0)  # [B, q, M]
        best, j = score.min(dim=-1)
        if distances_only:
            first.append(torch.sqrt(torch.clamp(best + (p * p).sum(-1), min=0.0)))
            continue
        tgt = torch.gather(targets, 1, j.unsqueeze(-1).expand(-1, -1, 3))
        first.append(tgt - p)
        second.append(torch.gather(target_index, 1, j))
    if distances_only:
        return torch.cat(first, dim=1), None  # type: ignore[return-value]
    return torch.cat(first, dim=1), torch.cat(second, dim=1)


def _plane_heights(cells: torch.Tensor) -> torch.Tensor:
    """Distances between adjacent lattice planes along each axis, ``[B, 3]`` Angstrom."""
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    vol = torch.abs(torch.linalg.det(cells))
    cross = torch.stack([torch.linalg.cross(b, c), torch.linalg.cross(c, a), torch.linalg.cross(a, b)], dim=1)
    return vol.unsqueeze(1) / torch.linalg.norm(cross, dim=-1)
