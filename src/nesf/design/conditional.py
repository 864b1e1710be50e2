"""Conditional sampling: codes drawn from a model's latent prior, kept when a property head puts them near a target.

Codes are drawn in batches from the prior (:class:`~nesf.generation.prior.LatentPrior`) and
kept when the head's mean lies within ``tolerance`` of ``target`` (and, optionally, its spread
below ``max_spread``) until ``n`` are kept or ``max_draws`` were drawn. With ``guidance`` > 0
the prior's flow is steered while it is integrated: each Heun step also moves the whitened
coordinates down the gradient of the head's squared distance to the target (in units of the
head's target deviation), scaled by ``guidance`` and the step length, so more draws land near
the target. The kept codes are decoded; the independent evaluator then says how many of the
crystals really lie within tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nesf.data.crystal import Crystal
from nesf.design.features import reduced_formula
from nesf.design.head import PropertyHead
from nesf.design.optimize import _decode, _species_mask, check_crystals


@dataclass
class ConditionalSettings:
    """What conditional sampling keeps.

    Attributes:
        target: the property value wanted (the head's units).
        tolerance: how far from it a kept code's prediction may lie.
        n: codes to deliver.
        batch: codes drawn at a time.
        max_draws: stop after this many draws even if fewer than ``n`` were kept.
        guidance: strength of the head's pull during the prior's integration (0: plain prior).
        temperature: the prior's noise scale.
        max_spread: keep only codes whose ensemble spread is at most this (None: any).
        elements: allowed elements when decoding (None: all).
    """

    target: float
    tolerance: float = 0.1
    n: int = 200
    batch: int = 1000
    max_draws: int = 200_000
    guidance: float = 0.0
    temperature: float = 1.0
    max_spread: float | None = None
    elements: tuple[str, ...] | None = None


@dataclass
class ConditionalResult:
    """Delivered codes and crystals.

    Attributes:
        codes: kept codes ``[N, D]``.
        predicted: the head's mean of each ``[N]``.
        spread: its spread ``[N]``.
        crystals: the decoded crystals ``[N]``.
        valid: CDVAE validity of each ``[N]``.
        formulas: reduced formulas ``[N]``.
        n_drawn: codes drawn to deliver them.
        scores: the evaluator's scores ``[N]`` once scored (NaN for crystals without atoms).
    """

    codes: torch.Tensor
    predicted: np.ndarray
    spread: np.ndarray
    crystals: list[Crystal]
    valid: np.ndarray
    formulas: list[str]
    n_drawn: int
    scores: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self, tolerance: float, target: float) -> dict[str, Any]:
        """Counts and shares: delivered, drawn, acceptance, unique formulas, validity, evaluator within tolerance."""
        n = len(self.crystals)
        formulas = [f for f in self.formulas if f]
        out: dict[str, Any] = {
            "target": target,
            "tolerance": tolerance,
            "n_delivered": n,
            "n_drawn": self.n_drawn,
            "acceptance_pct": 100.0 * n / self.n_drawn if self.n_drawn else 0.0,
            "n_unique_formulas": len(set(formulas)),
            "validity_pct": 100.0 * float(self.valid.mean()) if n else 0.0,
            "head_mean": float(np.mean(self.predicted)) if n else None,
        }
        if self.scores is not None and n:
            inside = np.isfinite(self.scores) & (np.abs(self.scores - target) <= tolerance)
            out["within_tolerance_pct"] = 100.0 * float(inside.mean())
            out["within_tolerance_valid_pct"] = 100.0 * float((inside & self.valid).mean())
            out["evaluator_mean"] = float(np.nanmean(self.scores)) if np.isfinite(self.scores).any() else None
        return out


def guided_draw(
    prior: Any, head: PropertyHead, n: int, seed: int, target: float, guidance: float, temperature: float = 1.0
) -> torch.Tensor:
    """``n`` codes ``[n, D]`` from the prior's flow, pulled towards ``target`` by the head (``guidance`` 0: plain)."""
    if not guidance:
        return prior.sample(n, seed=seed, temperature=temperature)
    steps = prior.cfg.steps
    g = torch.Generator().manual_seed(seed)
    x = temperature * torch.randn(n, prior.basis.shape[1], generator=g)
    dt = 1.0 / steps

    def pull(xc: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xg = xc.detach().requires_grad_(True)
            mean, _ = head(prior.to_codes(xg))
            loss = (((mean - target) / head.y_std) ** 2).sum()
            return torch.autograd.grad(loss, xg)[0]

    with torch.no_grad():
        for k in range(steps):
            t = torch.full((n,), k * dt)
            v0 = prior.velocity(x, t)
            x1 = x + dt * v0
            v1 = prior.velocity(x1, t + dt)
            x = x + 0.5 * dt * (v0 + v1)
            if k >= steps // 2:  # steer once the flow has laid out the crystal's coarse features
                x = x - guidance * dt * pull(x)
    return prior.to_codes(x)


def conditional_sample(
    nesf: Any,
    head: PropertyHead,
    settings: ConditionalSettings,
    prior: Any = None,
    seed: int = 0,
    progress: bool = False,
) -> ConditionalResult:
    """Draw codes from the prior until ``settings.n`` lie within tolerance by the head; decode them.

    Args:
        nesf: the :class:`~nesf.api.NeSF` model (its shipped prior unless ``prior`` is given).
        head: a property head of that model's codes.
        settings: target, tolerance, numbers.
        prior: a latent prior or prior file (default: the model's).
        seed: seeds the draws (batch ``b`` uses ``seed + b``).
        progress: show a progress bar over the kept codes.
    """
    if settings.n < 1 or settings.batch < 1:
        raise ValueError(f"n and batch must be at least 1, got {settings.n} and {settings.batch}")
    if not settings.tolerance > 0:
        raise ValueError(f"the tolerance must be positive, got {settings.tolerance}")
    lat_prior = nesf.prior(prior)
    head = head.eval().requires_grad_(False)
    mask = _species_mask(nesf, settings.elements)
    kept: list[torch.Tensor] = []
    n_kept, drawn, b = 0, 0, 0
    with tqdm(total=settings.n, desc="conditional sampling", unit="crystal", disable=not progress) as bar:
        while n_kept < settings.n and drawn < settings.max_draws:
            size = min(settings.batch, settings.max_draws - drawn)
            z = guided_draw(lat_prior, head, size, seed + b, settings.target, settings.guidance, settings.temperature)
            drawn, b = drawn + size, b + 1
            with torch.no_grad():
                mean, spread = head(z)
            ok = (mean - settings.target).abs() <= settings.tolerance
            if settings.max_spread is not None:
                ok &= spread <= settings.max_spread
            take = z[ok][: settings.n - n_kept]
            if len(take):
                kept.append(take)
                n_kept += len(take)
                bar.update(len(take))
    codes = torch.cat(kept) if kept else torch.zeros(0, head.cfg.latent_dim)
    crystals = _decode(nesf, codes, [f"sample-{i:05d}" for i in range(len(codes))], mask) if len(codes) else []
    mean, spread = head.predict(codes) if len(codes) else (np.zeros(0), np.zeros(0))
    return ConditionalResult(
        codes=codes,
        predicted=mean,
        spread=spread,
        crystals=crystals,
        valid=check_crystals(crystals),
        formulas=[reduced_formula(c) for c in crystals],
        n_drawn=drawn,
        settings={k: getattr(settings, k) for k in settings.__dataclass_fields__},
    )


def score_conditional(result: ConditionalResult, evaluator: Any) -> np.ndarray:
    """The evaluator's scores ``[N]`` of the delivered crystals (stored in ``result``)."""
    result.scores = evaluator.predict(result.crystals) if result.crystals else np.zeros(0)
    return result.scores


__all__ = ["ConditionalResult", "ConditionalSettings", "conditional_sample", "guided_draw", "score_conditional"]
