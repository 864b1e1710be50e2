"""Particles that follow a position field: flat storage, padding for field calls, merging."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Particles:
    """Particles of ``B`` crystals stored flat, sorted by crystal.

    Attributes:
        pos: ``[P, 3]`` Cartesian positions, Angstrom.
        crystal: ``[P]`` index of the crystal each particle belongs to (non-decreasing).
        weight: ``[P]`` how many original particles this one stands for (merging adds them up).
        residual: ``[P]`` length of the particle's last step, Angstrom (inf before any step).
        active: ``[P]`` True while the particle still moves.
    """

    pos: torch.Tensor
    crystal: torch.Tensor
    weight: torch.Tensor
    residual: torch.Tensor
    active: torch.Tensor

    @classmethod
    def from_padded(cls, points: torch.Tensor, mask: torch.Tensor) -> Particles:
        """From padded ``[B, Q, 3]`` points and their ``[B, Q]`` mask."""
        b, q, _ = points.shape
        crystal = torch.arange(b, device=points.device).unsqueeze(1).expand(b, q)[mask]
        pos = points[mask]
        n = pos.shape[0]
        return cls(
            pos=pos.clone(),
            crystal=crystal,
            weight=torch.ones(n, dtype=points.dtype, device=points.device),
            residual=torch.full((n,), float("inf"), dtype=points.dtype, device=points.device),
            active=torch.ones(n, dtype=torch.bool, device=points.device),
        )

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def subset(self, keep: torch.Tensor) -> Particles:
        """Particles where ``keep`` (``[P]`` bool) is True; order kept."""
        return Particles(self.pos[keep], self.crystal[keep], self.weight[keep], self.residual[keep], self.active[keep])


def to_padded(
    values: torch.Tensor, crystal: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scatter flat ``[P, D]`` values sorted by crystal into ``[B, Qmax, D]``.

    Returns:
        The padded tensor (zeros on padding) and the ``(rows, cols)`` index of every flat entry.
    """
    counts = torch.bincount(crystal, minlength=batch_size)
    offsets = torch.cumsum(counts, 0) - counts
    cols = torch.arange(crystal.shape[0], device=crystal.device) - offsets[crystal]
    qmax = int(counts.max()) if crystal.numel() else 0
    padded = values.new_zeros((batch_size, max(qmax, 1)) + tuple(values.shape[1:]))
    padded[crystal, cols] = values
    return padded, crystal, cols


def merge_particles(p: Particles, tol: float) -> Particles:
    """Merge particles of the same crystal lying in the same cube of edge ``tol`` (Angstrom).

    The merged particle carries the summed weight, the weight-averaged position and residual,
    and stays active if any of its parts was active. The result stays sorted by crystal.
    """
    if tol <= 0 or len(p) == 0:
        return p
    cells = torch.floor(p.pos / tol).long()
    cells = cells - cells.min(dim=0).values
    span = cells.max(dim=0).values + 1
    n_crystals = int(p.crystal.max()) + 1
    if float(span.double().prod()) * n_crystals < 2.0**62:  # one int64 key per particle: fast 1D unique
        key = ((p.crystal * span[0] + cells[:, 0]) * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
        _, inverse = torch.unique(key, return_inverse=True)
    else:  # pragma: no cover - only for absurdly large spans
        _, inverse = torch.unique(torch.cat([p.crystal.unsqueeze(1), cells], dim=1), dim=0, return_inverse=True)
    m = int(inverse.max()) + 1
    if m == len(p):
        return p
    w = p.weight
    weight = torch.zeros(m, dtype=w.dtype, device=w.device).index_add_(0, inverse, w)
    # average positions relative to one member so that averaging never crosses a cell face
    first = torch.full((m,), len(p), dtype=torch.long, device=w.device)
    first = first.scatter_reduce(0, inverse, torch.arange(len(p), device=w.device), reduce="amin")
    anchor = p.pos[first]
    rel = p.pos - anchor[inverse]
    pos = anchor + torch.zeros_like(anchor).index_add_(0, inverse, rel * w.unsqueeze(1)) / weight.unsqueeze(1)
    finite = torch.isfinite(p.residual)
    res_w = torch.where(finite, p.residual, torch.zeros_like(p.residual)) * w
    residual = torch.zeros(m, dtype=w.dtype, device=w.device).index_add_(0, inverse, res_w) / weight
    any_inf = _segment_any(~finite, inverse, m)
    residual = torch.where(any_inf, torch.full_like(residual, float("inf")), residual)
    active = _segment_any(p.active, inverse, m)
    crystal = torch.zeros(m, dtype=p.crystal.dtype, device=w.device).scatter_(0, inverse, p.crystal)
    return Particles(pos, crystal, weight, residual, active)


def _segment_any(flags: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Logical OR of ``flags`` ``[P]`` within groups ``index`` ``[P]`` -> ``[size]``."""
    out = torch.zeros(size, dtype=torch.int32, device=flags.device)
    return out.scatter_reduce(0, index, flags.to(torch.int32), reduce="amax").bool()
