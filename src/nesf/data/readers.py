"""Readers: extxyz, CIF (file or folder), CDVAE-style CSV, POSCAR, pymatgen JSON, ASE files and objects.

All readers return ``list[Crystal]`` and raise :class:`~nesf.errors.CrystalInputError`
naming the file and the frame, row or block for anything that is not a valid crystal.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nesf.data.crystal import Crystal
from nesf.errors import CrystalInputError

#: File suffixes understood by :func:`read_crystals`.
EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
CIF_SUFFIXES = (".cif",)
CSV_SUFFIXES = (".csv",)
VASP_SUFFIXES = (".vasp", ".poscar")
JSON_SUFFIXES = (".json",)
ASE_SUFFIXES = (".traj", ".db")
#: File names (without suffix) read as VASP structure files.
VASP_NAMES = ("POSCAR", "CONTCAR")


def read_crystals(
    source: str | Path | Sequence[Any],
    conventional: bool = False,
) -> list[Crystal]:
    """Read crystals from a path or from in-memory objects.

    Args:
        source: an ``.extxyz``/``.xyz`` file, a ``.cif`` file, a VASP file (POSCAR, CONTCAR,
            ``.vasp``), a pymatgen ``Structure`` ``.json``, an ASE ``.traj``/``.db``, a folder
            of ``.cif`` files, a ``.csv`` file with a ``cif`` column (CDVAE convention), or a
            sequence of pymatgen ``Structure``, ASE ``Atoms`` or :class:`Crystal` objects. Files
            without a known suffix are recognised by their content.
        conventional: convert every crystal to its conventional standard cell (as the
            NeSF paper did), with pymatgen's ``SpacegroupAnalyzer``.

    Returns:
        The crystals, validated (atoms present, finite, non-zero volume).

    Raises:
        CrystalInputError: the source is missing, empty, malformed, or holds an invalid crystal.
    """
    if isinstance(source, (str, Path)):
        crystals = _read_path(Path(source))
    else:
        crystals = from_objects(source)
    if conventional:
        crystals = [c.to_conventional() for c in crystals]
    return crystals


def _read_path(path: Path) -> list[Crystal]:
    crystals = _read_path_untagged(path)
    for c in crystals:
        c.info.setdefault("source", str(path) if not path.is_dir() else str(path / c.id))
    return crystals


def _read_path_untagged(path: Path) -> list[Crystal]:
    if not path.exists():
        raise CrystalInputError(str(path), "no such file or folder")
    if path.is_dir():
        return read_cif_folder(path)
    if path.stat().st_size == 0:
        raise CrystalInputError(str(path), "the file is empty")
    suffix = path.suffix.lower()
    if suffix in EXTXYZ_SUFFIXES:
        return read_extxyz(path)
    if suffix in CIF_SUFFIXES:
        return read_cif(path)
    if suffix in CSV_SUFFIXES:
        return read_csv(path)
    if suffix in VASP_SUFFIXES or any(path.name.upper().startswith(n) for n in VASP_NAMES):
        return read_vasp(path)
    if suffix in JSON_SUFFIXES:
        return read_pymatgen_json(path)
    if suffix in ASE_SUFFIXES:
        return read_ase(path)
    sniffed = _sniff(path)
    if sniffed is not None:
        return sniffed(path)
    raise CrystalInputError(
        str(path),
        f"unknown file type {suffix or '(no suffix)'!r} and content not recognised (expected CIF, POSCAR/CONTCAR/"
        ".vasp, pymatgen .json, .extxyz/.xyz, ASE .traj/.db, a CSV with a 'cif' column, or a folder of CIFs)",
    )


def _sniff(path: Path):  # noqa: ANN202
    """A reader chosen by the file's first bytes, or None."""
    try:
        head = path.read_bytes()[:4096].decode("utf-8-sig", errors="replace")
    except OSError:
        return None
    stripped = head.lstrip()
    if stripped.startswith("{"):
        return read_pymatgen_json
    if any(line.strip().lower().startswith("data_") for line in head.splitlines()[:50]):
        return read_cif
    lines = [ln for ln in head.splitlines() if ln.strip()]
    if len(lines) >= 8:
        try:
            float(lines[1].split()[0])
            if all(len(ln.split()) >= 3 for ln in lines[2:5]):
                return read_vasp
        except (ValueError, IndexError):
            return None
    return None


def read_vasp(path: str | Path) -> list[Crystal]:
    """Read a VASP structure file (POSCAR, CONTCAR, ``.vasp``) with pymatgen; the id is the file name."""
    from pymatgen.io.vasp import Poscar

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Poscar.from_file(str(path), check_for_potcar=False).structure
    except Exception as exc:  # pymatgen raises ValueError, IndexError... on bad files
        raise CrystalInputError(str(path), f"could not parse POSCAR: {_short(exc)}") from None
    return [Crystal.from_pymatgen(structure, id=path.stem if path.suffix else path.name).validate(str(path))]


def read_pymatgen_json(path: str | Path) -> list[Crystal]:
    """Read a pymatgen ``Structure`` JSON file (``Structure.as_dict()``), or a JSON list of them."""
    import json

    from pymatgen.core import Structure

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CrystalInputError(str(path), f"not a JSON file: {_short(exc)}") from None
    items = data if isinstance(data, list) else [data]
    crystals = []
    for i, item in enumerate(items):
        where = f"item {i}" if isinstance(data, list) else None
        if not isinstance(item, dict) or "lattice" not in item or "sites" not in item:
            raise CrystalInputError(str(path), "not a pymatgen Structure (needs 'lattice' and 'sites')", where)
        try:
            structure = Structure.from_dict(item)
        except Exception as exc:  # malformed dicts raise KeyError, TypeError, ValueError...
            raise CrystalInputError(str(path), f"could not read the pymatgen Structure: {_short(exc)}", where) from None
        cid = path.stem if not isinstance(data, list) else f"{path.stem}-{i}"
        cid = str(structure.properties.get("material_id", cid)) if structure.properties else cid
        crystals.append(Crystal.from_pymatgen(structure, id=cid).validate(str(path), where))
    if not crystals:
        raise CrystalInputError(str(path), "the JSON list holds no structures")
    return crystals


def read_ase(path: str | Path) -> list[Crystal]:
    """Read every structure of an ASE trajectory (``.traj``) or database (``.db``)."""
    import ase.io

    path = Path(path)
    try:
        frames = ase.io.read(str(path), index=":")
    except Exception as exc:  # ase raises many kinds of errors for malformed files
        raise CrystalInputError(str(path), f"could not read with ASE: {_short(exc)}") from None
    if not frames:
        raise CrystalInputError(str(path), "the file holds no structures")
    crystals = []
    for i, atoms in enumerate(frames):
        where = f"frame {i}"
        if not np.all(atoms.pbc) or atoms.cell.rank < 3:
            raise CrystalInputError(str(path), "the structure has no 3D periodic cell", where)
        crystal = Crystal.from_ase(atoms, id=str(atoms.info.get("material_id", f"{path.stem}-{i}")))
        crystals.append(crystal.validate(str(path), where))
    return crystals


def read_extxyz(path: str | Path) -> list[Crystal]:
    """Read every frame of an extended-XYZ file; the id is the frame's ``material_id``."""
    import ase.io

    path = Path(path)
    try:
        frames = ase.io.read(str(path), index=":", format="extxyz")
    except Exception as exc:  # ase raises many kinds of errors for malformed files
        raise CrystalInputError(str(path), f"could not parse extxyz: {_short(exc)}") from None
    if not frames:
        raise CrystalInputError(str(path), "the file holds no structures")
    crystals = []
    for i, atoms in enumerate(frames):
        where = f"frame {i}"
        if not np.all(atoms.pbc) or atoms.cell.rank < 3:
            raise CrystalInputError(str(path), "the frame has no 3D periodic cell (Lattice= missing?)", where)
        crystal = Crystal.from_ase(atoms, id=str(atoms.info.get("material_id", f"{path.stem}-{i}")))
        crystals.append(crystal.validate(str(path), f"{where} ({crystal.id})"))
    return crystals


def read_cif(path: str | Path) -> list[Crystal]:
    """Read every data block of a CIF file; ids are ``<stem>`` or ``<stem>-<block>``."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not text (is it really a CIF?)") from None
    return _crystals_from_cif_text(text, source=str(path), stem=path.stem)


def read_cif_folder(folder: str | Path) -> list[Crystal]:
    """Read every ``*.cif`` file of a folder, in sorted name order."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in CIF_SUFFIXES and p.is_file())
    if not files:
        raise CrystalInputError(str(folder), "the folder holds no .cif files")
    crystals: list[Crystal] = []
    for f in files:
        if f.stat().st_size == 0:
            raise CrystalInputError(str(f), "the file is empty")
        crystals.extend(read_cif(f))
    return crystals


def read_csv(path: str | Path) -> list[Crystal]:
    """Read a CDVAE-style CSV: one CIF per row in a ``cif`` column, ids from ``material_id``."""
    path = Path(path)
    csv.field_size_limit(1 << 28)
    try:
        return _read_csv_rows(path)
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not UTF-8 text (is it really a CSV?)") from None


def _read_csv_rows(path: Path) -> list[Crystal]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "cif" not in columns:
            raise CrystalInputError(str(path), f"the CSV has no 'cif' column (columns: {', '.join(columns) or 'none'})")
        crystals = []
        for i, row in enumerate(reader):
            where = f"row {i + 1}"
            cid = (row.get("material_id") or "").strip() or f"{path.stem}-{i}"
            found = _crystals_from_cif_text(row["cif"] or "", source=str(path), stem=cid, location=where)
            if len(found) != 1:
                raise CrystalInputError(str(path), f"expected one structure, found {len(found)}", where)
            found[0].id = cid
            crystals.append(found[0])
    if not crystals:
        raise CrystalInputError(str(path), "the CSV has no rows")
    return crystals


def _crystals_from_cif_text(text: str, source: str, stem: str, location: str | None = None) -> list[Crystal]:
    from pymatgen.io.cif import CifParser

    if not text.strip():
        raise CrystalInputError(source, "the CIF is empty", location)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser(io.StringIO(text), occupancy_tolerance=1.0)
            structures = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError... on bad CIFs
        if "thickness" in str(exc) or "Singular matrix" in str(exc):  # flat or zero-length cell
            raise CrystalInputError(
                source, "the lattice has zero volume: its vectors are not independent (flat cell)", location
            ) from None
        raise CrystalInputError(source, f"could not parse CIF: {_short(exc)}", location) from None
    if not structures:
        raise CrystalInputError(source, "the CIF holds no structure", location)
    crystals = []
    for j, structure in enumerate(structures):
        where = location or (f"block {j}" if len(structures) > 1 else None)
        if not structure.is_ordered:
            raise CrystalInputError(
                source, "partial occupancies are not supported (the structure is disordered)", where
            )
        cid = stem if len(structures) == 1 else f"{stem}-{j}"
        crystals.append(Crystal.from_pymatgen(structure, id=cid).validate(source, where))
    return crystals


def from_objects(objects: Iterable[Any]) -> list[Crystal]:
    """Convert pymatgen ``Structure``, ASE ``Atoms`` or :class:`Crystal` objects.

    A single object (not in a list) is accepted too.
    """
    if _is_single(objects):
        objects = [objects]
    crystals = []
    for i, obj in enumerate(objects):
        where = f"item {i}"
        crystals.append(to_crystal(obj, default_id=f"structure-{i}").validate("<input>", where))
    if not crystals:
        raise CrystalInputError("<input>", "no structures given")
    return crystals


def to_crystal(obj: Any, default_id: str = "") -> Crystal:
    """One pymatgen ``Structure``, ASE ``Atoms`` or :class:`Crystal` -> :class:`Crystal`."""
    if isinstance(obj, Crystal):
        return obj
    try:
        from pymatgen.core import Structure

        if isinstance(obj, Structure):
            cid = str(obj.properties.get("material_id", default_id)) if hasattr(obj, "properties") else default_id
            return Crystal.from_pymatgen(obj, id=cid)
    except ImportError:  # pragma: no cover
        pass
    try:
        from ase import Atoms

        if isinstance(obj, Atoms):
            return Crystal.from_ase(obj, id=str(obj.info.get("material_id", default_id)))
    except ImportError:  # pragma: no cover
        pass
    raise CrystalInputError("<input>", f"cannot read a crystal from an object of type {type(obj).__name__}")


def _is_single(obj: Any) -> bool:
    if isinstance(obj, Crystal):
        return True
    try:
        from ase import Atoms
        from pymatgen.core import Structure
    except ImportError:  # pragma: no cover
        return False
    return isinstance(obj, (Structure, Atoms))


def _short(exc: Exception) -> str:
    """One line of an exception's message (all its lines joined), at most 300 characters."""
    parts = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " / ".join(parts) if parts else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
