"""Metrics of generated crystals after relaxation: RMSD to relaxed, uniqueness, novelty, a stability proxy.

- ``rmsd_to_relaxed_mean_a``: mean RMSD (A) between each crystal and its CHGNet-relaxed form
  (:func:`nesf.relax.checks.rmsd_to_relaxed`);
- ``unique_pct``: share of crystals matching no earlier one (StructureMatcher, same reduced formula);
- ``novel_pct``: share matching no training crystal of the same reduced formula;
- ``stable_proxy_pct``: share of crystals whose relaxed CHGNet energy lies within 0.1 eV/atom of
  the convex hull of the training crystals' CHGNet energies (:mod:`nesf.relax.hull`);
- ``sun_pct``: share that is stable by the proxy, unique and novel at once.

Crystals that carry a relaxation's fields (``relax_energy_per_atom_ev`` or ``relax_error`` in
``info['properties']``, as written by ``nesf relax`` and ``nesf sample --relax``) are taken with
those values; the others are relaxed here. Uniqueness and novelty are judged on the crystals as
given. Every share counts all crystals (a failed relaxation is neither stable nor S.U.N.).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nesf.data.crystal import Crystal
from nesf.relax.checks import novel_mask, percent, unique_mask
from nesf.relax.hull import (
    STABLE_THRESHOLD,
    EnergyCache,
    EnergyFn,
    chemical_system,
    crystals_sha256,
    elemental_references,
    training_hull,
)


def stored_relaxation(crystal: Crystal) -> dict | None:
    """The relaxation fields a crystal carries (``relax_*`` properties), or None when it carries none."""
    props = crystal.info.get("properties") or {}
    if "relax_energy_per_atom_ev" not in props and "relax_error" not in props:
        return None
    return {k[len("relax_") :]: v for k, v in props.items() if k.startswith("relax_")}


def relaxation_fields(
    crystals: Sequence[Crystal], relaxer: object | None = None, progress: bool = True
) -> tuple[list[dict], int]:
    """Each crystal's relaxation fields (stored, else from relaxing it now), and how many were relaxed now.

    ``relaxer``: a :class:`nesf.relax.potential.Relaxer` (default: one with the default settings,
    made only when a crystal needs relaxing).
    """
    fields: list[dict | None] = [stored_relaxation(c) for c in crystals]
    todo = [i for i, f in enumerate(fields) if f is None]
    if todo:
        from nesf.relax.potential import Relaxer

        relaxer = relaxer or Relaxer()
        for i, result in zip(todo, relaxer.relax([crystals[i] for i in todo], progress=progress)):
            fields[i] = result.row()
    return [f or {} for f in fields], len(todo)


def relaxed_metrics(
    generated: Sequence[Crystal],
    training: Sequence[Crystal] | None = None,
    relaxer: object | None = None,
    energies: EnergyFn | None = None,
    model: str | None = None,
    cache_dir: str | Path | None = None,
    threshold_ev: float = STABLE_THRESHOLD,
    progress: bool = True,
) -> dict:
    """The relaxation metrics of generated crystals (see the module docstring).

    Args:
        generated: the generated crystals (relaxed here unless they carry a relaxation's fields).
        training: training crystals for novelty and the hull (None: neither is computed).
        relaxer: the relaxer for crystals without stored fields (default: CHGNet's defaults).
        energies: energies per atom (eV/atom) of training crystals (default: CHGNet static energies).
        model: name of the potential behind ``energies`` for the cache key (default: CHGNet's).
        cache_dir: folder of the hull energy cache (default :func:`nesf.relax.hull.default_cache_dir`;
            ``energies`` given without ``model``: no cache).
        threshold_ev: the stability proxy's distance to the hull, eV/atom.
        progress: progress bars.
    """
    generated = list(generated)
    fields, relaxed_now = relaxation_fields(generated, relaxer, progress)
    ok = [f.get("energy_per_atom_ev") is not None for f in fields]
    rmsd = [float(f["rmsd_a"]) for f in fields if f.get("rmsd_a") is not None]
    methods: dict[str, int] = {}
    for f in fields:
        if f.get("rmsd_method"):
            methods[f["rmsd_method"]] = methods.get(f["rmsd_method"], 0) + 1
    kept = [bool(f["spacegroup_kept"]) for f in fields if f.get("spacegroup_kept") is not None]
    unique = unique_mask(generated)
    out: dict = {
        "n_crystals": len(generated),
        "n_relaxed_now": relaxed_now,
        "n_relax_failed": int(len(generated) - sum(ok)),
        "rmsd_to_relaxed_mean_a": float(np.mean(rmsd)) if rmsd else None,
        "rmsd_to_relaxed_median_a": float(np.median(rmsd)) if rmsd else None,
        "rmsd_methods": methods,
        "spacegroup_kept_pct": percent(np.array(kept)),
        "energy_per_atom_mean_ev": float(np.mean([f["energy_per_atom_ev"] for f, o in zip(fields, ok) if o]))
        if any(ok)
        else None,
        "unique_pct": percent(unique),
    }
    if training is None:
        return out
    training = list(training)
    novel = novel_mask(generated, training)
    if energies is None:
        from nesf.relax.potential import model_tag, static_energies

        energies, model = static_energies, model or model_tag()
    element_refs = elemental_references(model)
    cache = None
    if model is not None:
        from nesf.relax.hull import default_cache_dir

        cache = EnergyCache(cache_dir or default_cache_dir(), model, crystals_sha256(training))
    systems = {chemical_system(c) for c, o in zip(generated, ok) if o}
    hull, record = training_hull(training, systems, energies, cache, progress=progress, element_references=element_refs)
    e_hull = np.full(len(generated), np.nan)
    for i, (c, f) in enumerate(zip(generated, fields)):
        if ok[i]:
            e_hull[i] = hull.e_above_hull(c.formula, float(f["energy_per_atom_ev"]))
    stable = np.nan_to_num(e_hull, nan=np.inf) <= threshold_ev
    out.update(
        {
            "n_training": len(training),
            "novel_pct": percent(novel),
            "stable_threshold_ev": threshold_ev,
            "stable_proxy_pct": percent(stable),
            "sun_pct": percent(stable & unique & novel),
            "e_above_hull_median_ev": float(np.nanmedian(e_hull)) if np.isfinite(e_hull).any() else None,
            "hull_missing_elements": sorted(hull.missing_elements),
            "hull_elements_at_zero_ev": sorted(hull.default_elements),
            "hull_element_references": "nesf/relax/elemental_references.json" if element_refs else None,
            **record,
        }
    )
    out["e_above_hull_ev"] = [None if not np.isfinite(v) else float(v) for v in e_hull]
    return out


__all__ = ["relaxation_fields", "relaxed_metrics", "stored_relaxation"]
