"""The reconstruction algorithm: any structure field -> atoms.

Works against any object with the field contract (exact or neural):

* ``field.frame``: the :class:`~nesf.fields.frame.Frame`;
* ``field.geometry``: a :class:`~nesf.fields.geometry.PeriodicGeometry` of the ``B`` cells
  (needed by periodic frames, may be None in the paper frame);
* ``field.position(points [B, Q, 3]) -> [B, Q, 3]`` displacement to the nearest atom (Angstrom);
* ``field.species_labels(points [B, Q, 3]) -> [B, Q]`` arg-max species class of the field;
* ``field.n_species``: the number of species classes ``S``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from nesf.fields.frame import Frame
from nesf.fields.geometry import PeriodicGeometry
from nesf.reconstruction.cluster import drop_overlapping, nms_cluster
from nesf.reconstruction.particles import Particles, merge_particles, to_padded
from nesf.reconstruction.settings import ReconstructionSettings


class StructureField(Protocol):
    """What reconstruction needs from a field bound to a batch of ``B`` crystals."""

    frame: Frame

    @property
    def geometry(self) -> PeriodicGeometry | None: ...  # noqa: D102

    def position(self, points: torch.Tensor) -> torch.Tensor: ...  # noqa: D102

    def species_labels(self, points: torch.Tensor) -> torch.Tensor: ...  # noqa: D102

    @property
    def n_species(self) -> int: ...  # noqa: D102


@dataclass
class ReconstructedAtoms:
    """Atoms found for one crystal.

    Attributes:
        cart: ``[n, 3]`` Cartesian positions, Angstrom (inside the cell in periodic frames).
        species: ``[n]`` species class indices.
        evaluations: field queries the crystal's reconstruction made (particle moves, polishing
            and species votes): its share of the work, whatever else was in the batch.
    """

    cart: np.ndarray
    species: np.ndarray
    evaluations: int = 0


@torch.no_grad()
def reconstruct(
    field: StructureField,
    batch_size: int,
    settings: ReconstructionSettings | None = None,
    bbox: np.ndarray | None = None,
) -> list[ReconstructedAtoms]:
    """Run the reconstruction algorithm on ``batch_size`` crystals of a bound field.

    Args:
        field: a structure field bound to ``batch_size`` crystals (see the module docstring).
        batch_size: number of crystals ``B`` the field is bound to.
        settings: algorithm settings (published values by default).
        bbox: ``[2, 3]`` bounding box of the particle grid (paper frame only), Angstrom.

    Returns:
        One :class:`ReconstructedAtoms` per crystal.
    """
    s = settings or ReconstructionSettings()
    frame, geom = field.frame, field.geometry
    if frame.periodic and geom is None:
        raise ValueError("a periodic frame needs the field's geometry")
    dtype, device = _probe_dtype_device(field, geom)
    points, mask = frame.particle_grid(batch_size, s.grid_spacing, geom, bbox, dtype, device)
    p = Particles.from_padded(points, mask)
    evaluations = torch.zeros(batch_size, dtype=torch.long, device=device)

    for step_no in range(s.n_steps):
        idx = p.active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        evaluations += torch.bincount(p.crystal[idx], minlength=batch_size)
        if hasattr(field, "position_flat"):  # neural fields take flat points: no padding work
            crystal = p.crystal[idx]
            disp = field.position_flat(p.pos[idx], crystal)
            moved = p.pos[idx] + disp
            if frame.periodic:
                moved = geom.wrap_flat(moved, crystal)
        else:
            padded, rows, cols = to_padded(p.pos[idx], p.crystal[idx], batch_size)
            disp_padded = field.position(padded)
            moved = frame.wrap(padded + disp_padded, geom)[rows, cols]
            disp = disp_padded[rows, cols]
        step = torch.linalg.norm(disp, dim=-1)
        p.pos[idx] = moved
        p.residual[idx] = step
        p.active[idx] = step > s.converge_tol
        if step_no < s.n_steps - 1:  # a merged particle must step again to get its own residual
            p = merge_particles(p, s.merge_tol)

    p = p.subset(p.residual <= s.max_residual)
    atoms, owner = nms_cluster(p, batch_size, frame, geom, s.nms_radius, s.min_particles)
    atoms, owner = drop_overlapping(atoms, owner, batch_size, geom if frame.periodic else None, s.nms_radius)
    if s.polish_steps:
        atoms = polish_atoms(field, atoms, owner, batch_size, s)
    species = vote_species(field, atoms, owner, batch_size, s)
    per_crystal = torch.bincount(owner, minlength=batch_size)
    queries_per_atom = s.polish_steps * len(s.polish_radii) * s.polish_directions + s.species_grid**3
    evaluations = (evaluations + per_crystal * queries_per_atom).tolist()
    atoms_np = atoms.double().cpu().numpy()
    species_np = species.cpu().numpy()
    out, start = [], 0
    for c, e in zip(per_crystal.tolist(), evaluations):
        out.append(ReconstructedAtoms(atoms_np[start : start + c], species_np[start : start + c], int(e)))
        start += c
    return out


def shell_offsets(radii: tuple[float, ...], n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Offsets ``[len(radii) * n, 3]`` (Angstrom): ``n`` Fibonacci-sphere directions on each shell of ``radii``.

    Each shell's offsets sum to nearly zero, so their mean does not move a point.
    """
    k = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = torch.pi * (3.0 - 5.0**0.5) * k
    r = torch.sqrt(1.0 - z * z)
    dirs = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1)  # [n, 3]
    dirs = dirs - dirs.mean(dim=0)  # exactly centred
    radius = torch.tensor(radii, dtype=torch.float64)
    return (radius[:, None, None] * dirs[None]).reshape(-1, 3).to(dtype=dtype, device=device)


def polish_atoms(
    field: StructureField,
    atoms: torch.Tensor,
    owner: torch.Tensor,
    batch_size: int,
    s: ReconstructionSettings,
) -> torch.Tensor:
    """Atoms ``[A, 3]`` (Angstrom) moved to the mean of ``x + p(x)`` over shells of queries ``x`` around them.

    ``s.polish_steps`` times: the field is queried on ``s.polish_radii`` shells of
    ``s.polish_directions`` points around each atom; every query whose ``x + p(x)`` lands within
    half the clustering radius of the atom (it points at this atom, not a neighbour) votes, and
    the atom moves to the mean of the votes (it stays where no query votes). Batched over all
    atoms of all crystals; wrapped into the cell in periodic frames.
    """
    if atoms.shape[0] == 0:
        return atoms
    frame, geom = field.frame, field.geometry
    offsets = shell_offsets(s.polish_radii, s.polish_directions, atoms.dtype, atoms.device)  # [M, 3]
    m = offsets.shape[0]
    gate = 0.5 * s.nms_radius
    for _ in range(s.polish_steps):
        pts = (atoms.unsqueeze(1) + offsets).reshape(-1, 3)  # [A * M, 3]
        crystal = owner.repeat_interleave(m)
        if hasattr(field, "position_flat"):
            disp = field.position_flat(geom.wrap_flat(pts, crystal) if frame.periodic else pts, crystal)
        else:
            padded, rows, cols = to_padded(pts, crystal, batch_size)
            disp = field.position(frame.wrap(padded, geom))[rows, cols]
        vote = (offsets + disp.reshape(-1, m, 3)).to(atoms.dtype)  # [A, M, 3]: x + p(x) relative to the atom
        keep = (torch.linalg.norm(vote, dim=-1) <= gate).to(atoms.dtype)  # [A, M]
        n_kept = keep.sum(dim=1, keepdim=True)
        step = (vote * keep.unsqueeze(-1)).sum(dim=1) / n_kept.clamp(min=1.0)
        atoms = atoms + torch.where(n_kept > 0, step, torch.zeros_like(step))
    if frame.periodic:
        atoms = geom.wrap_flat(atoms, owner)
    return atoms


def species_offsets(n: int, spacing: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Offsets ``[n^3, 3]`` of a centred cubic grid of ``n`` points per axis, Angstrom."""
    axis = (torch.arange(n, dtype=dtype, device=device) - (n - 1) / 2) * spacing
    g = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
    return g.reshape(-1, 3)


def vote_species(
    field: StructureField,
    atoms: torch.Tensor,
    owner: torch.Tensor,
    batch_size: int,
    s: ReconstructionSettings,
) -> torch.Tensor:
    """Majority vote of the species field's arg-max on a small grid around each atom ``[A]``."""
    if atoms.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long, device=atoms.device)
    offsets = species_offsets(s.species_grid, s.species_spacing, atoms.dtype, atoms.device)  # [G, 3]
    g = offsets.shape[0]
    if hasattr(field, "species_logits_flat"):  # neural fields take flat points: no padding work
        pts = (atoms.unsqueeze(1) + offsets).reshape(-1, 3)  # [A * G, 3]
        crystal = owner.repeat_interleave(g)
        if field.frame.periodic:
            pts = field.geometry.wrap_flat(pts, crystal)
        logits = field.species_logits_flat(pts, crystal)  # [A * G, S]
        votes = logits.argmax(dim=-1).reshape(-1, g)  # [A, G]
        tally = torch.zeros(atoms.shape[0], field.n_species, dtype=torch.int32, device=atoms.device)
        tally.scatter_add_(1, votes, torch.ones_like(votes, dtype=torch.int32))
        if s.species_min_atoms > 0:
            probs = torch.softmax(logits.float(), dim=-1).reshape(-1, g, field.n_species).mean(dim=1)  # [A, S]
            return palette_vote(tally, probs, owner, batch_size, s.species_min_atoms)
        return tally.argmax(dim=-1)
    padded, rows, cols = to_padded(atoms, owner, batch_size)  # [B, Amax, 3]
    b, amax, _ = padded.shape
    pts = (padded.unsqueeze(2) + offsets).reshape(b, amax * g, 3)
    pts = field.frame.wrap(pts, field.geometry)
    n_species = field.n_species
    votes = field.species_labels(pts).reshape(b, amax, g)
    tally = torch.zeros(b, amax, n_species, dtype=torch.int32, device=atoms.device)
    tally.scatter_add_(2, votes, torch.ones_like(votes, dtype=torch.int32))
    return tally.argmax(dim=-1)[rows, cols]


def palette_vote(
    tally: torch.Tensor, probs: torch.Tensor, owner: torch.Tensor, batch_size: int, min_atoms: float
) -> torch.Tensor:
    """Species ``[A]`` from vote counts restricted to each crystal's palette of well-supported elements.

    Args:
        tally: ``[A, S]`` votes per atom and species class.
        probs: ``[A, S]`` each atom's mean species probability over its vote grid.
        owner: ``[A]`` crystal index of each atom.
        batch_size: number of crystals ``B``.
        min_atoms: an element is kept in a crystal when its probabilities summed over the
            crystal's atoms reach this; the crystal's most probable element is always kept.
    """
    mass = torch.zeros(batch_size, probs.shape[1], dtype=probs.dtype, device=probs.device)
    mass.index_add_(0, owner, probs)  # [B, S] atoms' worth of each element
    keep = mass >= min_atoms
    keep[torch.arange(batch_size, device=mass.device), mass.argmax(dim=-1)] = True
    score = tally.to(probs.dtype) + probs  # votes decide, probability breaks ties (probs < 1)
    return score.masked_fill(~keep[owner], float("-inf")).argmax(dim=-1)


def _probe_dtype_device(field: StructureField, geom: PeriodicGeometry | None) -> tuple[torch.dtype, torch.device]:
    if geom is not None:
        return geom.lattice.dtype, geom.lattice.device
    dtype = getattr(field, "dtype", torch.float32)
    device = getattr(field, "device", torch.device("cpu"))
    return dtype, torch.device(device)
