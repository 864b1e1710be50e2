"""Metrics of a reconstruction gathered crystal by crystal, so that any number of crystals fits in memory.

Every metric of :func:`~nesf.metrics.report.evaluate_reconstruction` is a ratio of sums over
crystals (atoms with the wrong species over atoms, distances over atoms, crystals with the wrong
count over crystals, ...). :func:`crystal_stats` gives each crystal's terms of those sums (one row
of :data:`STAT_COLUMNS`); a :class:`Tally` adds rows and per-crystal verdicts chunk by chunk and
gives the same metrics, per crystal system and atoms-per-cell bucket too, without holding a
crystal. The streaming commands (``nesf evaluate``, ``nesf reconstruct``) keep one tally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from nesf.data.crystal import Crystal
from nesf.fields.frame import Frame

#: Each crystal's terms of the pooled metrics, in column order of :func:`crystal_stats`.
STAT_COLUMNS = (
    "count_wrong",  # 1 when the detected atom count differs
    "pos_act_sum",  # sum over true atoms of the distance to the nearest detected atom (A)
    "pos_act_n",  # true atoms entering that sum (0 when no atom was detected)
    "pos_det_sum",  # sum over detected atoms of the distance to the nearest true atom (A)
    "pos_det_n",  # detected atoms
    "spec_act_miss",  # true atoms whose nearest detected atom has another species (all when none)
    "spec_det_miss",  # detected atoms whose nearest true atom has another species
    "true_atoms",
    "det_atoms",
    "length_abs_sum",  # |a - a'| + |b - b'| + |c - c'| (A)
    "angle_abs_sum_deg",  # the same over the three angles (degrees)
)
_C = {name: k for k, name in enumerate(STAT_COLUMNS)}


def crystal_stats(true: Sequence[Crystal], pred: Sequence[Crystal], frame: str | Frame) -> np.ndarray:
    """``[N, len(STAT_COLUMNS)]``: each crystal's terms of the pooled paper metrics."""
    from nesf.metrics.paper import pairwise_distances

    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true crystals but {len(pred)} reconstructions")
    out = np.zeros((len(true), len(STAT_COLUMNS)))
    for row, t, p, d in zip(out, true, pred, pairwise_distances(true, pred, frame)):
        row[_C["count_wrong"]] = float(t.n_atoms != p.n_atoms)
        row[_C["true_atoms"]], row[_C["det_atoms"]] = t.n_atoms, p.n_atoms
        dl = np.abs(np.asarray(t.lattice_params) - np.asarray(p.lattice_params))
        row[_C["length_abs_sum"]] = dl[:3].sum()
        row[_C["angle_abs_sum_deg"]] = np.degrees(dl[3:]).sum()
        if p.n_atoms == 0:
            row[_C["spec_act_miss"]] = t.n_atoms
            continue
        j = d.argmin(axis=1)
        row[_C["pos_act_sum"]], row[_C["pos_act_n"]] = d[np.arange(t.n_atoms), j].sum(), t.n_atoms
        row[_C["spec_act_miss"]] = np.sum(p.numbers[j] != t.numbers)
        i = d.argmin(axis=0)
        row[_C["pos_det_sum"]], row[_C["pos_det_n"]] = d[i, np.arange(p.n_atoms)].sum(), p.n_atoms
        row[_C["spec_det_miss"]] = np.sum(t.numbers[i] != p.numbers)
    return out


def position_errors(stats: np.ndarray) -> list[float | None]:
    """Each crystal's actual position error (A) from its :func:`crystal_stats` row; None without atoms."""
    stats = np.asarray(stats, dtype=np.float64).reshape(-1, len(STAT_COLUMNS))
    n, total = stats[:, _C["pos_act_n"]], stats[:, _C["pos_act_sum"]]
    return [float(t / k) if k else None for t, k in zip(total, n)]


def paper_from_stats(total: np.ndarray, n: int) -> dict[str, float]:
    """The paper's metrics (see :func:`~nesf.metrics.paper.paper_metrics`) of ``n`` crystals' summed stats."""
    nan = float("nan")
    s = {name: float(total[k]) for k, name in enumerate(STAT_COLUMNS)}
    return {
        "n_structures": int(n),
        "atom_count_error_pct": 100.0 * s["count_wrong"] / n,
        "position_error_actual": s["pos_act_sum"] / s["pos_act_n"] if s["pos_act_n"] else nan,
        "position_error_detected": s["pos_det_sum"] / s["pos_det_n"] if s["pos_det_n"] else nan,
        "species_error_actual_pct": 100.0 * s["spec_act_miss"] / max(s["true_atoms"], 1.0),
        "species_error_detected_pct": 100.0 * s["spec_det_miss"] / s["det_atoms"] if s["det_atoms"] else nan,
        "lattice_length_mae": s["length_abs_sum"] / (3 * n),
        "lattice_angle_mae_deg": s["angle_abs_sum_deg"] / (3 * n),
    }


def _group_number(text: str) -> int | None:
    """The international number of a verdict's space group text (``"Fm-3m (225)"``), None when empty."""
    if not text or not text.endswith(")"):
        return None
    return int(text.rsplit("(", 1)[1][:-1])


class Tally:
    """Running sums of a reconstruction's metrics (see the module's description).

    Rows are added with :meth:`add`: each crystal's stats, its verdict record
    (:meth:`~nesf.metrics.verdicts.StructureVerdict.to_dict`) and its groups (crystal system and
    atoms-per-cell bucket, for :meth:`breakdown`).
    """

    def __init__(self) -> None:
        self.n = 0
        self.total = np.zeros(len(STAT_COLUMNS))
        self.matched_total = np.zeros(len(STAT_COLUMNS))
        self.n_matched = 0
        self.n_unmatched = 0
        self.rmse_sum = 0.0
        self.spacegroup_kept = 0
        self.system_kept = 0
        self.groups: dict[str, dict[str, Tally]] = {"by_crystal_system": {}, "by_atom_count": {}}

    def add(
        self,
        stats: np.ndarray,
        records: Sequence[Mapping[str, Any]],
        groups: Iterable[tuple[str, str]] | None = None,
        _nested: bool = False,
    ) -> None:
        """Add crystals: ``stats [n, len(STAT_COLUMNS)]``, their verdict records and (system, bucket) labels."""
        from nesf.reconstruction.symmetry import crystal_system

        stats = np.asarray(stats, dtype=np.float64).reshape(-1, len(STAT_COLUMNS))
        if len(stats) != len(records):
            raise ValueError(f"{len(stats)} rows of stats but {len(records)} verdicts")
        self.n += len(stats)
        self.total += stats.sum(axis=0)
        for row, rec in zip(stats, records):
            if rec.get("matched") is None:
                continue
            if not rec["matched"]:
                self.n_unmatched += 1
                continue
            self.n_matched += 1
            self.matched_total += row
            self.rmse_sum += float(rec["rmse"])
            a, b = _group_number(rec.get("spacegroup_in", "")), _group_number(rec.get("spacegroup_out", ""))
            if a is not None and b is not None:
                self.spacegroup_kept += a == b
                self.system_kept += crystal_system(a) == crystal_system(b)
        if groups is None or _nested:
            return
        for k, (system, bucket) in enumerate(groups):
            for name, label in (("by_crystal_system", system), ("by_atom_count", bucket)):
                part = self.groups[name].setdefault(label, Tally())
                part.add(stats[k : k + 1], records[k : k + 1], None, _nested=True)

    def metrics(self) -> dict[str, float]:
        """The metrics of :func:`~nesf.metrics.report.evaluate_reconstruction` (NaN for matching when skipped)."""
        from nesf.metrics.matcher import MATCHER_SETTINGS
        from nesf.metrics.report import MATCHED_KEYS

        if not self.n:
            raise ValueError("no crystals to evaluate")
        out: dict[str, float] = dict(paper_from_stats(self.total, self.n))
        nan = float("nan")
        judged = self.n_matched + self.n_unmatched
        if not judged:
            return {**out, **dict.fromkeys(MATCHED_KEYS, nan)}
        found = self.n_matched
        rmse = self.rmse_sum / found if found else nan
        sub = paper_from_stats(self.matched_total, found) if found else {}
        matched = {
            "match_rate_pct": 100.0 * found / judged,
            "rmse": rmse,
            "rmse_matched": rmse,
            "rmse_all": (self.rmse_sum + MATCHER_SETTINGS["stol"] * self.n_unmatched) / judged,
            "position_error_actual_matched": sub.get("position_error_actual", nan),
            "position_error_detected_matched": sub.get("position_error_detected", nan),
            "spacegroup_kept_pct": 100.0 * self.spacegroup_kept / found if found else nan,
            "crystal_system_kept_pct": 100.0 * self.system_kept / found if found else nan,
        }
        return {**out, **{key: matched[key] for key in MATCHED_KEYS}}

    def breakdown(self) -> dict[str, dict[str, dict]]:
        """Metrics per crystal system and per atoms-per-cell bucket, as :func:`~nesf.metrics.breakdown.breakdown`."""
        from nesf.data.domain import CRYSTAL_SYSTEMS
        from nesf.metrics.breakdown import ATOM_BUCKETS, atom_bucket

        orders = {
            "by_crystal_system": [*CRYSTAL_SYSTEMS, "unknown"],
            "by_atom_count": [atom_bucket(b) for b in ATOM_BUCKETS] + [atom_bucket(ATOM_BUCKETS[-1] + 1)],
        }
        out: dict[str, dict[str, dict]] = {}
        for name, order in orders.items():
            out[name] = {}
            for label in order:
                part = self.groups[name].get(label)
                if part is None:
                    continue
                m = {"n_structures": part.n, **paper_from_stats(part.total, part.n)}
                if part.n_matched + part.n_unmatched == part.n:
                    m["match_rate_pct"] = 100.0 * part.n_matched / part.n
                    m["rmse"] = part.rmse_sum / part.n_matched if part.n_matched else None
                out[name][label] = m
        return out


__all__ = ["STAT_COLUMNS", "Tally", "crystal_stats", "paper_from_stats", "position_errors"]
