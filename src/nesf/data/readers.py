"""Readers: extxyz, CIF (file or folder), CDVAE-style CSV, POSCAR, pymatgen JSON, ASE files and objects.

All readers return ``list[Crystal]`` and raise :class:`~nesf.errors.CrystalInputError`
naming the file and the frame, row or block for anything that is not a valid crystal.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from nesf.data.cif import crystals_from_cif_text, read_cif
from nesf.data.cif_check import quote
from nesf.data.crystal import Crystal
from nesf.data.extxyz import crystals_from_frames, iter_extxyz, read_extxyz, scalar_properties
from nesf.data.textfile import FLOAT, check_complete, check_size, short_message
from nesf.errors import CrystalInputError

#: File suffixes understood by :func:`read_crystals`.
EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
CIF_SUFFIXES = (".cif",)
CSV_SUFFIXES = (".csv",)
VASP_SUFFIXES = (".vasp", ".poscar")
JSON_SUFFIXES = (".json",)
ASE_SUFFIXES = (".traj", ".db")
PREPARED_SUFFIXES = (".pt",)
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
            of ``.cif`` files, a ``.csv`` file with a ``cif`` column (CDVAE convention), a prepared
            set ``.pt`` written by ``nesf prepare`` (:mod:`nesf.data.prepared`), or a
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


def iter_crystals(source: str | Path | Sequence[Any], conventional: bool = False) -> Iterator[Crystal]:
    """The crystals of a source one by one, as :func:`read_crystals` reads them, in the same order.

    extxyz files are read a group of frames at a time and CSVs a row at a time, so memory stays
    bounded whatever the file's size; folders are read file by file.
    """
    items = [source] if isinstance(source, (str, Path)) or _is_single(source) else source
    for k, item in enumerate(items):
        if not isinstance(item, (str, Path)):
            found: Iterable[Crystal] = [to_crystal(item, default_id=f"structure-{k}").validate("<input>", f"item {k}")]
        else:
            path = Path(item)
            files = folder_files(path) if path.is_dir() else [path]
            found = (c for f in files for c in _iter_path(f))
        for c in found:
            yield c.to_conventional() if conventional else c


def _iter_path(path: Path) -> Iterator[Crystal]:
    """One file's crystals one by one (extxyz and CSV lazily, other formats whole), tagged with their source."""
    if path.is_file() and path.stat().st_size > 0 and path.suffix.lower() in EXTXYZ_SUFFIXES + CSV_SUFFIXES:
        reader = iter_extxyz if path.suffix.lower() in EXTXYZ_SUFFIXES else iter_csv
        n = 0
        for c in reader(path):
            c.info.setdefault("source", str(path))
            n += 1
            yield c
        if n == 0:
            empty = "the CSV has no rows" if reader is iter_csv else "the file holds no structures"
            raise CrystalInputError(str(path), empty)
        return
    yield from _read_path(path)


def _read_path(path: Path) -> list[Crystal]:
    crystals = _read_path_untagged(path)
    for c in crystals:
        c.info.setdefault("source", str(path) if not path.is_dir() else str(path / c.id))
    return crystals


def _read_path_untagged(path: Path) -> list[Crystal]:
    if not path.exists():
        raise CrystalInputError(str(path), "no such file or folder")
    if path.is_dir():
        return read_folder(path)
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
    if suffix in PREPARED_SUFFIXES:
        from nesf.data.prepared import read_prepared

        return read_prepared(path)
    sniffed = _sniff(path)
    if sniffed is not None:
        return sniffed(path)
    raise CrystalInputError(
        str(path),
        f"unknown file type {suffix or '(no suffix)'!r} and content not recognised (expected CIF, POSCAR/CONTCAR/"
        ".vasp, pymatgen .json, .extxyz/.xyz, ASE .traj/.db, a CSV with a 'cif' column, a folder of CIFs, or a "
        "prepared set .pt)",
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
    check_size(path, 50_000_000)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not text (is it really a POSCAR?)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    check_complete(text, str(path))
    _check_poscar_numbers(text, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Poscar.from_str(text).structure
    except Exception as exc:  # pymatgen raises ValueError, IndexError... on bad files
        raise CrystalInputError(str(path), f"could not parse POSCAR: {short_message(exc)}") from None
    return [Crystal.from_pymatgen(structure, id=path.stem if path.suffix else path.name).validate(str(path))]


def _check_poscar_numbers(text: str, source: str) -> None:
    """Every number that places an atom in a POSCAR must be one by its grammar (not ``1_000``, ``inf`` or ``nan``)."""
    from nesf.data.cif_check import MAX_FRACTION

    lines = [ln.split() for ln in text.split("\n")]
    if len(lines) < 8:
        raise CrystalInputError(source, "could not parse POSCAR: fewer than 8 lines")

    def numbers(k: int, count: int, what: str) -> list[float]:
        row = lines[k] if k < len(lines) else []
        if len(row) < count or not all(re.fullmatch(FLOAT, v) for v in row[:count]):
            found = quote(" ".join(row))
            raise CrystalInputError(source, f"line {k + 1}: {what} must be {count} numbers, found {found}")
        return [float(v) for v in row[:count]]

    numbers(1, 1, "the scale factor")
    for k in (2, 3, 4):
        numbers(k, 3, "a lattice vector")
    k = 5 if not lines[5] or not lines[5][0].lstrip("+-").isdigit() else 4
    counts_row = lines[k + 1] if k == 5 else lines[5]
    if not counts_row or not all(v.isdigit() for v in counts_row):
        raise CrystalInputError(source, f"line {k + 2}: the atom counts {quote(' '.join(counts_row))} are not numbers")
    n = sum(int(v) for v in counts_row)
    k = k + 2
    if lines[k] and lines[k][0][:1].lower() == "s":  # selective dynamics
        k += 1
    direct = not (lines[k] and lines[k][0][:1].lower() in "ck")
    for j in range(k + 1, k + 1 + n):
        coords = numbers(j, 3, "an atom's coordinates")
        if direct and max(abs(x) for x in coords) > MAX_FRACTION:
            raise CrystalInputError(
                source, f"line {j + 1}: a fractional coordinate lies more than {MAX_FRACTION:g} cells away"
            )


def read_pymatgen_json(path: str | Path) -> list[Crystal]:
    """Read a pymatgen ``Structure`` JSON file (``Structure.as_dict()``), or a JSON list of them."""
    import json

    from pymatgen.core import Structure

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CrystalInputError(str(path), f"not a JSON file: {short_message(exc)}") from None
    items = data if isinstance(data, list) else [data]
    crystals = []
    for i, item in enumerate(items):
        where = f"item {i}" if isinstance(data, list) else None
        if not isinstance(item, dict) or "lattice" not in item or "sites" not in item:
            raise CrystalInputError(str(path), "not a pymatgen Structure (needs 'lattice' and 'sites')", where)
        try:
            structure = Structure.from_dict(item)
        except Exception as exc:  # malformed dicts raise KeyError, TypeError, ValueError...
            reason = f"could not read the pymatgen Structure: {short_message(exc)}"
            raise CrystalInputError(str(path), reason, where) from None
        cid = path.stem if not isinstance(data, list) else f"{path.stem}-{i}"
        cid = str(structure.properties.get("material_id", cid)) if structure.properties else cid
        crystal = Crystal.from_pymatgen(structure, id=cid).validate(str(path), where)
        properties = scalar_properties(structure.properties or {}, skip=("material_id",))
        if properties:
            crystal.info["properties"] = properties
        crystals.append(crystal)
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
        raise CrystalInputError(str(path), f"could not read with ASE: {short_message(exc)}") from None
    return crystals_from_frames(frames, path)


def folder_files(folder: str | Path) -> list[Path]:
    """The crystal files of a folder, in its subfolders too, in sorted path order.

    A crystal file has a known suffix or name (CIF, POSCAR/CONTCAR/``.vasp``, extxyz, pymatgen
    JSON, ASE, CSV) or content recognised as one; hidden files and others (notes, pictures) are
    not crystal files.
    """
    folder = Path(folder)
    known = EXTXYZ_SUFFIXES + CIF_SUFFIXES + CSV_SUFFIXES + VASP_SUFFIXES + JSON_SUFFIXES + ASE_SUFFIXES
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and (
            p.suffix.lower() in known
            or any(p.name.upper().startswith(n) for n in VASP_NAMES)
            or (p.stat().st_size > 0 and _sniff(p) is not None)
        )
    )
    if not files:
        raise CrystalInputError(
            str(folder), "the folder holds no crystal files (CIF, POSCAR/CONTCAR/.vasp, extxyz, JSON, ASE, CSV)"
        )
    return files


def read_folder(folder: str | Path) -> list[Crystal]:
    """Read every crystal file of a folder (see :func:`folder_files`), in sorted path order.

    A crystal file that cannot be read is refused, naming it (the CLI's ``--skip-invalid``
    lists such files and goes on).
    """
    crystals: list[Crystal] = []
    for f in folder_files(folder):
        crystals.extend(_read_path(f))
    return crystals


def read_cif_folder(folder: str | Path) -> list[Crystal]:
    """Read every file of a folder of CIFs (an alias of :func:`read_folder`, which reads any crystal file)."""
    return read_folder(folder)


def read_csv(path: str | Path) -> list[Crystal]:
    """Read a CDVAE-style CSV: one CIF per row in a ``cif`` column, ids from ``material_id``."""
    crystals = list(iter_csv(path))
    if not crystals:
        raise CrystalInputError(str(path), "the CSV has no rows")
    return crystals


def iter_csv(path: str | Path) -> Iterator[Crystal]:
    """The crystals of a CDVAE-style CSV one row at a time; its other columns become ``info["properties"]``."""
    path = Path(path)
    csv.field_size_limit(1 << 28)
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        if fh.read(1) not in (b"\n", b"\r"):
            check_complete(path.read_text(errors="replace")[-200:], str(path))
    try:
        yield from _csv_rows(path)
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not UTF-8 text (is it really a CSV?)") from None
    except csv.Error as exc:
        raise CrystalInputError(str(path), f"not a well-formed CSV: {short_message(exc)}") from None


def _csv_rows(path: Path) -> Iterator[Crystal]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, strict=True)
        columns = reader.fieldnames or []
        if "cif" not in columns:
            shown = ", ".join(repr(c.strip().splitlines()[0][:30]) if c.strip() else "''" for c in columns[:6])
            more = f" and {len(columns) - 6} more" if len(columns) > 6 else ""
            raise CrystalInputError(
                str(path), f"the CSV has no 'cif' column (its header: {shown or 'none'}{more}; a header row is needed)"
            )
        for i, row in enumerate(reader):
            where = f"row {i + 1}"
            cid = (row.get("material_id") or "").strip() or f"{path.stem}-{i}"
            found = crystals_from_cif_text(row["cif"] or "", source=str(path), stem=cid, location=where)
            if len(found) != 1:
                raise CrystalInputError(str(path), f"expected one structure, found {len(found)}", where)
            found[0].id = cid
            properties = {k: _csv_value(v) for k, v in row.items() if k and k not in ("cif", "material_id")}
            if properties:
                found[0].info["properties"] = properties
            yield found[0]


def _csv_value(text: str | None) -> float | int | str:
    """A CSV cell as a number where it is one (by the grammar of numbers, not Python's), else as text."""
    text = (text or "").strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(FLOAT, text):
        return float(text)
    return text


def from_objects(objects: Iterable[Any]) -> list[Crystal]:
    """Convert pymatgen ``Structure``, ASE ``Atoms`` or :class:`Crystal` objects, or read paths among them.

    A single object (not in a list) is accepted too; a path (``str`` or ``Path``) in the list is
    read as :func:`read_crystals` reads it.
    """
    if _is_single(objects):
        objects = [objects]
    crystals = []
    for i, obj in enumerate(objects):
        if isinstance(obj, (str, Path)):
            crystals.extend(_read_path(Path(obj)))
            continue
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
