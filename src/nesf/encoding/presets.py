"""Named trade-offs of checked codes: refinement and decoding settings changed together.

A preset is a set of changes on top of a model's own settings (its checkpoint's refinement and
decoding records), so a model keeps what it was shipped with where a preset says nothing.
"""

from __future__ import annotations

from typing import Any

#: Fast checked codes, refinement part: the encoder's code first, fitted to its input's cell and
#: kept where it decodes to the input's composition; the crystals it misses take three
#: Gauss-Newton steps (:mod:`nesf.encoding.gauss_newton`), then up to 20 one-step restarts, each
#: from the last. No atom fit and no space-group check.
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
}

#: Fast checked codes, decoding part: a particle grid of 0.8 A, particles closer than 0.1 A
#: merged while they descend (a decode's work is in its first steps, before particles meet), one
#: polishing step over 16 directions per shell instead of two over 32, and symmetrisation tried
#: up to 0.9 A (spglib's search at the top of `mp`'s ladder, 1.2-2.0 A, costs the most). Chosen
#: on `mp`, whose own grid is 0.7 A.
FAST_DECODING: dict[str, Any] = {
    "grid_spacing": 0.8,
    "merge_tol": 0.1,
    "polish_steps": 1,
    "polish_directions": 16,
    "symmetry_tolerances": (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9),
}


def fast(model: Any) -> Any:
    """``model`` (a :class:`~nesf.api.NeSF`) with fast checked codes (``--fast``).

    On `mp` validation and test crystals: about the default's match rate at a quarter of its time,
    with positions less precise and space groups kept less often, as neither the atom fit nor the
    space-group check runs (``benchmarks/RESULTS.md``, "Fast checked codes with
    Gauss-Newton steps").
    """
    return model.with_refinement(**FAST_REFINEMENT).with_settings(**FAST_DECODING)
