"""Tree ensembles as plain arrays: fitted with scikit-learn, stored as tensors, evaluated with numpy.

A fitted scikit-learn forest or gradient-boosting model cannot go into a checkpoint that loads
with ``weights_only=True`` (it is a pickled object). Its trees, though, are five arrays each
(left child, right child, split feature, threshold, leaf value); :func:`export_trees` lays all
trees of a model end to end in those arrays, and :class:`TreeEnsemble` walks them for a batch
of samples at once (one step per tree level, every tree and sample together).

A sample goes left when ``x[feature] <= threshold``, as in scikit-learn; missing values
(NaN) are replaced by the training medians before any tree sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class TreeEnsemble:
    """Trees laid end to end: node arrays ``[T_nodes]`` and each tree's root ``[T]``.

    Attributes:
        left: left child of each node (global index; -1 at leaves).
        right: right child of each node (-1 at leaves).
        feature: split feature of each node (-1 at leaves).
        threshold: split threshold of each node.
        value: leaf value of each node (property units for a forest, a boosting step's
            contribution for gradient boosting).
        roots: index of each tree's root node.
        combine: ``"mean"`` (forest: average over trees) or ``"sum"`` (boosting: ``base`` plus
            ``scale`` times the sum over trees).
        base: the boosting's starting value.
        scale: the boosting's learning rate.
        fill: per-feature values that replace NaN ``[F]``.
    """

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    combine: str = "mean"
    base: float = 0.0
    scale: float = 1.0
    fill: np.ndarray | None = None

    def per_tree(self, x: np.ndarray) -> np.ndarray:
        """Each tree's leaf value for samples ``x`` ``[N, F]`` -> ``[T, N]``."""
        x = np.asarray(x, dtype=np.float64)
        if self.fill is not None:
            x = np.where(np.isnan(x), self.fill[None, :], x)
        node = np.repeat(self.roots[:, None], len(x), axis=1)  # [T, N]
        cols = np.arange(len(x))[None, :]
        while True:
            feat = self.feature[node]
            inner = feat >= 0
            if not inner.any():
                break
            go_left = x[cols, np.where(inner, feat, 0)] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.value[node]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions ``[N]`` of samples ``x`` ``[N, F]``."""
        leaves = self.per_tree(x)
        if self.combine == "mean":
            return leaves.mean(axis=0)
        return self.base + self.scale * leaves.sum(axis=0)

    def to_state(self) -> dict[str, torch.Tensor]:
        """The arrays as tensors (for a checkpoint)."""
        state = {
            "left": torch.as_tensor(self.left, dtype=torch.int64),
            "right": torch.as_tensor(self.right, dtype=torch.int64),
            "feature": torch.as_tensor(self.feature, dtype=torch.int64),
            "threshold": torch.as_tensor(self.threshold, dtype=torch.float64),
            "value": torch.as_tensor(self.value, dtype=torch.float64),
            "roots": torch.as_tensor(self.roots, dtype=torch.int64),
        }
        if self.fill is not None:
            state["fill"] = torch.as_tensor(self.fill, dtype=torch.float64)
        return state

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], combine: str, base: float, scale: float) -> TreeEnsemble:
        """Rebuild from :meth:`to_state`'s tensors and the combination settings."""
        fill = state.get("fill")
        return cls(
            *(state[k].numpy() for k in ("left", "right", "feature", "threshold", "value", "roots")),
            combine=combine,
            base=float(base),
            scale=float(scale),
            fill=None if fill is None else fill.numpy(),
        )


def export_trees(model: Any, fill: np.ndarray | None = None) -> TreeEnsemble:
    """Arrays of a fitted scikit-learn regressor's trees.

    Args:
        model: a fitted ``RandomForestRegressor``, ``ExtraTreesRegressor`` or
            ``GradientBoostingRegressor`` (squared-error or absolute-error loss) with one output.
        fill: per-feature values replacing NaN before prediction ``[F]``.

    Raises:
        ValueError: another kind of model.
    """
    estimators = getattr(model, "estimators_", None)
    if estimators is None:
        raise ValueError(f"cannot export a {type(model).__name__}: not a fitted tree ensemble")
    boosting = hasattr(model, "learning_rate") and isinstance(estimators, np.ndarray)
    trees = [e.tree_ for e in (estimators[:, 0] if boosting else estimators)]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("left", "right", "feature", "threshold", "value")}
    roots, offset = [], 0
    for t in trees:
        leaf = t.children_left < 0
        parts["left"].append(np.where(leaf, -1, t.children_left + offset))
        parts["right"].append(np.where(leaf, -1, t.children_right + offset))
        parts["feature"].append(np.where(leaf, -1, t.feature))
        parts["threshold"].append(t.threshold.astype(np.float64))
        parts["value"].append(t.value.reshape(t.node_count, -1)[:, 0].astype(np.float64))
        roots.append(offset)
        offset += t.node_count
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    if boosting:
        base = float(np.asarray(model._raw_predict_init(np.zeros((1, model.n_features_in_)))).reshape(-1)[0])
        return TreeEnsemble(
            **arrays, roots=np.asarray(roots), combine="sum", base=base, scale=float(model.learning_rate), fill=fill
        )
    return TreeEnsemble(**arrays, roots=np.asarray(roots), combine="mean", fill=fill)


__all__ = ["TreeEnsemble", "export_trees"]
