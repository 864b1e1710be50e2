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
default. A weak model is then probed once more, with that bounded search on
:data:`SEARCH_PROBE_CRYSTALS` of the same crystals: where the search matches none more than the
encoder's own codes do, searching is wasted work and the record is :data:`HOPELESS_REFINEMENT`
(about the one-pass work: the encoder's code, checked once). A model trained for three
minutes on lim_l6 matched none of its 301 test crystals either way, at 5.3 times the one-pass
time with the bounded search. The record is only a default: ``--max-cost 0`` (or :meth:`nesf.api.NeSF.with_refinement`)
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

#: Crystals of the probe a weak model also reconstructs with :data:`WEAK_REFINEMENT`.
SEARCH_PROBE_CRYSTALS = 12

#: The refinement default of a weak model whose bounded search matched nothing more than one pass.
HOPELESS_REFINEMENT: dict[str, Any] = {"max_cost": 1.0}


def _spread(count: int, n: int) -> list[int]:
    """Up to ``n`` indices spread evenly over ``range(count)``, the first and last included."""
    if count <= n:
        return list(range(count))
    return np.unique(np.linspace(0, count - 1, n).round().astype(int)).tolist()


def probe_crystals(crystals: Sequence[Crystal], known: set[int], n: int = PROBE_CRYSTALS) -> list[Crystal]:
    """Up to ``n`` crystals spread evenly over ``crystals``, of elements in ``known`` only (deterministic)."""
    usable = [c for c in crystals if c.n_atoms and set(map(int, c.numbers)) <= known]
    return [usable[i] for i in _spread(len(usable), n)]


def _hits(nesf: Any, crystals: Sequence[Crystal]) -> tuple[list[bool], float]:
    """Which ``crystals`` ``nesf`` reconstructs to a match, and the seconds it took."""
    from nesf.metrics.matcher import match_rmse

    t0 = time.perf_counter()
    decoded = nesf.reconstruct_crystals(list(crystals))
    return [r is not None for r in match_rmse(crystals, decoded, n_jobs=1)], round(time.perf_counter() - t0, 2)


def one_pass_probe(nesf: Any, probe: Sequence[Crystal]) -> dict[str, Any]:
    """The one-pass match rate of ``nesf`` (a :class:`~nesf.api.NeSF`) on the ``probe`` crystals.

    Returns:
        ``crystals`` (probed), ``matched``, ``match_pct``, ``seconds`` and ``hits`` (one bool per
        probed crystal); ``crystals`` 0 for an empty probe (``match_pct`` is then None).
    """
    if not probe:
        return {"crystals": 0, "matched": 0, "match_pct": None, "seconds": 0.0, "hits": []}
    hits, seconds = _hits(nesf.with_refinement(steps=0), probe)  # the encoder's own codes
    return {
        "crystals": len(probe),
        "matched": sum(hits),
        "match_pct": round(100.0 * sum(hits) / len(probe), 2),
        "seconds": seconds,
        "hits": hits,
    }


def bounded_search_probe(
    nesf: Any, probe: Sequence[Crystal], one_pass_hits: Sequence[bool], n: int = SEARCH_PROBE_CRYSTALS
) -> dict[str, Any]:
    """How many of ``n`` of the ``probe`` crystals the bounded search (:data:`WEAK_REFINEMENT`) matches.

    ``one_pass_hits`` says which probe crystals one pass matched (:func:`one_pass_probe`).
    Returns ``crystals``, ``matched`` (by the search), ``matched_one_pass`` (of the same
    crystals) and ``seconds``.
    """
    picks = _spread(len(probe), n)
    hits, seconds = _hits(nesf.with_refinement(**WEAK_REFINEMENT), [probe[i] for i in picks])
    return {
        "crystals": len(picks),
        "matched": sum(hits),
        "matched_one_pass": sum(bool(one_pass_hits[i]) for i in picks),
        "seconds": seconds,
    }


def is_weak(probe: dict[str, Any]) -> bool:
    """Whether a one-pass probe calls for a bounded search (below :data:`WEAK_MATCH_PCT`)."""
    pct = probe.get("match_pct")
    return pct is not None and pct < WEAK_MATCH_PCT


def refinement_default(probe: dict[str, Any]) -> dict[str, Any]:
    """The ``refinement`` record a probe calls for.

    None for a model that is not weak; :data:`HOPELESS_REFINEMENT` for a weak one whose bounded
    search (the probe's ``search`` entry, when there is one) matched nothing more than one pass;
    else :data:`WEAK_REFINEMENT`.
    """
    if not is_weak(probe):
        return {}
    search = probe.get("search")
    if search and search["matched"] <= search["matched_one_pass"]:
        return dict(HOPELESS_REFINEMENT)
    return dict(WEAK_REFINEMENT)


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
    probe = (cache or {}).get(key)
    if probe is None:
        nesf = NeSF.from_checkpoint(ck, source=str(path))
        chosen = probe_crystals(crystals, set(map(int, nesf.vocab.numbers)), n)
        probe = one_pass_probe(nesf, chosen)
        if is_weak(probe):
            probe["search"] = bounded_search_probe(nesf, chosen, probe["hits"])
    if cache is not None:
        cache[key] = probe
    ck["refinement"] = refinement_default(probe)
    rule = f"search bounded below {WEAK_MATCH_PCT:g} % one-pass match; one pass where the bounded search adds none"
    ck["search_probe"] = {k: v for k, v in probe.items() if k != "hits"} | {"rule": rule}
    save_checkpoint(path, ck)
    return probe | {"refinement": ck["refinement"]}
