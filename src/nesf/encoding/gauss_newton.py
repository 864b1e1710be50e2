"""Gauss-Newton refinement of latent codes: few, second-order steps on a crystal's own field.

:func:`nesf.encoding.refine.refine_latents` takes Adam steps on the refinement objective. The
objective is nearly a sum of squares: the position field's squared error at the queries, the
lattice heads' squared error, and the species cross-entropy, written as the square of
``sqrt(cross-entropy)``. A Gauss-Newton step solves, for each crystal, the damped normal
equations of those residuals linearised at the current code,

    (J^T J + lambda diag-mean(J^T J) I) delta = -J^T r,

which a code of a few hundred dimensions affords: each step costs about four Adam steps and
moves a code as far as dozens of them. The queries are drawn afresh at every step (the same
sampler and seeds as the Adam refinement), so successive steps see other points of the field.
Each crystal's normal equations hold only its own queries: a code depends neither on the other
crystals refined with it nor on the order of its atoms.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from nesf.data.batch import CrystalBatch
from nesf.encoding.fit import position_at, row_jacobians
from nesf.encoding.refine import RefineSettings, query_weights, refinement_sampler
from nesf.models.autoencoder import NeSFModel
from nesf.models.config import TrainConfig

#: Largest move of a code in one step, as a fraction of its norm (a linearisation far from its
#: point says little).
MAX_STEP = 0.25

#: Cross-entropies are floored here before their square root is taken (its derivative).
MIN_CROSS_ENTROPY = 1e-6


def gauss_newton_latents(
    model: NeSFModel,
    batch: CrystalBatch,
    z0: torch.Tensor,
    train_cfg: TrainConfig,
    settings: RefineSettings,
    bbox: np.ndarray | None = None,
    atom_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Latent codes ``[B, D]`` after ``settings.steps`` Gauss-Newton steps on the crystals' fields.

    Args:
        model: the trained network (left unchanged; only the codes move).
        batch: the crystals, in the setting the network sees.
        z0: ``[B, D]`` the starting codes.
        train_cfg: the model's training configuration (query sampling and loss weights).
        settings: a :class:`~nesf.encoding.refine.RefineSettings`: ``steps``, ``damping``,
            ``lattice_weight``, ``position_weight``, ``species_per_atom``, ``uniform_queries``
            and ``seed`` (``lr`` is not used: each step is the solution of its normal equations).
        bbox: paper frame: the ``[2, 3]`` particle domain (Angstrom); None in the periodic frame.
        atom_weights: ``[B, N]`` weights of the queries drawn around each atom, or None (all 1).

    Returns:
        ``[B, D]`` refined codes (detached). A crystal whose normal equations cannot be solved
        keeps its code of the step before.
    """
    s = settings
    cfg, sampler = refinement_sampler(train_cfg, s, model.frame, bbox)
    generator = torch.Generator().manual_seed(s.seed)
    inverse = torch.linalg.inv(batch.lattice) if model.frame.periodic else None
    target = model.normalize_lattice(batch.lattice_params)
    w_lattice = torch.tensor(
        [cfg.w_length * s.lattice_weight / 3.0] * 3 + [cfg.w_angle * s.lattice_weight / 3.0] * 3,
        dtype=z0.dtype,
        device=z0.device,
    ).sqrt()
    z = z0.detach().clone()
    n, dim = z.shape
    eye = torch.eye(dim, dtype=torch.float64, device=z.device)
    for _ in range(s.steps):
        q = sampler.sample(batch, generator)
        pos_w, spec_w = query_weights(atom_weights, q)
        # position: residuals sqrt(a) (p - p*), a = w_position * w / (3 sum w) over each crystal's queries
        a = (cfg.w_position * s.position_weight / 3.0) * _shares(pos_w, q.pos_index, n)
        field = partial(position_at, model, points=q.pos_points, inverse=_rows(inverse, q.pos_index))
        p, j_p = row_jacobians(field, z[q.pos_index])  # [Qp, 3], [Qp, 3, D]
        root = a.sqrt()[:, None]
        normal, rhs = _normal_equations(j_p * root[..., None], (p - q.pos_target) * root, q.pos_index, n)
        # species: residuals sqrt(b ce), b = w_species * w / sum w over each crystal's queries
        b = cfg.w_species * _shares(spec_w, q.spec_index, n)
        species = partial(
            _cross_entropy, model, points=q.spec_points, target=q.spec_target, inverse=_rows(inverse, q.spec_index)
        )
        ce, j_ce = row_jacobians(species, z[q.spec_index])  # [Qs, 1], [Qs, 1, D]
        ce = ce.clamp_min(MIN_CROSS_ENTROPY)
        res = (b[:, None] * ce).sqrt()
        jac = j_ce * (b[:, None].sqrt() / (2.0 * ce.sqrt()))[..., None]  # d sqrt(b ce) / dz
        n_s, r_s = _normal_equations(jac, res, q.spec_index, n)
        normal, rhs = normal + n_s, rhs + r_s
        # lattice heads: residuals sqrt(w) (l - l*)
        lattice, j_l = row_jacobians(model.lattice_normalized, z)  # [B, 6], [B, 6, D]
        j_l = j_l * w_lattice[None, :, None]
        normal = normal + (j_l.transpose(1, 2) @ j_l).double()
        rhs = rhs + (j_l.transpose(1, 2) @ ((lattice - target) * w_lattice).unsqueeze(-1)).squeeze(-1).double()
        damping = s.damping * normal.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12)
        factor, failed = torch.linalg.cholesky_ex(normal + damping[:, None, None] * eye)
        step = -torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1).to(z.dtype)
        length = step.norm(dim=1, keepdim=True)
        step = step * torch.clamp(MAX_STEP * z.norm(dim=1, keepdim=True) / length.clamp_min(1e-12), max=1.0)
        ok = (failed == 0) & torch.isfinite(step).all(dim=1)
        z = z + torch.where(ok[:, None], step, torch.zeros_like(step))
    return z


def _cross_entropy(
    model: NeSFModel, z: torch.Tensor, points: torch.Tensor, target: torch.Tensor, inverse: torch.Tensor | None
) -> torch.Tensor:
    """Species cross-entropy ``[Q, 1]`` at ``points``, each query with its own code ``z`` ``[Q, D]``."""
    index = torch.arange(len(z), device=z.device)
    logits = model.species_field(model.species_decoder.latent_part(z), points, index, inverse)
    return F.cross_entropy(logits, target, reduction="none").unsqueeze(-1)


def _rows(inverse: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    """Each query's inverse cell ``[Q, 3, 3]`` (None in the paper frame)."""
    return None if inverse is None else inverse[index]


def _shares(weights: torch.Tensor | None, index: torch.Tensor, n: int) -> torch.Tensor:
    """Each query's weight over the sum of its crystal's weights ``[Q]`` (None: all weigh 1)."""
    w = torch.ones(len(index), device=index.device) if weights is None else weights.float()
    total = torch.zeros(n, dtype=w.dtype, device=w.device).index_add(0, index, w)
    return w / total[index].clamp_min(1e-12)


def _normal_equations(
    jac: torch.Tensor, res: torch.Tensor, index: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each crystal's ``J^T J`` ``[n, D, D]`` and ``J^T r`` ``[n, D]`` (float64) from its queries' rows.

    Args:
        jac: ``[Q, K, D]`` Jacobians of each query's ``K`` residuals.
        res: ``[Q, K]`` the residuals.
        index: ``[Q]`` the crystal of each query.
        n: crystals.
    """
    q, k, dim = jac.shape
    if q == 0:
        zeros = torch.zeros(n, dim, dtype=torch.float64, device=jac.device)
        return torch.zeros(n, dim, dim, dtype=torch.float64, device=jac.device), zeros
    order = torch.argsort(index, stable=True)
    crystal = index[order]
    counts = torch.bincount(crystal, minlength=n)
    rank = torch.arange(q, device=jac.device) - (torch.cumsum(counts, 0) - counts)[crystal]
    width = int(counts.max())
    j = jac.new_zeros(n, width, k, dim)
    j[crystal, rank] = jac[order]
    r = res.new_zeros(n, width, k)
    r[crystal, rank] = res[order]
    j, r = j.reshape(n, width * k, dim), r.reshape(n, width * k, 1)
    jt = j.transpose(1, 2)
    return (jt @ j).double(), (jt @ r).squeeze(-1).double()
