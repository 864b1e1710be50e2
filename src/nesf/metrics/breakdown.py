"""Where a model holds: the metrics of a reconstruction split by crystal system and by atoms per cell.

A pooled match rate hides where a model fails. :func:`breakdown` groups the crystals by the
crystal system of the input (spglib, 0.1 A) and by atoms per cell (buckets of four), and gives
each group the paper's metrics and the StructureMatcher match rate / RMSE of its crystals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nesf.data.crystal import Crystal
from nesf.data.domain import CRYSTAL_SYSTEMS, crystal_system
from nesf.fields.frame import Frame
from nesf.metrics.paper import paper_metrics
from nesf.metrics.report import format_value
from nesf.metrics.verdicts import StructureVerdict

#: Upper ends of the atoms-per-cell buckets (the last one is open).
ATOM_BUCKETS = (4, 8, 12, 16, 20)

#: (key, column label, format) of the breakdown tables.
COLUMNS = (
    ("n_structures", "n", "{:d}"),
    ("atom_count_error_pct", "count err %", "{:.1f}"),
    ("position_error_actual", "pos err A", "{:.3f}"),
    ("species_error_actual_pct", "spec err %", "{:.1f}"),
    ("match_rate_pct", "match %", "{:.1f}"),
    ("rmse", "RMSE", "{:.4f}"),
)


def atom_bucket(n_atoms: int) -> str:
    """The atoms-per-cell bucket of a crystal, e.g. ``"5-8"`` or ``"21+"``."""
    low = 1
    for high in ATOM_BUCKETS:
        if n_atoms <= high:
            return f"{low}-{high}"
        low = high + 1
    return f"{low}+"


def _group_metrics(
    true: Sequence[Crystal], pred: Sequence[Crystal], verdicts: Sequence[StructureVerdict], frame: str | Frame
) -> dict:
    out = {"n_structures": len(true), **paper_metrics(true, pred, frame)}
    if all(v.matched is not None for v in verdicts):
        found = [v.rmse for v in verdicts if v.matched and v.rmse is not None]
        out["match_rate_pct"] = 100.0 * sum(bool(v.matched) for v in verdicts) / len(verdicts)
        out["rmse"] = float(np.mean(found)) if found else None
    return out


def breakdown(
    true: Sequence[Crystal],
    pred: Sequence[Crystal],
    verdicts: Sequence[StructureVerdict],
    frame: str | Frame,
) -> dict[str, dict[str, dict]]:
    """Metrics per crystal system and per atoms-per-cell bucket.

    Args:
        true: ``N`` input crystals (in the model's frame, as evaluated).
        pred: their ``N`` reconstructions.
        verdicts: their ``N`` per-crystal verdicts (match and RMSE).
        frame: the frame the metrics are computed in.

    Returns:
        ``{"by_crystal_system": {system: metrics}, "by_atom_count": {bucket: metrics}}``, groups
        in a fixed order (International Tables order; increasing atom counts), empty groups left out.
    """
    if not (len(true) == len(pred) == len(verdicts)):
        raise ValueError("breakdown needs one reconstruction and one verdict per crystal")
    systems = [crystal_system(c) for c in true]
    buckets = [atom_bucket(c.n_atoms) for c in true]
    order_sys = [*CRYSTAL_SYSTEMS, "unknown"]
    order_bkt = [atom_bucket(b) for b in ATOM_BUCKETS] + [atom_bucket(ATOM_BUCKETS[-1] + 1)]
    out: dict[str, dict[str, dict]] = {}
    for name, labels, order in (("by_crystal_system", systems, order_sys), ("by_atom_count", buckets, order_bkt)):
        groups: dict[str, dict] = {}
        for label in order:
            idx = [i for i, lab in enumerate(labels) if lab == label]
            if idx:
                groups[label] = _group_metrics(
                    [true[i] for i in idx], [pred[i] for i in idx], [verdicts[i] for i in idx], frame
                )
        out[name] = groups
    return out


def format_breakdown(parts: dict[str, dict[str, dict]]) -> str:
    """The breakdown as two text tables (one row per group)."""
    lines: list[str] = []
    for name, title in (("by_crystal_system", "crystal system"), ("by_atom_count", "atoms per cell")):
        groups = parts.get(name) or {}
        if not groups:
            continue
        rows = [[label, *(format_value(m.get(k), fmt) for k, _, fmt in COLUMNS)] for label, m in groups.items()]
        header = [title, *(label for _, label, _ in COLUMNS)]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        if lines:
            lines.append("")
        lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
        for r in rows:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


__all__ = ["ATOM_BUCKETS", "atom_bucket", "breakdown", "format_breakdown"]
