"""Targets of crystals for design: the property values they carry, and the seeded split the shipped models used.

Crystals read from a CSV carry its scalar columns, and extxyz frames their scalar ``info`` keys,
in ``crystal.info["properties"]``. For files read before that was recorded, :func:`targets`
falls back to the CSV's column by ``material_id`` when given the file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nesf.data.crystal import Crystal
from nesf.errors import CrystalInputError


def seeded_split(n: int, fraction: float = 0.9, seed: int = 0) -> np.ndarray:
    """Which of ``n`` crystals fall in the first part of ``nesf split --fraction F --seed S`` ``[n]`` bool.

    The same permutation and rounding as the command, so the shipped models' training split of
    a CSV is recovered without writing it out.
    """
    order = np.random.default_rng(seed).permutation(n)
    first = min(n - 1, max(1, round(fraction * n)))
    mask = np.zeros(n, dtype=bool)
    mask[order[:first]] = True
    return mask


def _csv_column(path: Path, key: str) -> dict[str, str]:
    """``material_id`` -> the value of column ``key`` in a CSV (empty if the file has no such column)."""
    csv.field_size_limit(1 << 28)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if key not in (reader.fieldnames or []):
            return {}
        return {(row.get("material_id") or "").strip(): row[key] for row in reader}


def targets(
    crystals: Sequence[Crystal], key: str, source: str | Path | None = None, required: bool = True
) -> np.ndarray:
    """The values ``[N]`` of property ``key`` of each crystal (NaN where one has none and not ``required``).

    Read from ``crystal.info["properties"]``; where a crystal has none and ``source`` is a CSV,
    from its column ``key`` by ``material_id``.

    Raises:
        CrystalInputError: ``required`` and some crystal has no finite value of ``key`` (the
            message names the file, the key and the properties it does carry).
    """
    out = np.full(len(crystals), np.nan)
    column: dict[str, str] | None = None
    for i, c in enumerate(crystals):
        value = (c.info.get("properties") or {}).get(key)
        if value is None and source is not None and str(source).lower().endswith(".csv"):
            if column is None:
                column = _csv_column(Path(source), key)
            value = column.get(c.id)
        try:
            out[i] = float(value) if value is not None and value != "" else math.nan
        except (TypeError, ValueError):
            out[i] = math.nan
    missing = np.flatnonzero(~np.isfinite(out))
    if required and len(missing):
        first = crystals[int(missing[0])]
        carried = sorted((first.info.get("properties") or {}).keys())
        raise CrystalInputError(
            str(source or "the crystals"),
            f"{len(missing)} of {len(crystals)} crystals carry no numeric {key!r} (crystal {first.id!r} carries: "
            f"{', '.join(carried) or 'no properties'})",
        )
    return out


def carries(crystals: Sequence[Crystal], key: str, source: str | Path | None = None) -> bool:
    """Whether every crystal has a numeric value of ``key`` (see :func:`targets`)."""
    return bool(len(crystals)) and bool(np.isfinite(targets(crystals, key, source, required=False)).all())


__all__ = ["carries", "seeded_split", "targets"]
