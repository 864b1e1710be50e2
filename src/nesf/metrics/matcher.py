"""StructureMatcher match rate and RMSE (the CDVAE reconstruction protocol), in parallel."""

from __future__ import annotations

import multiprocessing as mp
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from nesf.data.crystal import Crystal

#: StructureMatcher settings of the CDVAE protocol.
MATCHER_SETTINGS = {"stol": 0.5, "angle_tol": 10.0, "ltol": 0.3}


def _match_chunk(pairs: list[tuple[Crystal, Crystal]]) -> list[float | None]:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = StructureMatcher(**MATCHER_SETTINGS)
    out: list[float | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for true, pred in pairs:
            out.append(_match_one(matcher, true, pred))
    return out


def _match_one(matcher, true: Crystal, pred: Crystal) -> float | None:  # noqa: ANN001
    if pred.n_atoms == 0 or not _same_reduced_composition(true, pred):
        return None  # StructureMatcher compares reduced compositions first; skip the work
    try:
        res = matcher.get_rms_dist(pred.to_pymatgen(), true.to_pymatgen())
    except Exception:  # a degenerate predicted cell; counts as no match
        return None
    return None if res is None else float(res[0])


def _same_reduced_composition(a: Crystal, b: Crystal) -> bool:
    za, ca = np.unique(a.numbers, return_counts=True)
    zb, cb = np.unique(b.numbers, return_counts=True)
    if not np.array_equal(za, zb):
        return False
    return np.array_equal(ca / np.gcd.reduce(ca), cb / np.gcd.reduce(cb))


def match_rmse(true: Sequence[Crystal], pred: Sequence[Crystal], n_jobs: int | None = None) -> list[float | None]:
    """RMSE (StructureMatcher ``get_rms_dist``, normalised by (V/n)^(1/3)) of each pair, None if unmatched.

    Args:
        true: reference crystals.
        pred: reconstructed crystals, same order.
        n_jobs: worker processes (default: all cores; 1 runs in this process).
    """
    pairs = list(zip(true, pred))
    n_jobs = n_jobs or os.cpu_count() or 1
    if n_jobs <= 1 or len(pairs) < 16:
        return _match_chunk(pairs)
    n_chunks = min(len(pairs), 8 * n_jobs)
    chunks = [pairs[i::n_chunks] for i in range(n_chunks)]
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=ctx) as pool:
        results = list(pool.map(_match_chunk, chunks))
    out: list[float | None] = [None] * len(pairs)
    for i, res in enumerate(results):
        out[i::n_chunks] = res
    return out


def match_metrics(true: Sequence[Crystal], pred: Sequence[Crystal], n_jobs: int | None = None) -> dict[str, float]:
    """``match_rate_pct`` and ``rmse`` (mean over matched crystals; NaN when none match)."""
    rms = match_rmse(true, pred, n_jobs)
    matched = [r for r in rms if r is not None]
    return {
        "match_rate_pct": 100.0 * len(matched) / max(len(rms), 1),
        "rmse": float(np.mean(matched)) if matched else float("nan"),
    }
