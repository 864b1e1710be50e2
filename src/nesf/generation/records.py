"""What ``nesf sample`` made: one record per sampled crystal, and a short table of them."""

from __future__ import annotations

from collections.abc import Sequence

from nesf.data.crystal import Crystal

#: Tolerance (Angstrom) of the space-group search of sampled crystals (spglib).
SAMPLE_SYMPREC = 0.1


def space_group_label(crystal: Crystal, symprec: float = SAMPLE_SYMPREC) -> str:
    """``"Fm-3m (225)"`` (spglib at ``symprec`` Angstrom), or ``""`` where spglib finds none."""
    from nesf.data.domain import symmetry_dataset

    if not crystal.n_atoms:
        return ""
    data = symmetry_dataset(crystal, symprec)
    return "" if data is None else f"{data.international} ({int(data.number)})"


def sample_records(crystals: Sequence[Crystal], symprec: float = SAMPLE_SYMPREC) -> list[dict]:
    """One plain-data record per sampled crystal.

    Keys: ``id``, ``formula`` (reduced), ``n_atoms``, ``spacegroup`` (:func:`space_group_label`),
    ``spacegroup_symprec`` (Angstrom) and ``valid``: structural validity as the generation
    metrics count it (:func:`nesf.metrics.generation.structure_valid`: every interatomic
    distance >= 0.5 A, volume >= 0.1 A^3).
    """
    from nesf.metrics.generation import structure_valid

    return [
        {
            "id": c.id,
            "formula": c.formula,
            "n_atoms": c.n_atoms,
            "spacegroup": space_group_label(c, symprec),
            "spacegroup_symprec": symprec,
            "valid": bool(structure_valid(c)),
        }
        for c in crystals
    ]


def format_samples(records: Sequence[dict], limit: int | None = 25) -> str:
    """A short text table of :func:`sample_records` (at most ``limit`` rows; the rest counted)."""
    shown = list(records if limit is None else records[:limit])
    header = ("id", "formula", "atoms", f"space group ({SAMPLE_SYMPREC:g} A)", "valid")
    rows = [
        (r["id"], r["formula"], str(r["n_atoms"]), r["spacegroup"] or "-", "yes" if r["valid"] else "NO") for r in shown
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(f"{h:<{w}}" for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip() for row in rows]
    if limit is not None and len(records) > limit:
        lines.append(f"... {len(records) - limit} more (all of them in summary.json)")
    return "\n".join(lines)


__all__ = ["SAMPLE_SYMPREC", "format_samples", "sample_records", "space_group_label"]
