"""Readers: extxyz, CIF (file or folder), CDVAE-style CSV, POSCAR, pymatgen JSON, ASE files and objects.

All readers return ``list[Crystal]`` and raise :class:`~nesf.errors.CrystalInputError`
naming the file and the frame, row or block for anything that is not a valid crystal.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nesf.data.cif_check import quote
from nesf.data.crystal import Crystal
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
    _check_size(path, 50_000_000)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not text (is it really a POSCAR?)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    _check_complete(text, str(path))
    _check_poscar_numbers(text, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Poscar.from_str(text).structure
    except Exception as exc:  # pymatgen raises ValueError, IndexError... on bad files
        raise CrystalInputError(str(path), f"could not parse POSCAR: {_short(exc)}") from None
    return [Crystal.from_pymatgen(structure, id=path.stem if path.suffix else path.name).validate(str(path))]


def _check_poscar_numbers(text: str, source: str) -> None:
    """Every number that places an atom in a POSCAR must be one by its grammar (not ``1_000``, ``inf`` or ``nan``)."""
    from nesf.data.cif_check import MAX_FRACTION

    lines = [ln.split() for ln in text.split("\n")]
    if len(lines) < 8:
        raise CrystalInputError(source, "could not parse POSCAR: fewer than 8 lines")

    def numbers(k: int, count: int, what: str) -> list[float]:
        row = lines[k] if k < len(lines) else []
        if len(row) < count or not all(re.fullmatch(_FLOAT, v) for v in row[:count]):
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
        raise CrystalInputError(str(path), f"could not read with ASE: {_short(exc)}") from None
    return _crystals_from_frames(frames, path)


def _crystals_from_frames(frames: list, path: Path) -> list[Crystal]:
    """ASE ``Atoms`` frames of a file -> validated crystals (ids from ``material_id`` or ``<stem>-<i>``)."""
    if not frames:
        raise CrystalInputError(str(path), "the file holds no structures")
    crystals = []
    for i, atoms in enumerate(frames):
        where = f"frame {i}"
        if not np.all(atoms.pbc) or atoms.cell.rank < 3:
            raise CrystalInputError(str(path), "the frame has no 3D periodic cell (Lattice= missing?)", where)
        crystal = Crystal.from_ase(atoms, id=str(atoms.info.get("material_id", f"{path.stem}-{i}")))
        properties = scalar_properties(atoms.info, skip=("material_id", "setting"))
        if properties:
            crystal.info["properties"] = properties
        crystals.append(crystal.validate(str(path), f"{where} ({crystal.id})"))
    return crystals


def scalar_properties(values: dict, skip: Sequence[str] = ()) -> dict[str, float | int | str | bool]:
    """The scalar entries of a mapping (numbers, strings, booleans), as plain Python values.

    Crystals carry these as ``info["properties"]`` (a CSV's columns, an extxyz frame's keys),
    and writers put them back.
    """
    out: dict[str, float | int | str | bool] = {}
    for key, value in values.items():
        if key in skip or not isinstance(key, str):
            continue
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
    return out


_MATERIAL_ID = re.compile(r'(?:^|\s)material_id\s*=\s*(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def _prescan_extxyz(text: str, source: str) -> list[str | None]:
    """Check every frame's count line against the lines that follow and the atom limit, before parsing.

    A count line claiming a billion atoms would otherwise make the parser run for hours, and a
    frame whose ``Properties`` lack positions would put every atom at the origin.

    Returns:
        Each frame's ``material_id`` exactly as written (None where it has none): ASE turns ids
        that look like numbers or booleans into them (``007`` -> 7, ``T`` -> True).
    """
    from nesf.data.crystal import LIMITS

    lines = text.splitlines()
    ids: list[str | None] = []
    row_patterns: dict[str, re.Pattern] = {}
    i, frame = 0, 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        first = lines[i].split()[0]
        try:
            n = int(first)
        except ValueError:
            raise CrystalInputError(
                source,
                f"could not parse extxyz: line {i + 1}: expected the atom count of frame {frame}, "
                f"found {lines[i].strip()[:40]!r}",
            ) from None
        where = f"frame {frame}"
        if n < 1:
            raise CrystalInputError(source, f"declares {n} atoms", where)
        if n > LIMITS.max_atoms:
            raise CrystalInputError(
                source, f"declares {n} atoms, more than the limit of {LIMITS.max_atoms} (--max-atoms)", where
            )
        if i + 1 + n >= len(lines):
            raise CrystalInputError(
                source, f"declares {n} atoms but only {max(0, len(lines) - i - 2)} lines follow its comment line", where
            )
        comment = lines[i + 1]
        if "properties=" in comment.lower() and "pos:" not in comment.lower():
            raise CrystalInputError(source, "its Properties list no positions (pos:R:3)", where)
        found = _MATERIAL_ID.search(comment)
        ids.append(None if found is None else (found.group(1) if found.group(1) is not None else found.group(2)))
        if ids[-1] is not None:
            where = f"{where} ({quote(ids[-1])[1:-1]})"
        _check_lattice(comment, source, where)
        spec = _properties_spec(comment)
        pattern = row_patterns.get(spec)
        if pattern is None:
            pattern = row_patterns[spec] = _row_pattern(spec, source, where)
        for k in range(i + 2, i + 2 + n):
            if not pattern.fullmatch(lines[k]):
                if any(t.lower().lstrip("+-") in ("nan", "inf", "infinity") for t in lines[k].split()):
                    raise CrystalInputError(
                        source, f"line {k + 1}: atomic coordinates contain NaN or infinite values", where
                    )
                raise CrystalInputError(
                    source,
                    f"line {k + 1}: {quote(lines[k].strip())} is not an atom row of {spec} (a number that is "
                    "not one, a missing or extra column?)",
                    where,
                )
        i += n + 2
        frame += 1
    return ids


_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_COLUMN = {"R": _FLOAT, "I": r"[+-]?\d+", "L": r"(?:[TF]|True|False|true|false)", "S": r"\S+"}
_PROPERTIES = re.compile(r'(?i)(?:^|\s)properties\s*=\s*"?([^"\s]+)"?')
_LATTICE = re.compile(r'(?i)(?:^|\s)lattice\s*=\s*"([^"]*)"')


def _properties_spec(comment: str) -> str:
    found = _PROPERTIES.search(comment)
    return found.group(1) if found else "species:S:1:pos:R:3"


def _row_pattern(spec: str, source: str, where: str) -> re.Pattern:
    """A regular expression an atom row of the ``Properties`` ``spec`` must match whole (numbers by their grammar)."""
    parts = spec.split(":")
    if len(parts) % 3:
        raise CrystalInputError(source, f"Properties={quote(spec)} is not a list of name:type:count", where)
    columns: list[str] = []
    for k in range(0, len(parts), 3):
        kind, count = parts[k + 1].upper(), parts[k + 2]
        if kind not in _COLUMN or not count.isdigit() or not 0 < int(count) <= 64:
            raise CrystalInputError(
                source, f"Properties={quote(spec)} has a column {quote(parts[k])} of no known type", where
            )
        columns += [_COLUMN[kind]] * int(count)
    return re.compile(r"\s*" + r"\s+".join(columns) + r"\s*")


def _check_lattice(comment: str, source: str, where: str) -> None:
    """A frame's ``Lattice`` must be nine numbers by their grammar (``1_000``, ``inf`` or ``0x10`` are not)."""
    found = _LATTICE.search(comment)
    if found is None:
        return
    values = found.group(1).split()
    if len(values) != 9 or not all(re.fullmatch(_FLOAT, v) for v in values):
        raise CrystalInputError(source, f'Lattice="{quote(found.group(1), 60)[1:-1]}" is not nine numbers', where)


def read_extxyz(path: str | Path) -> list[Crystal]:
    """Read every frame of an extended-XYZ file; the id is the frame's ``material_id``."""
    import ase.io

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark is not part of the count line
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not UTF-8 text (is it really an extxyz file?)") from None
    _check_complete(text.replace("\r\n", "\n").replace("\r", "\n"), str(path))
    ids = _prescan_extxyz(text, str(path))
    try:
        frames = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    except Exception as exc:  # ase raises many kinds of errors for malformed files
        raise CrystalInputError(str(path), f"could not parse extxyz: {_short(exc)}") from None
    if len(ids) == len(frames):
        for atoms, raw in zip(frames, ids):
            if raw is not None and "material_id" in atoms.info:
                atoms.info["material_id"] = raw.replace('\\"', '"')
    return _crystals_from_frames(frames, path)


def read_cif(path: str | Path) -> list[Crystal]:
    """Read every data block of a CIF file; ids are ``<stem>`` or ``<stem>-<block>``."""
    from nesf.data.cif_check import MAX_CIF_CHARS

    path = Path(path)
    _check_size(path, MAX_CIF_CHARS)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not text (is it really a CIF?)") from None
    return _crystals_from_cif_text(text, source=str(path), stem=path.stem, whole_file=True)


def _check_size(path: Path, limit: int) -> None:
    """Refuse a file larger than ``limit`` bytes before reading it."""
    size = path.stat().st_size
    if size > limit:
        raise CrystalInputError(str(path), f"the file holds {size:,} bytes, more than the limit of {limit:,}")


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
    path = Path(path)
    csv.field_size_limit(1 << 28)
    with open(path, "rb") as fh:
        fh.seek(-1, 2)
        if fh.read(1) not in (b"\n", b"\r"):
            _check_complete(path.read_text(errors="replace")[-200:], str(path))
    try:
        return _read_csv_rows(path)
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not UTF-8 text (is it really a CSV?)") from None
    except csv.Error as exc:
        raise CrystalInputError(str(path), f"not a well-formed CSV: {_short(exc)}") from None


def _read_csv_rows(path: Path) -> list[Crystal]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, strict=True)
        columns = reader.fieldnames or []
        if "cif" not in columns:
            shown = ", ".join(repr(c.strip().splitlines()[0][:30]) if c.strip() else "''" for c in columns[:6])
            more = f" and {len(columns) - 6} more" if len(columns) > 6 else ""
            raise CrystalInputError(
                str(path), f"the CSV has no 'cif' column (its header: {shown or 'none'}{more}; a header row is needed)"
            )
        crystals = []
        for i, row in enumerate(reader):
            where = f"row {i + 1}"
            cid = (row.get("material_id") or "").strip() or f"{path.stem}-{i}"
            found = _crystals_from_cif_text(row["cif"] or "", source=str(path), stem=cid, location=where)
            if len(found) != 1:
                raise CrystalInputError(str(path), f"expected one structure, found {len(found)}", where)
            found[0].id = cid
            properties = {k: _csv_value(v) for k, v in row.items() if k and k not in ("cif", "material_id")}
            if properties:
                found[0].info["properties"] = properties
            crystals.append(found[0])
    if not crystals:
        raise CrystalInputError(str(path), "the CSV has no rows")
    return crystals


def _csv_value(text: str | None) -> float | int | str:
    """A CSV cell as a number where it is one (by the grammar of numbers, not Python's), else as text."""
    text = (text or "").strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if re.fullmatch(_FLOAT, text):
        return float(text)
    return text


#: pymatgen warnings that mean the structure it returns is not the one in the file.
_DATA_CHANGING_WARNINGS = {
    "Defaulting to P1": "the space group is not recognised and the file lists no symmetry operations "
    "(it would be read as P1, losing the symmetry-equivalent atoms)",
    "exceeded tolerance": "occupancies above 1",
    "rescaled": "occupancies were rescaled",
}


def _crystals_from_cif_text(
    text: str, source: str, stem: str, location: str | None = None, whole_file: bool = False
) -> list[Crystal]:
    """Every block of a CIF text as a validated crystal, each exactly as the file describes it.

    The text is read strictly first (:mod:`nesf.data.cif_check`), then each block on its own by
    pymatgen, and pymatgen's atoms are compared with what the block's sites and symmetry give.
    """
    from nesf.data.cif_check import block_texts, check_block, check_text_limits, parse_blocks

    text = text.lstrip("\ufeff")  # a UTF-8 byte-order mark would hide the first block
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line endings
    if not text.strip():
        raise CrystalInputError(source, "the CIF is empty", location)
    check_text_limits(text, source, location)
    if whole_file:
        _check_complete(text, source)
    blocks = parse_blocks(text, source, location)
    names = [b.name.lower() for b in blocks]
    for k, name in enumerate(names):
        if name in names[:k]:
            raise CrystalInputError(
                source, f"two data blocks are named 'data_{blocks[k].name}' (one would hide the other)", location
            )
    crystals = []
    for block, block_text in zip(blocks, block_texts(text, blocks)):
        where = location or (f"block '{block.name}'" if len(blocks) > 1 else None)
        expected = check_block(block, source, where)
        structure = _pymatgen_block(block_text, source, where)
        if not structure.is_ordered:
            raise CrystalInputError(
                source, "partial occupancies are not supported (the structure is disordered)", where
            )
        _compare_with_file(structure, expected, source, where)
        cid = stem if len(blocks) == 1 else f"{stem}-{len(crystals)}"
        crystals.append(Crystal.from_pymatgen(structure, id=cid).validate(source, where))
    return crystals


def _pymatgen_block(text: str, source: str, where: str | None):  # noqa: ANN202
    """One block's structure by pymatgen; its warnings that mean a changed crystal are refusals."""
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parser = CifParser.from_str(text, occupancy_tolerance=1.0, check_cif=False)
            structures = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError... on bad CIFs
        if "thickness" in str(exc) or "Singular matrix" in str(exc):  # flat or zero-length cell
            raise CrystalInputError(
                source, "the lattice has zero volume: its vectors are not independent (flat cell)", where
            ) from None
        raise CrystalInputError(source, f"could not parse CIF: {_short(exc)}", where) from None
    for w in caught:
        message = str(w.message)
        for marker, meaning in _DATA_CHANGING_WARNINGS.items():
            if marker in message:
                raise CrystalInputError(source, f"{meaning} (pymatgen: {_short(Exception(message))})", where)
    if len(structures) != 1:
        raise CrystalInputError(source, "the block holds no structure (no atom sites?)", where)
    return structures[0]


def _compare_with_file(structure, expected, source: str, where: str | None) -> None:  # noqa: ANN001
    """Refuse a structure whose atoms are not those the block's sites and symmetry give."""
    if expected.n_atoms is None or expected.composition is None:
        return
    got = {str(el): int(round(n)) for el, n in structure.composition.remove_charges().get_el_amt_dict().items()}
    if len(structure) != expected.n_atoms or got != dict(expected.composition):
        raise CrystalInputError(
            source,
            f"the file's sites and symmetry give {expected.n_atoms} atoms ({_formula(expected.composition)}) but "
            f"{len(structure)} ({_formula(got)}) were read; refused rather than read changed",
            where,
        )


def _formula(composition: dict) -> str:
    return " ".join(f"{el}{n}" for el, n in sorted(composition.items()))


def _check_complete(text: str, source: str) -> None:
    """Refuse a text file whose last line has no line break: it may have been cut in the middle of a number."""
    if text and not text.endswith("\n"):
        last = text.rsplit("\n", 1)[-1]
        raise CrystalInputError(
            source,
            f"the file ends in the middle of a line ({quote(last.strip())} without a line break): it may be cut off; "
            "if it is complete, end it with a line break",
        )


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


def _short(exc: Exception) -> str:
    """One line of an exception's message (all its lines joined), at most 300 characters."""
    parts = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " / ".join(parts) if parts else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."
