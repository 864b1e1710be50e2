"""A checkpoint's own decoding and refinement defaults: the settings a loaded model starts from."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from nesf.encoding.refine import RefineSettings
from nesf.errors import CheckpointError
from nesf.reconstruction.settings import ReconstructionSettings

#: Reconstruction settings for learned fields: the published ones, with convergence and merging
#: tolerances suited to a network's small residual wobble around an atom, and each detected atom
#: polished twice on shells of field queries (on validation data: mp RMSE 0.041 -> 0.029, perov_5
#: 0.0128 -> 0.0060, match rates unchanged; benchmarks/precision.py). Symmetrisation is a model's
#: own default where validation data showed it to help (its checkpoint's ``decoding`` record: mp
#: and lim_l6), else an option (``with_settings(symmetrize=True)``): it moved perov_5's atoms off
#: their distorted sites.
#: Species are voted on 3^3 points around each atom instead of the paper's 6^3: on 200 mp
#: validation crystals (one-pass codes) the same species error and match rate, the decode 2.3x
#: faster (benchmarks/RESULTS.md, "species vote grid").
NEURAL_SETTINGS = ReconstructionSettings(
    converge_tol=1e-3, merge_tol=0.01, polish_steps=2, species_grid=3, pin_origin=True
)


def decoding_settings(decoding: Any, source: str) -> ReconstructionSettings:
    """:data:`NEURAL_SETTINGS` with a checkpoint's own decoding defaults (its ``"decoding"`` record).

    A shipped model records there what validation data showed to help it (``symmetrize`` for
    ``mp`` and ``lim_l6``); the command line's and :meth:`NeSF.with_settings`' choices still win.
    """
    if not decoding:
        return NEURAL_SETTINGS
    if not isinstance(decoding, dict):
        raise CheckpointError(f"{source}: inconsistent nesf checkpoint: unreadable decoding record")
    known = {f.name for f in fields(ReconstructionSettings)}
    unknown = sorted(set(decoding) - known)
    if unknown:
        raise CheckpointError(f"{source}: the decoding record names unknown settings: {', '.join(unknown)}")
    try:
        return replace(NEURAL_SETTINGS, **decoding)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: inconsistent decoding record: {exc}") from None


def refinement_settings(record: Any, source: str) -> RefineSettings:
    """The default :class:`RefineSettings` with a checkpoint's own refinement defaults (its ``"refinement"`` record).

    ``nesf train`` records a bound on the search for models that match few of their validation
    crystals in one pass (:mod:`nesf.encoding.calibrate`); the command line's and
    :meth:`NeSF.with_refinement`'s choices still win.
    """
    if not record:
        return RefineSettings()
    if not isinstance(record, dict):
        raise CheckpointError(f"{source}: inconsistent nesf checkpoint: unreadable refinement record")
    unknown = sorted(set(record) - {f.name for f in fields(RefineSettings)})
    if unknown:
        raise CheckpointError(f"{source}: the refinement record names unknown settings: {', '.join(unknown)}")
    try:
        return RefineSettings(**record)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: inconsistent refinement record: {exc}") from None


__all__ = ["NEURAL_SETTINGS", "decoding_settings", "refinement_settings"]
