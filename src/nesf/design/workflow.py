"""Design with a model's latent space, end to end: fit a head, predict, optimise, sample conditionally.

Latent heads read the encoder's own codes (``refine_steps=0``): they are what the prior models and
what the optimisation starts from, they take milliseconds per crystal, and the same crystal
always gets the same code. Crystal heads (:mod:`nesf.design.crystal_head`) read the crystal's
site table instead; they predict given crystals better and cannot steer codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nesf.data.crystal import Crystal
from nesf.design.crystal_head import CrystalHead, CrystalHeadConfig, fit_crystal_head
from nesf.design.data import targets
from nesf.design.features import reduced_formula
from nesf.design.head import HeadConfig, PropertyHead, fit_head
from nesf.design.optimize import OptimizeResult, OptimizeSettings, optimize_codes, score_result
from nesf.design.registry import describe_source, model_name, resolve_head_path
from nesf.design.success import CDVAE_PERCENTILES, best_scores, success_rates
from nesf.errors import CheckpointError

#: What a head can read.
READS = ("latent", "crystal")
#: Units of the shared data sets' properties. perov_5's heats of formation are those of the
#: whole 5-atom cell (Castelli et al.'s data, as matbench_perovskites states: eV/unit cell).
UNITS = {
    "heat_ref": "eV/cell",
    "heat_all": "eV/cell",
    "dir_gap": "eV",
    "ind_gap": "eV",
    "energy_per_atom": "eV/atom",
    "formation_energy_per_atom": "eV/atom",
    "band_gap": "eV",
    "e_above_hull": "eV/atom",
}


def design_codes(nesf: Any, crystals: Sequence[Crystal], batch_size: int = 256) -> torch.Tensor:
    """The codes ``[N, D]`` heads read: the encoder's own (``refine_steps=0``) of crystals in the model's frame."""
    plain = nesf.with_refinement(steps=0) if hasattr(nesf, "with_refinement") else nesf
    return plain.encode_crystals(list(crystals), batch_size=batch_size).detach().cpu()


def fit_property(
    nesf: Any,
    train: Any,
    target: str,
    val: Any = None,
    cfg: HeadConfig | CrystalHeadConfig | None = None,
    seed: int = 0,
    units: str | None = None,
    train_source: str | Path | None = None,
    val_source: str | Path | None = None,
    reads: str = "latent",
    progress: bool = False,
) -> PropertyHead | CrystalHead:
    """Fit a property head for ``target``: on ``nesf``'s codes, or on the crystals' site tables.

    Args:
        nesf: the :class:`~nesf.api.NeSF` model.
        train: training crystals (objects or a file path; see :meth:`NeSF.prepare`) carrying
            ``target`` in ``crystal.info["properties"]`` (or in the CSV column ``target``).
        target: the property's name.
        val: optional validation crystals (same forms); their MAE and R^2 go into the card.
        cfg: head architecture and training.
        seed: seeds the fit.
        units: the property's units (default: known for the shared data sets' properties).
        train_source: the training file, for the card and the CSV fallback (default: ``train``
            when it is a path).
        val_source: the same for ``val``.
        reads: ``"latent"`` (a :class:`PropertyHead` on the encoder's codes: what optimisation
            and conditional sampling steer) or ``"crystal"`` (a :class:`CrystalHead` on the
            crystals, in the model's setting, as :meth:`NeSF.prepare` gives them).
        progress: show a progress bar (crystal heads).

    Raises:
        CrystalInputError: a crystal carries no numeric value of ``target``.
        ValueError: ``reads`` is neither ``"latent"`` nor ``"crystal"``.
    """
    if reads not in READS:
        raise ValueError(f"a head reads one of {', '.join(READS)}, got {reads!r}")
    train_source = train_source or (train if isinstance(train, (str, Path)) else None)
    val_source = val_source or (val if isinstance(val, (str, Path)) else None)
    crystals = nesf.prepare(train)
    y = targets(crystals, target, train_source)
    val_crystals = nesf.prepare(val) if val is not None else None
    val_y = targets(val_crystals, target, val_source) if val_crystals is not None else None
    card = {
        "target": target,
        "units": units if units is not None else UNITS.get(target, ""),
        "model": model_name(nesf.info.get("source")),
        "model_sha256": nesf.info.get("sha256"),
        "train_data": str(train_source) if train_source else "crystals given in Python",
        "val_data": str(val_source) if val_source else (None if val is None else "crystals given in Python"),
    }
    if reads == "crystal":
        card["reads"] = "crystal (site tables of the crystals in the model's setting)"
        ccfg = cfg if isinstance(cfg, CrystalHeadConfig) else None
        val_pair = (val_crystals, val_y) if val_crystals is not None else None
        head, _ = fit_crystal_head(crystals, y, ccfg, seed=seed, val=val_pair, card=card, progress=progress)
        return head
    card["codes"] = "encoder (refine_steps=0)"
    z = design_codes(nesf, crystals)
    val_codes = (design_codes(nesf, val_crystals), torch.as_tensor(val_y)) if val_crystals is not None else None
    lcfg = cfg if isinstance(cfg, HeadConfig) else HeadConfig(latent_dim=z.shape[1])
    latent_head, _ = fit_head(z, torch.as_tensor(y), lcfg, seed=seed, val=val_codes, card=card)
    return latent_head


def load_any_head(path: str | Path) -> PropertyHead | CrystalHead:
    """A latent or crystal head from its file, by the ``kind`` the checkpoint records.

    Raises:
        CheckpointError: missing, corrupted, or not a property head of either kind.
    """
    from nesf.design.crystal_head import KIND as CRYSTAL_KIND
    from nesf.design.crystal_head import crystal_head_from_checkpoint
    from nesf.design.head import head_from_checkpoint
    from nesf.training.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    if ck.get("kind") == CRYSTAL_KIND:
        return crystal_head_from_checkpoint(ck, source=str(path))
    return head_from_checkpoint(ck, source=str(path))


def as_head(head: Any, nesf: Any = None, reads: str = "latent") -> PropertyHead | CrystalHead:
    """A head from a head object, a head file, or a shipped head's target name (with ``nesf``'s model).

    Args:
        head: the head, its file, or a target name.
        nesf: the model whose codes a latent head reads (checked against the head's card).
        reads: what the caller needs: ``"latent"`` (a head that can steer codes; a crystal
            head is refused), ``"crystal"`` or ``"auto"`` (either; a target name means the
            shipped crystal head where there is one).

    Raises:
        CheckpointError: no such head, a head of another model (its card's SHA-256 differs), or
            a crystal head where a latent one is needed.
    """
    if not isinstance(head, (PropertyHead, CrystalHead)):
        model = model_name(nesf.info.get("source")) if nesf is not None else None
        head = load_any_head(resolve_head_path(head, model, reads=reads))
    if isinstance(head, CrystalHead):
        if reads == "latent":
            raise CheckpointError(
                f"{head.card.get('source', 'head')}: this head reads crystals, not latent codes, so it cannot steer "
                "codes; fit a latent head with 'nesf fit-property --reads latent'"
            )
        return head
    if reads == "crystal":
        raise CheckpointError(f"{head.card.get('source', 'head')}: this head reads latent codes, not crystals")
    if nesf is not None:
        fitted_to, this = head.card.get("model_sha256"), nesf.info.get("sha256")
        if fitted_to and this and fitted_to != this:
            raise CheckpointError(
                f"{head.card.get('source', 'head')}: this head was fitted to another model (checkpoint SHA-256 "
                f"{fitted_to[:12]}..., this one {this[:12]}...); fit it again with 'nesf fit-property'"
            )
        if head.cfg.latent_dim != nesf.latent_dim:
            raise CheckpointError(
                f"{head.card.get('source', 'head')}: reads codes of {head.cfg.latent_dim} numbers, the model has "
                f"{nesf.latent_dim}"
            )
    return head


def predict_prepared(
    nesf: Any, crystals: Sequence[Crystal], head: PropertyHead | CrystalHead
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread ``[N]`` (the head's units) of crystals already in ``nesf``'s setting."""
    if isinstance(head, CrystalHead):
        return head.predict_crystals(crystals)
    return head.predict(design_codes(nesf, crystals))


def predict(nesf: Any, structures: Any, head: Any, reads: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Mean and spread ``[N]`` (the head's units) of structures (objects or paths) by a head of ``nesf``.

    ``reads`` (for a target name): ``"auto"`` uses the shipped crystal head where there is
    one, ``"latent"`` / ``"crystal"`` ask for that kind.
    """
    h = as_head(head, nesf, reads=reads)
    return predict_prepared(nesf, nesf.prepare(structures), h)


def optimize(
    nesf: Any,
    head: Any,
    starts: Sequence[Crystal],
    settings: OptimizeSettings | None = None,
    evaluator: Any = None,
    thresholds: Sequence[float] | None = None,
    progress: bool = False,
) -> tuple[OptimizeResult, dict[str, Any]]:
    """Optimise the codes of ``starts`` (crystals in the model's frame) and score the paths.

    Args:
        nesf: the model.
        head: the head (object, file or shipped target name).
        starts: the starting crystals.
        settings: the protocol (default: CDVAE's, with the trust region).
        evaluator: an :class:`~nesf.design.evaluator.Evaluator` scoring decoded crystals.
        thresholds: SR thresholds (default: CDVAE's for the shipped models' targets).
        progress: show a progress bar.

    Returns:
        The paths, and a summary: starts, validity, the head's and evaluator's best values, and
        SR5 / SR10 / SR15 when thresholds are known and the goal is to minimise. The starting
        code's decode (step 0) is recorded in the paths but never counts towards success.
    """
    s = settings or OptimizeSettings()
    h = as_head(head, nesf)
    z0 = design_codes(nesf, starts)
    formulas = [reduced_formula(c) for c in starts]
    result = optimize_codes(nesf, h, z0, s, [c.id for c in starts], formulas, progress=progress)
    summary: dict[str, Any] = {
        "n_starts": len(starts),
        "goal": s.goal,
        "target": h.target,
        "units": h.card.get("units", ""),
        "steps": s.steps,
        "save_every": s.save_every,
        "trust_region": s.trust,
        "decoded_per_start": len(result.steps) - 1,
        "valid_pct": 100.0 * float(result.valid[1:].mean()) if len(result.steps) > 1 else None,
        "allowed_pct": 100.0 * float(result.allowed[1:].mean()) if len(result.steps) > 1 else None,
        "head_start_mean": float(result.predicted[0].mean()),
        "head_final_mean": float(result.predicted[-1].mean()),
    }
    if evaluator is not None:
        scores = score_result(result, evaluator)
        path_scores = scores[1:]
        minimize = s.goal == "minimize"
        summary["evaluator"] = describe_source(evaluator.card.get("source")) or evaluator.card.get("method")
        summary["evaluator_mae"] = evaluator.card.get("heldout_mae")
        summary["evaluator_start_mean"] = float(np.nanmean(scores[0])) if np.isfinite(scores[0]).any() else None
        best = best_scores(path_scores, minimize)
        summary["evaluator_best_mean"] = float(best[np.isfinite(best)].mean()) if np.isfinite(best).any() else None
        key = (model_name(nesf.info.get("source")), h.target)
        thresholds = thresholds if thresholds is not None else CDVAE_PERCENTILES.get(key)  # type: ignore[arg-type]
        if thresholds is not None and s.goal != "target":
            summary["thresholds"] = list(thresholds)
            summary.update(success_rates(path_scores, thresholds, minimize))
            summary["start_rates"] = success_rates(scores[:1], thresholds, minimize)
    return result, summary


__all__ = [
    "READS",
    "UNITS",
    "as_head",
    "design_codes",
    "fit_property",
    "load_any_head",
    "optimize",
    "predict",
    "predict_prepared",
]
