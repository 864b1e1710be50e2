"""Codes fitted to their input's atoms and cell: the last step of checked codes.

A checked code decodes to its input's composition, but its atoms sit where the learned field
puts them, 0.05-0.15 A off on `mp` crystals. The decoder's final position estimate of an atom
(:func:`nesf.reconstruction.reconstruct.polish_atoms`) is the mean of ``x + p(x)`` over shells of
queries ``x`` around it. This module moves each code so that this estimate, taken around each
input atom, is the input atom itself, and the decoded cell is the input's, while the field far
from the atoms stays as it was (where a moved field would grow or lose atoms):

    minimise  sum_i |e_i(z)|^2 + w_L^2 |l(z) - l*|^2 + beta sum_u |p_u(z) - p_u(z_k)|^2 + mu |z - z_k|^2

over Gauss-Newton (Levenberg-Marquardt) iterations from ``z_k``, where ``e_i`` is the polished
estimate's offset from input atom ``i``, ``l`` the normalised lattice parameters, and ``p_u`` the
field at points of the cell at least :data:`CLEARANCE` from every input atom. The crystal is
still decoded from its code alone; like the refinement, this is test-time search that uses the
input's own structure, and the checks of :mod:`nesf.encoding.checked` decide whether the fitted
code is kept.
"""

from __future__ import annotations

from functools import partial

import torch

from nesf.data.batch import CrystalBatch
from nesf.encoding.refine import fit_lattice
from nesf.fields.exact import ExactField
from nesf.models.autoencoder import NeSFModel
from nesf.reconstruction.reconstruct import shell_offsets

#: Queries per shell of the polished estimate in the fit (the decoder polishes with its own
#: number; 16 directions estimate the same mean closely enough for a Jacobian).
DIRECTIONS = 16  # the default of RefineSettings.atom_fit_directions

#: ``beta``: weight of keeping the field unchanged at the free points of the cell.
KEEP_WEIGHT = 0.1

#: ``mu``: damping of each Gauss-Newton step, latent units.
DAMPING = 0.1

#: ``w_L``: weight of the normalised lattice residual against the atoms' offsets (A).
LATTICE_WEIGHT = 10.0

#: Free points: a grid of this many points per axis in each cell's fractional coordinates
#: (those near atoms are dropped), shifted by :data:`GRID_SHIFT` at each iteration. The same
#: points for every crystal, so a crystal's fit does not depend on the others fitted with it.
FREE_GRID = 4

#: Shift of the free points' grid per iteration, fractional coordinates.
GRID_SHIFT = (0.382, 0.618, 0.236)

#: Free points lie at least this far from every input atom, Angstrom.
CLEARANCE = 1.0

#: Largest move of a code, as a fraction of its norm (as :data:`nesf.encoding.refine.LATTICE_FIT_MAX_MOVE`).
MAX_MOVE = 0.25


def fit_atoms_and_cell(
    model: NeSFModel,
    z: torch.Tensor,
    batch: CrystalBatch,
    radii: tuple[float, ...],
    gate: float,
    iterations: int,
    directions: int = DIRECTIONS,
) -> torch.Tensor:
    """Codes ``[B, D]`` moved so that their decoded atoms and cells become those of ``batch``.

    Args:
        model: the network (periodic frame; unchanged).
        z: ``[B, D]`` codes of the crystals of ``batch``.
        batch: the input crystals, in the network's setting.
        radii: shell radii of the decoder's polishing, Angstrom.
        gate: a shell query votes when its ``x + p(x)`` lands this close to the atom (A), as in
            the decoder's polishing.
        iterations: Gauss-Newton iterations (0: ``z`` unchanged).
        directions: queries per shell of the polished estimate.

    Returns:
        ``[B, D]`` fitted codes. The cell is fitted first and last (:func:`fit_lattice`, which
        is exact where the Gauss-Newton steps here are damped); a code whose atom fit would
        move it farther than :data:`MAX_MOVE` of its norm (or to NaN) keeps the cell fit alone.
    """
    if iterations == 0 or len(z) == 0 or not model.frame.periodic:
        return z
    target = model.normalize_lattice(batch.lattice_params)
    start = fit_lattice(model, z.detach(), target, iterations)  # the atoms are fitted in the input's cell
    z = start.clone()
    axis = (torch.arange(FREE_GRID, dtype=z.dtype, device=z.device) + 0.5) / FREE_GRID
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)  # [U, 3]
    shift = torch.tensor(GRID_SHIFT, dtype=z.dtype, device=z.device)
    crystal, atom = torch.nonzero(batch.mask, as_tuple=True)  # [T]
    atoms = batch.cart[crystal, atom]  # [T, 3] Angstrom
    inverse = torch.linalg.inv(batch.lattice)  # [B, 3, 3]
    offsets = shell_offsets(radii, directions, z.dtype, z.device)  # [M, 3]
    exact = ExactField(batch, model.frame)
    eye = torch.eye(z.shape[1], dtype=torch.float64, device=z.device)
    for iteration in range(iterations):
        frac = (grid + iteration * shift) % 1.0  # the same points in every crystal's cell
        free = torch.matmul(frac, batch.lattice)  # [B, U, 3]
        clear = exact.position(free).norm(dim=-1) > CLEARANCE  # [B, U]
        fc, fu = torch.nonzero(clear, as_tuple=True)
        lattice, j_lattice = row_jacobians(model.lattice_normalized, z)  # [B, 6], [B, 6, D]
        shells = partial(_polished_offset, model, atoms=atoms, inverse=inverse[crystal], offsets=offsets, gate=gate)
        estimate, j_atoms = row_jacobians(shells, z[crystal])
        if len(fc):
            _, j_free = row_jacobians(partial(position_at, model, points=free[fc, fu], inverse=inverse[fc]), z[fc])
        w2 = LATTICE_WEIGHT**2
        normal = w2 * j_lattice.transpose(1, 2) @ j_lattice  # [B, D, D]
        normal.index_add_(0, crystal, j_atoms.transpose(1, 2) @ j_atoms)
        if len(fc):
            normal.index_add_(0, fc, KEEP_WEIGHT * j_free.transpose(1, 2) @ j_free)
        rhs = w2 * (j_lattice.transpose(1, 2) @ (target - lattice).unsqueeze(-1)).squeeze(-1)  # [B, D]
        rhs.index_add_(0, crystal, -(j_atoms.transpose(1, 2) @ estimate.unsqueeze(-1)).squeeze(-1))
        # symmetric positive definite: Cholesky (batched LU solves of this size hang some CPU
        # builds of torch on several threads)
        factor, failed = torch.linalg.cholesky_ex(normal.double() + DAMPING * eye)
        step = torch.cholesky_solve(rhs.double().unsqueeze(-1), factor).squeeze(-1)
        z = z + torch.where((failed != 0)[:, None], torch.nan, step).to(z.dtype)  # NaN: left unfitted below
    too_far = ~((z - start).norm(dim=1) <= MAX_MOVE * start.norm(dim=1))  # NaN counts as too far
    return fit_lattice(model, torch.where(too_far[:, None], start, z), target, iterations)  # the cell exact again


def position_at(
    model: NeSFModel,
    z: torch.Tensor,
    points: torch.Tensor,
    inverse: torch.Tensor | None,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Position field ``[Q, 3]`` at ``points`` ``[Q, 3]`` of codes ``z`` ``[T, D]``.

    ``index`` ``[Q]``: the code (and row of ``inverse`` ``[T, 3, 3]``, None in the paper frame)
    of each query; None: one query per code, so each query has its own copy of its crystal's code
    (as :func:`row_jacobians` needs).
    """
    index = torch.arange(len(z), device=z.device) if index is None else index
    return model.position_field(model.position_decoder.latent_part(z), points, index, inverse)


def _polished_offset(
    model: NeSFModel,
    z: torch.Tensor,
    atoms: torch.Tensor,
    inverse: torch.Tensor,
    offsets: torch.Tensor,
    gate: float,
) -> torch.Tensor:
    """The decoder's polished estimate around each atom minus the atom, ``[T, 3]`` (A); ``z`` ``[T, D]``."""
    t, m = atoms.shape[0], offsets.shape[0]
    points = (atoms.unsqueeze(1) + offsets).reshape(-1, 3)
    index = torch.arange(t, device=z.device).repeat_interleave(m)  # each atom has its own copy of the code
    vote = offsets + position_at(model, z, points, inverse, index).reshape(t, m, 3)
    keep = (vote.detach().norm(dim=-1) <= gate).to(vote.dtype)  # the decoder's gate, not differentiated
    return (vote * keep.unsqueeze(-1)).sum(dim=1) / keep.sum(dim=1, keepdim=True).clamp(min=1.0)


def row_jacobians(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001 - a callable
    """``fn(z)`` ``[R, K]`` and its Jacobian ``[R, K, D]`` with respect to ``z`` ``[R, D]``, row by row.

    Each row of ``fn(z)`` must depend only on the same row of ``z`` (callers give every query
    its own copy of its crystal's code), so ``K`` backward passes give every row's Jacobian.
    """
    zz = z.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = fn(zz)
        rows = [
            torch.autograd.grad(out[:, k].sum(), zz, retain_graph=k < out.shape[1] - 1)[0] for k in range(out.shape[1])
        ]
    return out.detach(), torch.stack(rows, dim=1)
