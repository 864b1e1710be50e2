"""Greedy non-maximum suppression of weighted particles, all crystals at once."""

from __future__ import annotations

import torch

from nesf.fields.frame import Frame
from nesf.fields.geometry import PeriodicGeometry
from nesf.reconstruction.particles import Particles, to_padded

#: Non-maximum suppression drops the removed particles once fewer than this share remain, so each
#: pass measures distances only to particles still in play.
COMPACT_BELOW = 0.75


def nms_cluster(
    particles: Particles,
    batch_size: int,
    frame: Frame,
    geometry: PeriodicGeometry | None,
    radius: float,
    min_particles: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Detect atoms from particles by greedy non-maximum suppression.

    In every crystal at once: take the remaining particle with the lowest residual, gather all
    remaining particles within ``radius`` of it (minimum image in periodic frames); if their
    total weight is at least ``min_particles`` they form an atom at the ``softmax(-residual)``
    weighted mean (each particle's weight multiplies its softmax term); remove them; repeat.
    One loop iteration per detected cluster, vectorised over crystals and particles.

    Returns:
        Atom positions ``[A, 3]`` (Angstrom, wrapped in periodic frames) and the crystal index
        of each atom ``[A]``, sorted by crystal then by detection order.
    """
    dev = particles.pos.device
    if len(particles) == 0:
        return particles.pos.new_zeros((0, 3)), torch.zeros(0, dtype=torch.long, device=dev)
    # sort by crystal, then by residual (best first)
    order = torch.argsort(particles.residual, stable=True)
    order = order[torch.argsort(particles.crystal[order], stable=True)]
    p = particles.subset(order)
    per_geom = geometry.select(p.crystal) if (frame.periodic and geometry is not None) else None
    soft = p.weight * torch.exp(-(p.residual - p.residual.min()))
    n = len(p)
    remaining = torch.ones(n, dtype=torch.bool, device=dev)
    arange = torch.arange(n, device=dev)
    atoms, owners, ranks = [], [], []
    it = 0
    while True:
        cand = torch.where(remaining, arange, torch.full_like(arange, n))
        best = torch.full((batch_size,), n, dtype=torch.long, device=dev)
        best = best.scatter_reduce(0, p.crystal, cand, reduce="amin")
        has = best < n
        if not bool(has.any()):
            break
        centre = p.pos[best.clamp(max=n - 1)]  # [B, 3]
        origin = centre[p.crystal]  # [P, 3]
        if per_geom is not None:
            delta = per_geom.minimum_image((p.pos - origin).unsqueeze(1)).squeeze(1)
        else:
            delta = p.pos - origin
        member = remaining & ((delta * delta).sum(-1) <= radius * radius)
        mw = member.to(p.weight.dtype)
        count = torch.zeros(batch_size, dtype=p.weight.dtype, device=dev).index_add_(0, p.crystal, p.weight * mw)
        sw = soft * mw
        den = torch.zeros(batch_size, dtype=sw.dtype, device=dev).index_add_(0, p.crystal, sw)
        num = torch.zeros(batch_size, 3, dtype=sw.dtype, device=dev).index_add_(0, p.crystal, delta * sw.unsqueeze(1))
        atom = centre + num / den.clamp(min=torch.finfo(den.dtype).tiny).unsqueeze(1)
        accept = has & (count >= min_particles - 1e-6)
        if bool(accept.any()):
            idx = accept.nonzero().squeeze(1)
            atoms.append(atom[idx])
            owners.append(idx)
            ranks.append(torch.full_like(idx, it))
        remaining &= ~member
        it += 1
        if int(remaining.sum()) < COMPACT_BELOW * n:  # compact to keep each pass cheap
            keep = remaining
            p = p.subset(keep)
            soft = soft[keep]
            if per_geom is not None:
                per_geom = per_geom.select(keep.nonzero().squeeze(1))
            n = len(p)
            remaining = torch.ones(n, dtype=torch.bool, device=dev)
            arange = torch.arange(n, device=dev)
    if not atoms:
        return particles.pos.new_zeros((0, 3)), torch.zeros(0, dtype=torch.long, device=dev)
    pos = torch.cat(atoms)
    owner = torch.cat(owners)
    rank = torch.cat(ranks)
    if per_geom is not None or (frame.periodic and geometry is not None):
        assert geometry is not None
        pos = geometry.select(owner).wrap(pos.unsqueeze(1)).squeeze(1)
    order = torch.argsort(owner * (rank.max() + 1) + rank)
    return pos[order], owner[order]


def drop_overlapping(
    atoms: torch.Tensor,
    owner: torch.Tensor,
    batch_size: int,
    geometry: PeriodicGeometry | None,
    radius: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Atoms ``[A, 3]`` without those closer than ``radius`` (Angstrom) to an earlier atom of their crystal.

    Non-maximum suppression keeps cluster centres apart only through their best particles: where
    a vague field spreads particles over a shell, two clusters' weighted centres can land almost
    on top of each other. The earlier atom (the better residual) is kept, as suppression would.
    Atoms must come sorted by crystal, then by detection order (as :func:`nms_cluster` returns
    them); ``geometry``: the ``B`` cells for minimum images (None: plain distances).

    Returns:
        The kept atoms ``[A', 3]`` and their crystal indices ``[A']``, in the same order.
    """
    if atoms.shape[0] < 2:
        return atoms, owner
    padded, rows, cols = to_padded(atoms, owner, batch_size)  # [B, M, 3]
    b, m, _ = padded.shape
    delta = (padded.unsqueeze(2) - padded.unsqueeze(1)).reshape(b, m * m, 3)  # [B, M * M, 3]
    if geometry is not None:
        delta = geometry.minimum_image(delta)
    close = ((delta * delta).sum(-1) < radius * radius).reshape(b, m, m)  # [B, M, M]: atom i near atom j
    present = torch.zeros(b, m, dtype=torch.bool, device=atoms.device)
    present[rows, cols] = True
    earlier = torch.ones(m, m, dtype=torch.bool, device=atoms.device).tril(-1)  # j < i
    close &= earlier & present.unsqueeze(1) & present.unsqueeze(2)
    if not bool(close.any()):
        return atoms, owner
    kept = present.clone()
    for _ in range(m):  # greedy, in detection order: an atom goes only if a kept earlier one is near
        new = present & ~(close & kept.unsqueeze(1)).any(-1)
        if torch.equal(new, kept):
            break
        kept = new
    keep = kept[rows, cols]
    return atoms[keep], owner[keep]
