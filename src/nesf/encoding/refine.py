"""Latent refinement: a few gradient steps on an encoded crystal's own field.

The encoder gives a latent code in one forward pass (amortised inference). When the input
crystal is known, as in a round trip, the code can be improved further: its exact structure
field is known everywhere, so a handful of optimisation steps on the latent code alone (the
network stays frozen) bring the decoded field closer to it. This is test-time optimisation as
in auto-decoders (DeepSDF); the encoder's code is the starting point, so few steps suffice.

The objective is the training objective without label smoothing, on freshly drawn queries at
every step (the same query sampler as training), with the lattice terms weighted up: the lattice
is decoded from the code too, and the field is read in the decoded cell. Restarts of checked
codes weigh the position field up, and the queries around the atoms their crystal's earlier
decodes missed far more: the check knows the input, so it tells each restart where the last code
went wrong. Each crystal has its own objective (means over its own queries) and draws the same
jitters around all its atoms and as every other crystal: a code depends neither on the order of
its crystal's atoms nor on the other crystals it is refined with, so a crystal comes back the
same alone or in a file.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from nesf.data.batch import CrystalBatch
from nesf.fields.frame import Frame
from nesf.models.autoencoder import NeSFModel
from nesf.models.config import TrainConfig
from nesf.training.sampling import FieldSamples, QuerySampler

#: Ways of taking refinement steps (:attr:`RefineSettings.solver`).
SOLVERS = ("adam", "gauss_newton")


@dataclass(frozen=True)
class RefineSettings:
    """How encoded latent codes are refined on their input's field.

    Attributes:
        steps: Adam steps on each latent code (0: the encoder's code as it is, as published).
        lr: peak step size of Adam, in latent units; a cosine takes it to 0 over ``steps``.
        lattice_weight: multiplies the lattice-length and -angle loss weights of training.
        species_per_atom: species queries drawn per atom and step (fewer than training's grid:
            the code changes little, and the position field dominates the cost).
        batch_size: crystals refined together.
        seed: seed of the query sampling (the same input gives the same code).
        restarts: checked refinement: each refined code is decoded, and while its crystal's
            composition (atoms of each element in the cell) differs from its input's, the code
            is refined again (from ``restart_from``), up to this many times, with other query
            draws and the missed atoms weighted up (:meth:`restart`); the first code that gives
            the input's composition is kept, else the one that comes closest (atom count first,
            then atoms of each element). 0: no check (the code of one refinement).
        restart_steps: Adam steps of each restart.
        restart_lr: peak step size of each restart.
        position_weight: multiplies the position-field loss weight of training.
        restart_position_weight: the position weight of each restart (codes that fail the check
            mostly lose atoms, which the position field places).
        missed_atom_weight: restarts weigh the queries around every input atom that a decoded
            crystal of that input has missed so far (no decoded atom of its element within 0.5 A,
            :func:`nesf.metrics.paper.missed_atoms`) this many times more (1: all atoms alike).
        restart_from: where each restart starts: ``"closest"``, the code kept so far (the one
            whose crystal comes closest to the input's composition), ``"encoder"``, the
            encoder's code, or ``"last"``, the code the crystal's last refinement reached (a chain
            of short refinements, each checked).
        check_encoder: checked refinement: first decode the encoder's own code; a crystal whose
            decode already has its input's composition keeps that code and is neither refined nor
            restarted (only the others are). False: every code is refined first.
        encoder_fallback: checked refinement: where the first refined code fails its check, decode
            the encoder's own code before any restart and keep it where it comes closer to the
            input's composition (a refinement can lose an atom the encoder's code had); a crystal
            whose encoder code passes is not restarted. Costs one decode per failing crystal; moot
            with ``check_encoder`` or a budget, which decode the encoder's code first anyway.
        restart_patience: a crystal stops restarting after this many restarts in a row that did
            not bring its decoded composition closer to its input's (0: it takes all
            ``restarts``). Bounds the work spent on crystals a model cannot represent.
        lattice_fit: Gauss-Newton iterations that move each final code the least distance that
            makes its decoded cell the input's (:func:`fit_lattice`; 0: off). Checked codes keep
            the fitted code only where its crystal comes as close to the input's composition
            as the unfitted one (the field barely notices a move that small, but it is checked).
        max_cost: checked refinement: the work spent on a crystal's code stays within about this
            many times the work of decoding its encoder's code, counted in field queries
            (:mod:`nesf.encoding.checked`): a refinement or restart that would go beyond it is
            shortened or left out. 0 (the default): no bound, every step and restart. On `mp`
            validation crystals a bound of 5 costs about 14 points of match rate
            (``benchmarks/RESULTS.md``, "A budget for checked codes").
        uniform_queries: position queries drawn uniformly over the cell per crystal and step
            (0: training's ``uniform_per_crystal``); the queries around atoms are training's.
        atom_fit: checked refinement, periodic frame: the last fit also moves each code that
            passed the check so that the decoder's polished estimate of every input atom is that
            atom, keeping the field far from the atoms as it was
            (:func:`nesf.encoding.fit.fit_atoms_and_cell`, ``lattice_fit`` iterations). The
            fitted code is kept where its decode has the input's composition and atoms no
            farther from the input's; else half the move, checked the same way; else the cell
            fit alone. False: the cell alone is fitted.
        check_symmetry: checked refinement: after the last fit, a crystal whose decode, finished
            as the decoder finishes it (symmetrised), lacks its input's space group (spglib at
            0.1 A, as ``evaluate`` reports it) tries other codes: the cell fit alone and half the
            atom fit's move (where the atom fit was kept), then ``symmetry_restarts`` restarts
            from the code before the fit, each fitted again. The first that decodes to the
            input's composition and space group is kept; otherwise the code stays.
        symmetry_restarts: restarts of ``check_symmetry`` (each with its own query draws).
        solver: ``"adam"``: ``steps`` Adam steps of peak size ``lr`` on a cosine; ``"gauss_newton"``:
            ``steps`` (and ``restart_steps``) damped Gauss-Newton steps, each the solution of the
            objective's normal equations at freshly drawn queries
            (:func:`nesf.encoding.gauss_newton.gauss_newton_latents`; ``lr`` and ``restart_lr``
            unused). A Gauss-Newton step costs about four Adam steps.
        damping: Gauss-Newton damping, relative to the mean diagonal of each crystal's normal matrix.
        fit_encoder_code: with ``check_encoder`` and ``lattice_fit`` (and no ``atom_fit``), the
            encoder's code is fitted to its input's cell before its check, and a crystal that keeps
            it is neither fitted nor decoded again: one decode for each crystal the encoder gets
            right.
        fit_encoder_atoms: with ``fit_encoder_code`` and ``atom_fit``, the encoder's code is fitted
            to its input's atoms and cell (:func:`nesf.encoding.fit.fit_atoms_and_cell`) before its
            check instead of to the cell alone, and a crystal that keeps it is neither fitted nor
            decoded again: the atom fit at the price of its Gauss-Newton iterations, no decode.
        atom_fit_directions: queries per shell of the atom fit's polished estimates (the
            decoder polishes with its own number; 16 estimate the same mean closely enough for a
            Jacobian).
        restart_solver: the solver of the restarts of the composition check (``""``: ``solver``).
        symmetry_restart_steps: steps of each restart of the space-group check, which always uses
            ``solver`` (0: ``restart_steps``).
        precision_tolerance: checked refinement, periodic frame: after the space-group check, a
            crystal decoded to its input's composition whose input atoms sit on average farther
            than this (Angstrom) from the nearest atom of their element in the finished decode
            (symmetrised, as the user gets it) tries ``precision_restarts``
            restarts from the code before the last fit, the input atoms farther than this weighed
            ``missed_atom_weight`` times more, each fitted again; a code whose crystal keeps the
            composition (and the input's space group, where the kept one had it) with its atoms
            closer is kept. 0 (the default): no such check.
        precision_restarts: restarts of the precision check (each with its own query draws; 4,
            chosen on `mp` validation crystals with a 0.1 A tolerance).
    """

    steps: int = 30
    lr: float = 0.03
    lattice_weight: float = 10.0
    species_per_atom: int = 27
    batch_size: int = 64
    seed: int = 0
    restarts: int = 6
    restart_steps: int = 60
    restart_lr: float = 0.1
    position_weight: float = 1.0
    restart_position_weight: float = 4.0
    missed_atom_weight: float = 20.0
    restart_from: str = "closest"
    check_encoder: bool = False
    encoder_fallback: bool = False
    restart_patience: int = 0
    lattice_fit: int = 5
    max_cost: float = 0.0
    uniform_queries: int = 0
    atom_fit: bool = False
    check_symmetry: bool = False
    symmetry_restarts: int = 4
    solver: str = "adam"
    damping: float = 0.03
    fit_encoder_code: bool = False
    fit_encoder_atoms: bool = False
    atom_fit_directions: int = 16
    restart_solver: str = ""
    symmetry_restart_steps: int = 0
    precision_tolerance: float = 0.0
    precision_restarts: int = 4

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"refinement steps must not be negative, got {self.steps}")
        if self.lr <= 0 or self.lattice_weight < 0:
            raise ValueError("the refinement step size must be positive and the lattice weight not negative")
        if self.position_weight <= 0 or self.restart_position_weight <= 0:
            raise ValueError("the refinement's position weights must be positive")
        if self.species_per_atom < 1 or self.batch_size < 1:
            raise ValueError("species_per_atom and batch_size of the refinement must be at least 1")
        if self.missed_atom_weight < 1:
            raise ValueError(f"missed_atom_weight must be at least 1, got {self.missed_atom_weight}")
        if self.restart_from not in ("closest", "encoder", "last"):
            raise ValueError(f"restart_from must be 'closest', 'encoder' or 'last', got {self.restart_from!r}")
        if self.lattice_fit < 0:
            raise ValueError(f"lattice_fit must not be negative, got {self.lattice_fit}")
        if self.max_cost < 0 or self.uniform_queries < 0:
            raise ValueError(
                f"max_cost and uniform_queries must not be negative, got {self.max_cost} and {self.uniform_queries}"
            )
        if self.symmetry_restarts < 0:
            raise ValueError(f"symmetry_restarts must not be negative, got {self.symmetry_restarts}")
        if self.solver not in SOLVERS or self.restart_solver not in ("", *SOLVERS):
            raise ValueError(f"solver and restart_solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.symmetry_restart_steps < 0:
            raise ValueError(f"symmetry_restart_steps must not be negative, got {self.symmetry_restart_steps}")
        if self.precision_tolerance < 0 or self.precision_restarts < 0:
            raise ValueError(
                "precision_tolerance and precision_restarts must not be negative, "
                f"got {self.precision_tolerance} and {self.precision_restarts}"
            )
        if self.atom_fit_directions < 1:
            raise ValueError(f"atom_fit_directions must be at least 1, got {self.atom_fit_directions}")
        if self.damping <= 0:
            raise ValueError(f"damping must be positive, got {self.damping}")
        if self.restart_patience < 0:
            raise ValueError(f"restart_patience must not be negative, got {self.restart_patience}")
        if self.restarts < 0 or self.restart_steps < 1 or self.restart_lr <= 0:
            raise ValueError("restarts must not be negative, and each restart needs at least one step of positive size")

    def restart(self, k: int) -> RefineSettings:
        """The settings of restart ``k`` (1, 2, ...): its own query draws, steps, step size and position weight."""
        return replace(
            self,
            steps=self.restart_steps,
            lr=self.restart_lr,
            seed=self.seed + k,
            restarts=0,
            position_weight=self.restart_position_weight,
            check_encoder=False,
            encoder_fallback=False,
            solver=self.restart_solver or self.solver,
        )

    def symmetry_restart(self, k: int) -> RefineSettings:
        """The settings of a restart of the space-group check: restart ``k``'s, with ``solver`` and its own steps."""
        return replace(self.restart(k), solver=self.solver, steps=self.symmetry_restart_steps or self.restart_steps)

    def to_dict(self) -> dict:
        """Plain dict (for JSON)."""
        return asdict(self)


#: The plain encoder (no refinement): what the paper does, and what latent priors are fitted to.
NO_REFINEMENT = RefineSettings(steps=0, restarts=0, check_encoder=False)


def refine_latents(
    model: NeSFModel,
    batch: CrystalBatch,
    z0: torch.Tensor,
    train_cfg: TrainConfig,
    settings: RefineSettings,
    bbox: np.ndarray | None = None,
    atom_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Latent codes ``[B, D]`` refined on the exact fields of the crystals of ``batch``.

    Args:
        model: the trained network (left unchanged; only the codes move).
        batch: the crystals, in the setting the network sees.
        z0: ``[B, D]`` their encoded codes (the starting point).
        train_cfg: the model's training configuration (query sampling and loss weights).
        settings: steps, step size and lattice weight.
        bbox: paper frame: the ``[2, 3]`` particle domain (Angstrom); None in the periodic frame.
        atom_weights: ``[B, N]`` weights of the queries drawn around each atom of ``batch``
            (position and species; global queries weigh 1), or None for all 1: each crystal's
            terms are then weighted means over its queries.

    Returns:
        ``[B, D]`` refined codes (detached); ``z0`` itself when ``settings.steps`` is 0.
    """
    if settings.steps == 0:
        return z0
    if settings.solver == "gauss_newton":
        from nesf.encoding.gauss_newton import gauss_newton_latents

        return gauss_newton_latents(model, batch, z0, train_cfg, settings, bbox, atom_weights)
    frame = model.frame
    cfg, sampler = refinement_sampler(train_cfg, settings, frame, bbox)
    generator = torch.Generator().manual_seed(settings.seed)
    inverse = torch.linalg.inv(batch.lattice) if frame.periodic else None
    lattice_true = model.normalize_lattice(batch.lattice_params)
    w_length = cfg.w_length * settings.lattice_weight
    w_angle = cfg.w_angle * settings.lattice_weight
    z = z0.detach().clone().requires_grad_(True)
    adam = LatentAdam(z)
    with torch.enable_grad():
        for step in range(settings.steps):
            lr = settings.lr * 0.5 * (1.0 + math.cos(math.pi * step / settings.steps))
            s = sampler.sample(batch, generator)
            pos = model.position_field(model.position_decoder.latent_part(z), s.pos_points, s.pos_index, inverse)
            logits = model.species_field(model.species_decoder.latent_part(z), s.spec_points, s.spec_index, inverse)
            lattice = model.lattice_normalized(z)
            # each crystal's own objective (means over its own queries), summed: a code's
            # gradient does not depend on the other crystals of the batch
            pos_w, spec_w = query_weights(atom_weights, s)
            pos_err = _per_crystal_mean((pos - s.pos_target).pow(2).mean(dim=1), s.pos_index, len(z), pos_w)
            spec_err = _per_crystal_mean(
                F.cross_entropy(logits, s.spec_target, reduction="none"), s.spec_index, len(z), spec_w
            )
            loss = (
                cfg.w_position * settings.position_weight * pos_err
                + cfg.w_species * spec_err
                + w_length * (lattice[:, :3] - lattice_true[:, :3]).pow(2).mean(dim=1)
                + w_angle * (lattice[:, 3:] - lattice_true[:, 3:]).pow(2).mean(dim=1)
            ).sum()
            (grad,) = torch.autograd.grad(loss, [z])
            adam.step(grad, lr)
    return z.detach()


#: Damping of the Gauss-Newton steps of :func:`fit_lattice` (normalised lattice units squared).
LATTICE_FIT_DAMPING = 1e-6

#: Largest move of a code by :func:`fit_lattice`, as a fraction of the code's norm. A cell the
#: heads cannot make (a hexagonal cell for a model trained on cubic perovskites) needs a move of
#: several code norms and leads to a code whose field is noise; such codes are left as they were.
#: Fits of in-domain crystals move codes by 1-3 % (99th percentile 5-9 %, encoder codes of mp
#: train, lim_l6 val and icsg3d val).
LATTICE_FIT_MAX_MOVE = 0.25


def fit_lattice(model: NeSFModel, z: torch.Tensor, target: torch.Tensor, iterations: int) -> torch.Tensor:
    """Codes ``[B, D]`` moved the least distance that makes the decoded cells ``target``.

    Each iteration linearises the lattice heads around the codes (``J``: ``[B, 6, D]``, from six
    backward passes) and takes the minimum-norm step ``J^T (J J^T + lambda I)^-1 r`` that removes
    the residual ``r`` ``[B, 6]`` between ``target`` and the decoded normalised lattice
    parameters. Six numbers per crystal against a code of ``D``: the heads can match in-domain
    cells, and the smallest move leaves the fields as they were (the check decodes the result).

    Args:
        model: the network (unchanged).
        z: ``[B, D]`` codes.
        target: ``[B, 6]`` normalised lattice parameters (:meth:`NeSFModel.normalize_lattice`).
        iterations: Gauss-Newton iterations (0: ``z`` unchanged).

    Returns:
        ``[B, D]`` fitted codes; a code whose fit would move it farther than
        :data:`LATTICE_FIT_MAX_MOVE` of its norm is returned unchanged.
    """
    if iterations == 0 or len(z) == 0:
        return z
    start = z.detach()
    eye = torch.eye(target.shape[1], dtype=z.dtype, device=z.device)
    for _ in range(iterations):
        with torch.enable_grad():
            zz = z.detach().clone().requires_grad_(True)
            out = model.lattice_normalized(zz)  # [B, 6]
            rows = [
                torch.autograd.grad(out[:, k].sum(), zz, retain_graph=k < out.shape[1] - 1)[0]
                for k in range(out.shape[1])
            ]  # each [B, D]: the crystals' codes do not interact
        jac = torch.stack(rows, dim=1)  # [B, 6, D]
        residual = (target - out.detach()).unsqueeze(-1)  # [B, 6, 1]
        gram = jac @ jac.transpose(1, 2) + LATTICE_FIT_DAMPING * eye  # [B, 6, 6]
        z = z + (jac.transpose(1, 2) @ torch.linalg.solve(gram, residual)).squeeze(-1)
    z = z.detach()
    too_far = ~((z - start).norm(dim=1) <= LATTICE_FIT_MAX_MOVE * start.norm(dim=1))  # NaN counts as too far
    return torch.where(too_far[:, None], start, z)


class LatentAdam:
    """Adam (betas 0.9 / 0.999, eps 1e-8, no weight decay) on one tensor, step by step.

    The same arithmetic as ``torch.optim.Adam``'s single-tensor update, so codes come out the
    same; written out because constructing a ``torch.optim`` optimiser first imports
    ``torch._dynamo``, which costs a one-crystal command seconds of start-up.
    """

    def __init__(self, param: torch.Tensor, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.param, self.betas, self.eps = param, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: float) -> None:
        """One update of the tensor with gradient ``grad`` and step size ``lr``."""
        beta1, beta2 = self.betas
        self.steps += 1
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1**self.steps)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - beta2**self.steps)).add_(self.eps)
        self.param.addcdiv_(self.exp_avg, denom, value=-step_size)


def refinement_sampler(
    train_cfg: TrainConfig, settings: RefineSettings, frame: Frame, bbox: np.ndarray | None
) -> tuple[TrainConfig, QuerySampler]:
    """The training configuration with the refinement's query counts, and the refinement's sampler.

    Its jitters are shared by a crystal's atoms: the same queries in any atom order and whatever
    else is in the batch.
    """
    cfg = replace(train_cfg, species_per_atom=settings.species_per_atom)
    if settings.uniform_queries:
        cfg = replace(cfg, uniform_per_crystal=settings.uniform_queries)
    return cfg, QuerySampler(cfg, frame, bbox, shared_jitter=True)


def query_weights(
    atom_weights: torch.Tensor | None, s: FieldSamples
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Weights ``[Tp]`` and ``[Ts]`` of the position and species queries (None: all 1)."""
    if atom_weights is None:
        return None, None
    local = s.pos_atom >= 0
    pos_w = torch.ones(len(s.pos_index), dtype=atom_weights.dtype, device=atom_weights.device)
    pos_w[local] = atom_weights[s.pos_index[local], s.pos_atom[local]]
    return pos_w, atom_weights[s.spec_index, s.spec_atom]


def _per_crystal_mean(
    values: torch.Tensor, index: torch.Tensor, n: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B]`` (weighted) means of ``values [Q]`` over the queries of each crystal (``index [Q]``)."""
    w = torch.ones_like(values) if weights is None else weights.to(values.dtype)
    total = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, index, values * w)
    count = torch.zeros(n, dtype=values.dtype, device=values.device).index_add(0, index, w)
    return total / count.clamp_min(1e-12)
