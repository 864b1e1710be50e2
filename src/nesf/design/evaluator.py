"""Independent evaluators: a property scored from composition and structure features, never from latent codes.

Designed crystals are scored by a model that shares nothing with the head that steered them:
gradient-boosted trees (or a random forest) on :mod:`nesf.design.features`, fitted with
scikit-learn on the training split only, and stored as plain arrays in an nesf checkpoint
(``kind`` ``"property_evaluator"``; :mod:`nesf.design.trees`), so no pickled object is ever
loaded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nesf.data.crystal import Crystal
from nesf.design.features import crystal_features
from nesf.design.head import regression_metrics
from nesf.design.trees import TreeEnsemble, export_trees
from nesf.errors import CheckpointError

#: The checkpoint ``kind`` of an evaluator.
KIND = "property_evaluator"
#: Regressors an evaluator can be fitted with.
METHODS = ("gbr", "rf")


class Evaluator:
    """A property predicted from a crystal's composition and structure features.

    Args:
        trees: the fitted trees.
        composition: whether the features start with the 132 Magpie composition features.
        card: description (target, units, method, training data and size, held-out MAE).
        sites: site-table rows read after the structure features (0: none).
    """

    def __init__(
        self, trees: TreeEnsemble, composition: bool = True, card: dict[str, Any] | None = None, sites: int = 0
    ) -> None:
        self.trees = trees
        self.composition = composition
        self.sites = sites
        self.card: dict[str, Any] = dict(card or {})

    @property
    def target(self) -> str:
        """Name of the property."""
        return str(self.card.get("target", "property"))

    def features(self, crystals: Sequence[Crystal]) -> np.ndarray:
        """The features ``[N, F]`` this evaluator reads."""
        return crystal_features(crystals, self.composition, self.sites)

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Predictions ``[N]`` (property units) of feature rows ``[N, F]``."""
        if len(x) == 0:
            return np.zeros(0)
        return self.trees.predict(x)

    def predict(self, crystals: Sequence[Crystal]) -> np.ndarray:
        """Predictions ``[N]`` (property units) of crystals; NaN for crystals without atoms."""
        crystals = list(crystals)
        out = np.full(len(crystals), np.nan)
        ok = [i for i, c in enumerate(crystals) if c.n_atoms > 0]
        if ok:
            out[ok] = self.predict_features(self.features([crystals[i] for i in ok]))
        return out


def fit_evaluator(
    crystals: Sequence[Crystal] | None,
    targets: np.ndarray,
    method: str = "gbr",
    composition: bool = True,
    seed: int = 0,
    features: np.ndarray | None = None,
    card: dict[str, Any] | None = None,
    sites: int = 0,
) -> Evaluator:
    """Fit an :class:`Evaluator` on crystals (or their precomputed features ``[N, F]``) and targets ``[N]``.

    Args:
        crystals: training crystals (ignored when ``features`` is given).
        targets: their property values ``[N]``.
        method: ``"gbr"`` (gradient-boosted trees, squared error,
            600 trees of depth 6) or ``"rf"`` (a random forest of 300 trees).
        composition: read the Magpie composition features as well as the structure ones.
        seed: seeds the regressor.
        features: precomputed :func:`~nesf.design.features.crystal_features` rows (with the
            same ``composition`` and ``sites``).
        card: description stored with it (target, units, data); the size and seconds are added.
        sites: also read the first ``sites`` rows of each crystal's site table (which element
            on which site; :mod:`nesf.design.sites`).

    Raises:
        ValueError: unknown method, or features and targets that disagree in number.
    """
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    if method not in METHODS:
        raise ValueError(f"unknown evaluator method {method!r}; choose one of {', '.join(METHODS)}")
    x = crystal_features(list(crystals or []), composition, sites) if features is None else np.asarray(features, float)
    y = np.asarray(targets, dtype=float).reshape(-1)
    if len(x) != len(y) or len(y) < 2:
        raise ValueError(f"need features and targets of the same number (>= 2), got {len(x)} and {len(y)}")
    fill = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
    fill = np.nan_to_num(fill, nan=0.0)
    xf = np.where(np.isnan(x), fill[None, :], x)
    start = time.monotonic()
    if method == "gbr":
        reg = GradientBoostingRegressor(
            n_estimators=600,
            max_depth=6,
            learning_rate=0.03,
            subsample=0.8,
            max_features=0.5,
            min_samples_leaf=3,
            random_state=seed,
        )
    else:
        reg = RandomForestRegressor(
            n_estimators=300, min_samples_leaf=1, max_features=0.33, random_state=seed, n_jobs=1
        )
    reg.fit(xf, y)
    trees = export_trees(reg, fill)
    info = dict(card or {})
    info.update(
        {
            "method": method,
            "n_train": len(y),
            "fit_seconds": round(time.monotonic() - start, 1),
            "composition_features": composition,
            "site_rows": sites,
            "n_features": int(x.shape[1]),
            "seed": seed,
        }
    )
    return Evaluator(trees, composition, info, sites)


def evaluate_evaluator(evaluator: Evaluator, features: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Held-out MAE, RMSE and R^2 of an evaluator on feature rows ``[N, F]``; also written into its card."""
    metrics = regression_metrics(evaluator.predict_features(features), targets)
    evaluator.card.update({f"heldout_{k}": v for k, v in metrics.items()})
    return metrics


def save_evaluator(path: str | Path, evaluator: Evaluator) -> Path:
    """Write an evaluator checkpoint atomically (tensors and plain data; SHA-256; ``weights_only=True``)."""
    from nesf.training.checkpoint import save_checkpoint

    t = evaluator.trees
    return save_checkpoint(
        path,
        {
            "kind": KIND,
            "model_config": {
                "combine": t.combine,
                "base": t.base,
                "scale": t.scale,
                "composition": evaluator.composition,
                "sites": evaluator.sites,
            },
            "vocab": {},
            "state_dict": t.to_state(),
            "model_card": dict(evaluator.card),
        },
    )


def load_evaluator(path: str | Path) -> Evaluator:
    """An evaluator from its checkpoint (``weights_only=True``; refused if corrupted or of another kind).

    Raises:
        CheckpointError: missing, corrupted, another kind, or inconsistent.
    """
    from nesf.training.checkpoint import load_checkpoint

    return evaluator_from_checkpoint(load_checkpoint(path), source=str(path))


def evaluator_from_checkpoint(ck: dict[str, Any], source: str = "<checkpoint>") -> Evaluator:
    """An evaluator from a loaded checkpoint dict (``source`` names it in errors and in ``card["source"]``).

    Raises:
        CheckpointError: another kind of checkpoint, or inconsistent.
    """
    if ck.get("kind") != KIND:
        raise CheckpointError(f"{source}: not a property evaluator (kind {ck.get('kind', 'nesf')!r})")
    try:
        cfg = ck["model_config"]
        trees = TreeEnsemble.from_state(ck["state_dict"], cfg["combine"], cfg["base"], cfg["scale"])
        out = Evaluator(trees, bool(cfg["composition"]), ck.get("model_card") or {}, int(cfg.get("sites", 0)))
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{source}: inconsistent property evaluator: {str(exc).splitlines()[0][:200]}") from None
    out.card["evaluator_sha256"] = ck.get("sha256")
    out.card["source"] = source
    return out


__all__ = [
    "KIND",
    "METHODS",
    "Evaluator",
    "evaluate_evaluator",
    "evaluator_from_checkpoint",
    "fit_evaluator",
    "load_evaluator",
    "save_evaluator",
]
