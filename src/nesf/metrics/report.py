"""All metrics of a reconstruction in one dict, and a readable table of them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nesf.data.crystal import Crystal
from nesf.fields.frame import Frame
from nesf.metrics.matcher import MATCHER_SETTINGS, match_rmse
from nesf.metrics.paper import paper_metrics
from nesf.reconstruction.symmetry import REPORT_SYMPREC, space_groups

#: Keys of :func:`matched_metrics`, in report order.
MATCHED_KEYS = (
    "match_rate_pct",
    "rmse",
    "rmse_matched",
    "rmse_all",
    "position_error_actual_matched",
    "position_error_detected_matched",
    "spacegroup_kept_pct",
    "crystal_system_kept_pct",
)

#: (key, label, format) of the report table, in order.
TABLE_ROWS = (
    ("n_structures", "structures", "{:d}"),
    ("atom_count_error_pct", "error in number of atoms [%]", "{:.2f}"),
    ("position_error_actual", "position error, actual [A]", "{:.4f}"),
    ("position_error_detected", "position error, detected [A]", "{:.4f}"),
    ("species_error_actual_pct", "species error, actual [%]", "{:.2f}"),
    ("species_error_detected_pct", "species error, detected [%]", "{:.2f}"),
    ("lattice_length_mae", "lattice length MAE [A]", "{:.4f}"),
    ("lattice_angle_mae_deg", "lattice angle MAE [deg]", "{:.3f}"),
    ("match_rate_pct", "StructureMatcher match rate [%]", "{:.2f}"),
    ("rmse", "StructureMatcher RMSE", "{:.4f}"),
    ("rmse_all", "  RMSE, all (unmatched at stol)", "{:.4f}"),
    ("position_error_actual_matched", "position error, actual, matched [A]", "{:.4f}"),
    ("position_error_detected_matched", "position error, detected, matched [A]", "{:.4f}"),
    ("spacegroup_kept_pct", "space group kept, matched [%]", "{:.2f}"),
    ("crystal_system_kept_pct", "crystal system kept, matched [%]", "{:.2f}"),
    ("codes_restarted", "codes refined again (composition off)", "{:d}"),
    ("codes_recovered", "  of which now with the composition", "{:d}"),
    ("seconds", "reconstruction time [s]", "{:.2f}"),
    ("seconds_per_structure", "time per structure [s]", "{:.4f}"),
)


def evaluate_reconstruction(
    true: Sequence[Crystal],
    pred: Sequence[Crystal],
    frame: str | Frame,
    match: bool = True,
    n_jobs: int | None = None,
) -> dict[str, float]:
    """Paper metrics (over all crystals) plus, with ``match``, :func:`matched_metrics`; NaN for those without."""
    out: dict[str, float] = dict(paper_metrics(true, pred, frame))
    if match:
        out.update(matched_metrics(true, pred, match_rmse(true, pred, n_jobs=n_jobs), frame))
    else:
        out.update(dict.fromkeys(MATCHED_KEYS, float("nan")))
    return out


def matched_metrics(
    true: Sequence[Crystal], pred: Sequence[Crystal], rmse: Sequence[float | None], frame: str | Frame
) -> dict[str, float]:
    """What the StructureMatcher verdicts ``rmse`` (one per crystal, None: unmatched) say of a reconstruction.

    * ``match_rate_pct``: share of matched crystals.
    * ``rmse`` and ``rmse_matched`` (the same number): mean normalised RMSE over matched crystals;
      ``rmse_all``: mean over all crystals, an unmatched one counted at the matcher's ``stol``
      (its largest RMSE), so that a higher match rate cannot hide worse positions.
    * ``position_error_actual_matched`` / ``position_error_detected_matched`` (A): the paper's
      position errors over the matched crystals only (those over all crystals are in
      :func:`~nesf.metrics.paper.paper_metrics`).
    * ``spacegroup_kept_pct`` / ``crystal_system_kept_pct``: share of matched crystals whose
      reconstruction has the input's space group / crystal system (spglib, 0.1 A both).

    NaN where no crystal matched.
    """
    found = [i for i, r in enumerate(rmse) if r is not None]
    nan = float("nan")
    out = {
        "match_rate_pct": 100.0 * len(found) / max(len(rmse), 1),
        "rmse": float(np.mean([rmse[i] for i in found])) if found else nan,
        "rmse_all": float(np.mean([MATCHER_SETTINGS["stol"] if r is None else r for r in rmse])) if rmse else nan,
    }
    out["rmse_matched"] = out["rmse"]
    if not found:
        return {key: out.get(key, nan) for key in MATCHED_KEYS}
    t_m, p_m = [true[i] for i in found], [pred[i] for i in found]
    sub = paper_metrics(t_m, p_m, frame)
    out["position_error_actual_matched"] = sub["position_error_actual"]
    out["position_error_detected_matched"] = sub["position_error_detected"]
    g_in, g_out = space_groups(t_m, REPORT_SYMPREC), space_groups(p_m, REPORT_SYMPREC)
    same = [a is not None and b is not None and a.number == b.number for a, b in zip(g_in, g_out)]
    system = [a is not None and b is not None and a.crystal_system == b.crystal_system for a, b in zip(g_in, g_out)]
    out["spacegroup_kept_pct"] = 100.0 * sum(same) / len(found)
    out["crystal_system_kept_pct"] = 100.0 * sum(system) / len(found)
    return {key: out[key] for key in MATCHED_KEYS}


def format_value(value, fmt: str) -> str:  # noqa: ANN001
    """One metric as text ("n/a" for None and NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return fmt.format(int(value)) if fmt == "{:d}" else fmt.format(float(value))


def format_table(metrics: dict, title: str | None = None) -> str:
    """Two-column text table of the metrics present in ``metrics``."""
    rows = [(label, format_value(metrics[key], fmt)) for key, label, fmt in TABLE_ROWS if key in metrics]
    width = max(len(label) for label, _ in rows)
    lines = [title, "-" * len(title)] if title else []
    lines += [f"{label:<{width}}  {text:>10}" for label, text in rows]
    return "\n".join(lines)


def format_comparison(columns: dict[str, dict], title: str | None = None) -> str:
    """Text table of the metrics of several runs side by side (one column per run)."""
    names = list(columns)
    rows = []
    for key, label, fmt in TABLE_ROWS:
        if not all(key in m for m in columns.values()):
            continue
        rows.append((label, [format_value(columns[name][key], fmt) for name in names]))
    width = max(len(label) for label, _ in rows)
    col = [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)]
    lines = [title, "-" * len(title)] if title else []
    lines.append(" " * width + "  " + "  ".join(f"{n:>{w}}" for n, w in zip(names, col)))
    lines += [f"{label:<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, col)) for label, cells in rows]
    return "\n".join(lines)
