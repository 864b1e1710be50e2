"""Writing an optimisation's results: each start's path as CIFs, one table, and a plot of the property by step."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from nesf.design.optimize import OptimizeResult
from nesf.io.writers import atomic_write, safe_filename, write_cif


def path_rows(result: OptimizeResult) -> list[dict]:
    """One row per start and decoded step: start, step, predicted property, spread, score, formula, valid, allowed."""
    rows = []
    for k, step in enumerate(result.steps):
        for j, sid in enumerate(result.start_ids):
            score = None if result.scores is None else result.scores[k, j]
            rows.append(
                {
                    "start": sid,
                    "step": step,
                    "predicted": round(float(result.predicted[k, j]), 6),
                    "spread": round(float(result.spread[k, j]), 6),
                    "evaluator": "" if score is None or not np.isfinite(score) else round(float(score), 6),
                    "formula": result.formulas[k][j],
                    "n_atoms": result.crystals[k][j].n_atoms,
                    "valid": bool(result.valid[k, j]),
                    "allowed": bool(result.allowed[k, j]),
                }
            )
    return rows


def write_table(path: str | Path, result: OptimizeResult) -> Path:
    """The path table as CSV (atomically)."""
    rows = path_rows(result)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["start"])
    writer.writeheader()
    writer.writerows(rows)
    text = buf.getvalue()
    return atomic_write(path, lambda p: p.write_text(text))


def write_paths(folder: str | Path, result: OptimizeResult) -> int:
    """Each start's decoded crystals as ``folder/START/step_NNNNN.cif`` (crystals without atoms skipped); how many."""
    folder = Path(folder)
    written = 0
    for j, sid in enumerate(result.start_ids):
        sub = folder / safe_filename(sid)
        sub.mkdir(parents=True, exist_ok=True)
        for k, step in enumerate(result.steps):
            crystal = result.crystals[k][j]
            if crystal.n_atoms:
                write_cif(sub / f"step_{step:05d}.cif", crystal)
                written += 1
    return written


def plot_paths(path: str | Path, result: OptimizeResult, target: str = "property", units: str = "") -> Path:
    """Plot the head's prediction (and the evaluator's score, when scored) against the step, one line per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(result.steps)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(steps, result.predicted, color="tab:blue", alpha=0.15, lw=0.8)
    ax.plot(steps, np.median(result.predicted, axis=1), color="tab:blue", lw=2.2, label="head (median of starts)")
    if result.scores is not None and np.isfinite(result.scores).any():
        with np.errstate(all="ignore"):
            med = np.nanmedian(np.where(np.isfinite(result.scores), result.scores, np.nan), axis=1)
        ax.plot(steps, med, color="tab:orange", lw=2.2, marker="o", label="evaluator (median of valid decodes)")
    ax.set_xlabel("Adam step")
    ax.set_ylabel(f"{target} [{units}]" if units else target)
    n = len(result.start_ids)
    ax.set_title(f"{n} start{'s' if n != 1 else ''}")
    ax.legend(frameon=False)
    fig.tight_layout()

    def write(p: Path) -> None:
        fig.savefig(p, format="png", dpi=120)

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


__all__ = ["path_rows", "plot_paths", "write_paths", "write_table"]
