"""What a relaxation run writes: relaxed CIFs, ``all.extxyz``, and the per-crystal table as JSON and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from nesf.relax.potential import RelaxResult, RelaxSettings

#: Columns of ``relax.csv`` (the fields of :class:`RelaxResult` but the relaxed crystal).
COLUMNS = (
    "id",
    "formula",
    "n_atoms",
    "energy_per_atom_ev",
    "initial_energy_per_atom_ev",
    "rmsd_a",
    "rmsd_method",
    "volume_change_pct",
    "spacegroup_before",
    "spacegroup_after",
    "spacegroup_kept",
    "steps",
    "converged",
    "seconds",
    "error",
)


def summarize(results: Sequence[RelaxResult]) -> dict:
    """Counts and means over relaxation results (RMSD in A, energies in eV/atom, times in s)."""
    ran = [r for r in results if r.error is None]
    rmsd = [r.rmsd_a for r in ran if r.rmsd_a is not None]
    seconds = [r.seconds for r in results]
    return {
        "n_crystals": len(results),
        "n_relaxed": len(ran),
        "n_failed": len(results) - len(ran),
        "rmsd_to_relaxed_mean": float(np.mean(rmsd)) if rmsd else None,
        "rmsd_to_relaxed_median": float(np.median(rmsd)) if rmsd else None,
        "rmsd_units": "Angstrom",
        "rmsd_methods": {m: sum(r.rmsd_method == m for r in ran) for m in ("matcher", "fixed_order")},
        "energy_per_atom_mean_ev": float(np.mean([r.energy_per_atom_ev for r in ran])) if ran else None,
        "spacegroup_kept_pct": 100.0 * float(np.mean([bool(r.spacegroup_kept) for r in ran])) if ran else None,
        "converged_pct": 100.0 * float(np.mean([r.converged for r in ran])) if ran else None,
        "steps_mean": float(np.mean([r.steps for r in ran])) if ran else None,
        "seconds_total": float(np.sum(seconds)),
        "seconds_per_crystal": float(np.mean(seconds)) if seconds else None,
    }


def table_csv(results: Sequence[RelaxResult]) -> str:
    """The per-crystal table as CSV text (:data:`COLUMNS`)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in results:
        row = r.row()
        writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})
    return buf.getvalue()


def write_relaxation(
    folder: str | Path, results: Sequence[RelaxResult], settings: RelaxSettings, extra: dict | None = None
) -> dict:
    """Write a relaxation into ``folder`` (a fresh folder, e.g. from ``staged_folder``); returns the summary.

    ``folder/*.cif`` and ``folder/all.extxyz``: the relaxed crystals (their ``relax_*`` fields
    as extxyz properties); ``folder/relax.json``: settings, summary and rows; ``folder/relax.csv``:
    the rows.
    """
    from nesf.io.writers import atomic_write, safe_filename, write_cif, write_extxyz, write_json
    from nesf.relax.potential import model_tag

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    relaxed = [r.relaxed for r in results if r.relaxed is not None]
    seen: dict[str, int] = {}
    for c in relaxed:
        name = safe_filename(c.id)
        seen[name] = seen.get(name, 0) + 1
        write_cif(folder / (f"{name}.cif" if seen[name] == 1 else f"{name}-{seen[name]}.cif"), c)
    if relaxed:
        write_extxyz(folder / "all.extxyz", relaxed)
    summary = summarize(results)
    write_json(
        folder / "relax.json",
        {
            "potential": model_tag(),
            "optimizer": "FIRE (ASE), FrechetCellFilter" if settings.relax_cell else "FIRE (ASE), fixed cell",
            "settings": {**asdict(settings), "fmax_units": "eV/A", "symprec_units": "Angstrom"},
            **(extra or {}),
            "summary": summary,
            "crystals": [r.row() for r in results],
        },
    )
    text = table_csv(results)
    atomic_write(folder / "relax.csv", lambda p: p.write_text(text))
    return summary


__all__ = ["COLUMNS", "summarize", "table_csv", "write_relaxation"]
