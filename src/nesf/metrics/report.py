"""All metrics of a reconstruction in one dict, and a readable table of them."""

from __future__ import annotations

from collections.abc import Sequence

from nesf.data.crystal import Crystal
from nesf.fields.frame import Frame
from nesf.metrics.matcher import match_metrics
from nesf.metrics.paper import paper_metrics

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
    """Paper metrics plus (optionally) StructureMatcher match rate and RMSE."""
    out: dict[str, float] = dict(paper_metrics(true, pred, frame))
    if match:
        out.update(match_metrics(true, pred, n_jobs=n_jobs))
    else:
        out.update({"match_rate_pct": float("nan"), "rmse": float("nan")})
    return out


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
