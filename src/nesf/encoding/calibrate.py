"""How much test-time search a model gets by default, chosen on its own validation crystals.

Checked codes (:mod:`nesf.encoding.checked`) pay where a model's codes mostly decode right and
a few need restarts: on `mp` they cost about 13 one-pass decodes per crystal and lift the match
rate on its test crystals from 61 to 91 %. On a model that represents almost nothing, such as the one a
first three-minute ``nesf train`` gives, nearly every code fails its check and takes every
restart, at about 44 times the one-pass cost for a few points of match rate
(benchmarks/RESULTS.md, "Cost of checked codes on a weak model").

So ``nesf train`` ends with a probe: up to :data:`PROBE_CRYSTALS` validation crystals, spread
evenly over the set, are reconstructed from the encoder's own codes (one pass, cheap) and
matched. Where fewer than :data:`WEAK_MATCH_PCT` percent match, the checkpoint records a
``refinement`` default that bounds the search (:data:`WEAK_REFINEMENT`: at most about five
times a crystal's one-pass work); otherwise it records none and the full search stays the
default. The record is only a default: ``--max-cost 0`` (or :meth:`nesf.api.NeSF.with_refinement`)
asks for the full search on any model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nesf.data.crystal import Crystal

#: Validation crystals the probe reconstructs in one pass.
PROBE_CRYSTALS = 32

#: One-pass match rate (percent of the probe's crystals) below which the search is bounded.
#: The shipped models match 60-98 % of their held-out crystals in one pass; a model trained
#: for three minutes on lim_l6 matched none of 100.
WEAK_MATCH_PCT = 25.0

#: The refinement default recorded for a model below :data:`WEAK_MATCH_PCT`.
WEAK_REFINEMENT: dict[str, Any] = {"max_cost": 5.0}


def probe_crystals(crystals: Sequence[Crystal], known: set[int], n: int = PROBE_CRYSTALS) -> list[Crystal]:
    """Up to ``n`` crystals spread evenly over ``crystals``, of elements in ``known`` only (deterministic)."""
    usable = [c for c in crystals if c.n_atoms and set(map(int, c.numbers)) <= known]
    if len(usable) <= n:
        return usable
    picks = np.unique(np.linspace(0, len(usable) - 1, n).round().astype(int))
    return [usable[i] for i in picks]


def one_pass_probe(nesf: Any, crystals: Sequence[Crystal], n: int = PROBE_CRYSTALS) -> dict[str, Any]:
    """The one-pass match rate of ``nesf`` (a :class:`~nesf.api.NeSF`) on up to ``n`` of ``crystals``.

    Returns:
        ``crystals`` (probed), ``matched``, ``match_pct`` and ``seconds``; ``crystals`` 0 when
        none of the set is of the model's elements (``match_pct`` is then None).
    """
    from nesf.metrics.matcher import match_rmse

    probe = probe_crystals(crystals, set(map(int, nesf.vocab.numbers)), n)
    if not probe:
        return {"crystals": 0, "matched": 0, "match_pct": None, "seconds": 0.0}
    t0 = time.perf_counter()
    decoded = nesf.with_refinement(steps=0).reconstruct_crystals(probe)  # the encoder's own codes
    matched = sum(r is not None for r in match_rmse(probe, decoded, n_jobs=1))
    return {
        "crystals": len(probe),
        "matched": matched,
        "match_pct": round(100.0 * matched / len(probe), 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def refinement_default(probe: dict[str, Any]) -> dict[str, Any]:
    """The ``refinement`` record a probe calls for: :data:`WEAK_REFINEMENT` for a weak model, else none."""
    pct = probe.get("match_pct")
    return dict(WEAK_REFINEMENT) if pct is not None and pct < WEAK_MATCH_PCT else {}


def record_search_default(
    path: str | Path, crystals: Sequence[Crystal], n: int = PROBE_CRYSTALS, cache: dict | None = None
) -> dict[str, Any]:
    """Probe the checkpoint at ``path`` on ``n`` validation ``crystals`` and write its refinement default into it.

    The checkpoint is rewritten atomically with a ``refinement`` record (possibly empty) and the
    probe's figures (``search_probe``); its weights and content hash do not change. ``cache``
    (a dict) keeps probes by content hash, so that a run's ``best.pt`` and ``last.pt`` holding
    the same weights are probed once.

    Returns:
        The probe's figures with the recorded ``refinement`` default.
    """
    from nesf.api import NeSF
    from nesf.training.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(path)
    key = ck.get("sha256")
    probe = (cache or {}).get(key) or one_pass_probe(NeSF.from_checkpoint(ck, source=str(path)), crystals, n)
    if cache is not None:
        cache[key] = probe
    ck["refinement"] = refinement_default(probe)
    ck["search_probe"] = probe | {"rule": f"search bounded below {WEAK_MATCH_PCT:g} % one-pass match"}
    save_checkpoint(path, ck)
    return probe | {"refinement": ck["refinement"]}
