"""Success rates of property optimisation (CDVAE's SR5 / SR10 / SR15) and the published thresholds.

A start succeeds at a threshold when the best score of its decoded crystals (the lowest, for
minimisation; invalid or disallowed crystals count as never scoring) lies at or below the
threshold; SR is the share of starts that succeed. CDVAE's thresholds are the 5th, 10th and
15th percentiles of the property over its full training split, as scored in its
``scripts/compute_metrics.py`` (``Percentiles``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: CDVAE's 5th / 10th / 15th percentiles of the training property, by model and target.
CDVAE_PERCENTILES: dict[tuple[str, str], tuple[float, float, float]] = {
    ("perov_5", "heat_ref"): (0.43924842, 0.61202443, 0.7364607),
    ("carbon_24", "energy_per_atom"): (-154.527093, -154.45865733, -154.44206825),
}
#: Success rates CDVAE's paper reports (SR5, SR10, SR15) for comparison, by data set and method.
PUBLISHED_SR: dict[str, dict[str, tuple[float, float, float]]] = {
    "perov_5": {"CDVAE": (0.52, 0.65, 0.79), "Cond-DFC-VAE": (0.55, 0.64, 0.69), "FTCP": (0.06, 0.11, 0.16)},
    "carbon_24": {"CDVAE": (0.00, 0.06, 0.06)},
}


def best_scores(scores: np.ndarray, minimize: bool = True) -> np.ndarray:
    """Each start's best score ``[S]`` over its path ``scores`` ``[K, S]`` (NaN entries never count; inf if none)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [K steps, S starts], got shape {list(scores.shape)}")
    if minimize:
        return np.where(np.isnan(scores), np.inf, scores).min(axis=0)
    return np.where(np.isnan(scores), -np.inf, scores).max(axis=0)


def success_rates(
    scores: np.ndarray,
    thresholds: Sequence[float],
    minimize: bool = True,
    names: Sequence[str] = ("sr5", "sr10", "sr15"),
) -> dict[str, float]:
    """Share of starts whose best score reaches each threshold (``<=`` when minimising, ``>=`` otherwise).

    Args:
        scores: ``[K, S]`` scores of each start's decoded crystals (NaN: invalid, not scored).
        thresholds: one threshold per rate.
        minimize: lower is better.
        names: the keys of the rates.
    """
    best = best_scores(scores, minimize)
    if len(thresholds) != len(names):
        raise ValueError(f"need one name per threshold, got {len(names)} names for {len(thresholds)} thresholds")
    if best.size == 0:
        return {n: 0.0 for n in names}
    reach = (lambda t: best <= t) if minimize else (lambda t: best >= t)
    return {n: float(reach(t).mean()) for n, t in zip(names, thresholds)}


def percentile_thresholds(values: np.ndarray, minimize: bool = True) -> tuple[float, float, float]:
    """5th / 10th / 15th percentiles of training values (95th / 90th / 85th when maximising)."""
    qs = (5, 10, 15) if minimize else (95, 90, 85)
    v = np.asarray(values, dtype=float)
    return tuple(float(np.percentile(v[np.isfinite(v)], q)) for q in qs)  # type: ignore[return-value]


__all__ = ["CDVAE_PERCENTILES", "PUBLISHED_SR", "best_scores", "percentile_thresholds", "success_rates"]
