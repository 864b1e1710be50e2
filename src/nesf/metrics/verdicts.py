"""Per-crystal verdicts: which crystals came back, and which lay outside the model's domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nesf.data.crystal import Crystal
from nesf.reconstruction.symmetry import REPORT_SYMPREC, space_group

#: Columns of the per-crystal table, CSV and JSON records, in order.
VERDICT_KEYS = (
    "id",
    "formula_in",
    "formula_out",
    "n_atoms_in",
    "n_atoms_out",
    "matched",
    "rmse",
    "position_error",
    "spacegroup_in",
    "spacegroup_out",
    "spacegroup_symprec",
    "symmetrized_symprec",
    "in_domain",
    "warnings",
)


@dataclass
class StructureVerdict:
    """What became of one crystal.

    Attributes:
        id: the crystal's id.
        formula_in: reduced formula of the input.
        formula_out: reduced formula of the reconstruction (``""`` when no atom came back).
        n_atoms_in: atoms in the input cell.
        n_atoms_out: atoms in the reconstruction.
        matched: pymatgen StructureMatcher (CDVAE settings) found input and output the same
            (None when matching was skipped).
        rmse: the matcher's normalised RMSE when matched, else None.
        position_error: mean over the input's atoms of the distance to the nearest reconstructed
            atom, Angstrom (the paper's actual position error of this one crystal, in the model's
            frame); None when no atom came back or it was not computed.
        spacegroup_in: the input's space group, symbol and international number (``"Fm-3m (225)"``;
            spglib at ``spacegroup_symprec``); ``""`` when spglib finds none.
        spacegroup_out: the reconstruction's, likewise (``""`` also when no atom came back).
        spacegroup_symprec: the tolerance of both searches, Angstrom.
        symmetrized_symprec: the tolerance at which the reconstruction was snapped onto its
            space group (:func:`nesf.reconstruction.symmetry.symmetrize`), None when it was not.
        in_domain: the input lies inside the model's training domain.
        warnings: why it does not (empty when inside).
    """

    id: str
    formula_in: str
    formula_out: str
    n_atoms_in: int
    n_atoms_out: int
    matched: bool | None
    rmse: float | None
    position_error: float | None = None
    spacegroup_in: str = ""
    spacegroup_out: str = ""
    spacegroup_symprec: float = REPORT_SYMPREC
    symmetrized_symprec: float | None = None
    in_domain: bool = True
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain-data record with the keys of :data:`VERDICT_KEYS`."""
        return asdict(self)


def make_verdicts(
    true: Sequence[Crystal],
    pred: Sequence[Crystal],
    rmse: Sequence[float | None] | None,
    warnings: Sequence[list[str]] | None = None,
    position_errors: Sequence[float | None] | None = None,
) -> list[StructureVerdict]:
    """One verdict per (input, reconstruction) pair; ``rmse`` None: matching skipped.

    ``position_errors`` (Angstrom, one per pair, see
    :func:`~nesf.metrics.accumulate.position_errors`) fill the verdicts' ``position_error``.

    Space groups are searched at :data:`~nesf.reconstruction.symmetry.REPORT_SYMPREC` (one spglib
    call per crystal).
    """
    out = []
    for i, (t, p) in enumerate(zip(true, pred)):
        r = None if rmse is None else rmse[i]
        w = list(warnings[i]) if warnings is not None else []
        pos = None if position_errors is None else position_errors[i]
        g_in, g_out = space_group(t, REPORT_SYMPREC), space_group(p, REPORT_SYMPREC)
        snapped = p.info.get("symmetrized")
        out.append(
            StructureVerdict(
                id=t.id,
                formula_in=t.formula,
                formula_out=p.formula if p.n_atoms else "",
                n_atoms_in=t.n_atoms,
                n_atoms_out=p.n_atoms,
                matched=None if rmse is None else r is not None,
                rmse=None if r is None else float(r),
                position_error=None if pos is None else float(pos),
                spacegroup_in="" if g_in is None else str(g_in),
                spacegroup_out="" if g_out is None else str(g_out),
                symmetrized_symprec=float(snapped["symprec"]) if isinstance(snapped, dict) else None,
                in_domain=not w,
                warnings=w,
            )
        )
    return out


def matched_line(verdicts: Sequence[StructureVerdict]) -> str:
    """``"k of n matched"`` (with the out-of-domain count when there are any)."""
    n = len(verdicts)
    k = sum(1 for v in verdicts if v.matched)
    line = f"{k} of {n} matched (StructureMatcher stol=0.5, angle_tol=10, ltol=0.3)"
    outside = sum(1 for v in verdicts if not v.in_domain)
    if outside:
        line += f"; {outside} outside the model's domain"
    return line


def format_verdicts(verdicts: Sequence[StructureVerdict], limit: int | None = None) -> str:
    """Per-crystal text table; at most ``limit`` rows (the rest counted in a last line)."""
    shown = list(verdicts if limit is None else verdicts[:limit])
    header = ("id", "input", "output", "atoms in/out", "matched", "RMSE", "pos err A", "space group in -> out")
    header += ("in domain",)
    rows = [
        (
            v.id,
            v.formula_in,
            v.formula_out or "-",
            f"{v.n_atoms_in}/{v.n_atoms_out}",
            "n/a" if v.matched is None else ("yes" if v.matched else "no"),
            "-" if v.rmse is None else f"{v.rmse:.4f}",
            "-" if v.position_error is None else f"{v.position_error:.3f}",
            f"{v.spacegroup_in or '-'} -> {v.spacegroup_out or '-'}",
            "yes" if v.in_domain else "NO",
        )
        for v in shown
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(f"{h:<{w}}" for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip() for r in rows]
    if limit is not None and len(verdicts) > limit:
        lines.append(f"... {len(verdicts) - limit} more (all of them with --csv or --json)")
    return "\n".join(lines)


def write_verdicts_csv(path: str | Path, verdicts: Sequence[StructureVerdict]) -> Path:
    """The per-crystal table as CSV (warnings joined by ``"; "``), atomically."""
    import csv

    from nesf.io.writers import atomic_write

    def write(p: Path) -> None:
        with open(p, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(VERDICT_KEYS)
            for v in verdicts:
                d = v.to_dict()
                d["warnings"] = "; ".join(d["warnings"])
                w.writerow(["" if d[k] is None else d[k] for k in VERDICT_KEYS])

    return atomic_write(path, write)


__all__ = ["StructureVerdict", "VERDICT_KEYS", "format_verdicts", "make_verdicts", "matched_line", "write_verdicts_csv"]
