"""Named trade-offs of checked codes: refinement and decoding settings changed together.

A preset is a set of changes on top of a model's own settings (its checkpoint's refinement and
decoding records), so a model keeps what it was shipped with where a preset says nothing.
"""

from __future__ import annotations

from typing import Any

#: Fast checked codes, refinement part: the encoder's code first, fitted to its input's cell and
#: kept where it decodes to the input's composition; the crystals it misses take three
#: Gauss-Newton steps (:mod:`nesf.encoding.gauss_newton`), then up to 20 one-step restarts, each
#: from the last. No atom fit, no space-group check and no precision check.
FAST_REFINEMENT: dict[str, Any] = {
    "check_encoder": True,
    "fit_encoder_code": True,
    "solver": "gauss_newton",
    "steps": 3,
    "uniform_queries": 256,
    "damping": 1.0,
    "restarts": 20,
    "restart_steps": 1,
    "restart_from": "last",
    "atom_fit": False,
    "check_symmetry": False,
    "precision_tolerance": 0.0,
}

#: Fast checked codes, decoding part: particles closer than 0.2 A merged while they descend (a
#: decode's work is in its first steps, before particles meet), at most 28 moves instead of 64
#: (past the first moves, most of a descent's field calls move fewer than 100 slow particles; on
#: validation crystals 28 moves matched as many), one polishing step over 16 directions per
#: shell instead of two over 32, and symmetrisation tried up to 0.9 A (spglib's search at the top
#: of `mp`'s ladder, 1.2-2.0 A, costs the most). The particle grid is set per model by
#: :func:`fast_decoding`.
FAST_DECODING: dict[str, Any] = {
    "merge_tol": 0.2,
    "n_steps": 28,
    "polish_steps": 1,
    "polish_directions": 16,
    "symmetry_tolerances": (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9),
}

#: The fast particle grid is this much coarser than the model's own (Angstrom) ...
FAST_GRID_COARSER = 0.2
#: ... and never finer than this (Angstrom): `mp` (own grid 0.7 A) decodes on 0.9 A, the
#: specialists (0.5 A) on 0.8 A. A 0.9 A grid cost the specialists up to 9 points of match on
#: their validation crystals (benchmarks/RESULTS.md, "A coarser particle grid and wider merging
#: for `--fast`").
FAST_GRID_MIN = 0.8


def fast_decoding(grid_spacing: float) -> dict[str, Any]:
    """The fast preset's decoding changes for a model whose own particle grid is ``grid_spacing`` (A)."""
    return {**FAST_DECODING, "grid_spacing": round(max(FAST_GRID_MIN, grid_spacing + FAST_GRID_COARSER), 6)}


def fast(model: Any) -> Any:
    """``model`` (a :class:`~nesf.api.NeSF`) with fast checked codes (``--fast``).

    On `mp` validation and test crystals: about the default's match rate at a fifth of its time,
    with positions less precise and space groups kept less often, as neither the atom fit nor the
    space-group check runs (``benchmarks/RESULTS.md``, "Fast checked codes with
    Gauss-Newton steps").
    """
    return model.with_refinement(**FAST_REFINEMENT).with_settings(**fast_decoding(model.settings.grid_spacing))
