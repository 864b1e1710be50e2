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
        crystals.append(crystal.validate(str(path), f"{where} ({crystal.id})"))
    return crystals


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
        i += n + 2
        frame += 1
    return ids


def read_extxyz(path: str | Path) -> list[Crystal]:
    """Read every frame of an extended-XYZ file; the id is the frame's ``material_id``."""
    import ase.io

    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark is not part of the count line
    except UnicodeDecodeError:
        raise CrystalInputError(str(path), "the file is not UTF-8 text (is it really an extxyz file?)") from None
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
            crystals.append(found[0])
    if not crystals:
        raise CrystalInputError(str(path), "the CSV has no rows")
    return crystals


#: CIF keys of symmetry operations (old and new dictionaries).
_SYMOP_KEYS = (
    "_symmetry_equiv_pos_as_xyz",
    "_space_group_symop_operation_xyz",
    "_space_group_symop.operation_xyz",
    "_symmetry_equiv_pos_as_xyz_",
)
#: Longest symmetry operation accepted (characters); real ones are a few dozen.
_MAX_SYMOP_CHARS = 200

#: pymatgen warnings that mean the structure it returns is not the one in the file.
_DATA_CHANGING_WARNINGS = {
    "Defaulting to P1": "the space group is not recognised and the file lists no symmetry operations "
    "(it would be read as P1, losing the symmetry-equivalent atoms)",
    "Missing elements": "some sites were dropped while reading (zero, negative or unreadable occupancy?)",
    "exceeded tolerance": "occupancies above 1",
    "rescaled": "occupancies were rescaled",
}


def _cif_number(value: str) -> float:
    """A CIF number (``'5.64(2)'`` -> 5.64); ``ValueError`` if it is none."""
    text = str(value).strip().split("(")[0]
    if text in ("", ".", "?"):
        raise ValueError("missing")
    return float(text)


def _cell_number(data: dict, key: str, label: str, source: str, where: str | None) -> tuple[str | None, float]:
    """A cell parameter of a CIF block: (raw text, value), ``(None, nan)`` when absent; refused if not a number."""
    raw = data.get(key)
    if raw is None:
        return None, float("nan")
    try:
        return raw, _cif_number(raw)
    except ValueError:
        raise CrystalInputError(source, f"{label} = {raw!r} is not a number", where) from None


def _check_cif_blocks(text: str, source: str, location: str | None) -> None:
    """Refuse what pymatgen would silently change: duplicate blocks, bad occupancies, cells, symmetry."""
    import re

    from pymatgen.io.cif import CifFile

    names = [m.group(1).lower() for m in re.finditer(r"(?im)^[ \t]*data_(\S*)", text)]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CrystalInputError(
                source, f"two data blocks are named 'data_{name}' (one would hide the other)", location
            )
        seen.add(name)
    try:
        blocks = CifFile.from_str(text).data
    except Exception as exc:  # malformed loops, quotes...
        raise CrystalInputError(source, f"could not parse CIF: {_short(exc)}", location) from None
    for name, block in blocks.items():
        where = location or (f"block '{name}'" if len(blocks) > 1 else None)
        data = block.data
        occ = data.get("_atom_site_occupancy")
        if occ is not None:
            for v in occ if isinstance(occ, list) else [occ]:
                try:
                    x = _cif_number(v)
                except ValueError:
                    if str(v).strip() in (".", "?"):
                        continue  # unknown occupancy: CIF's convention is full occupancy
                    raise CrystalInputError(source, f"occupancy {v!r} is not a number", where) from None
                if not (0.0 < x <= 1.0 + 1e-3) or not np.isfinite(x):
                    raise CrystalInputError(source, f"occupancy {v} lies outside (0, 1]", where)
        for axis in "abc":
            raw, x = _cell_number(data, f"_cell_length_{axis}", f"cell length {axis}", source, where)
            if raw is None:
                continue
            if not np.isfinite(x) or x <= 0:
                flat = " (a cell of zero volume)" if x == 0 else ""
                raise CrystalInputError(
                    source, f"cell length {axis} = {raw} is not a positive finite length{flat}", where
                )
        angles = []
        for angle in ("alpha", "beta", "gamma"):
            raw, x = _cell_number(data, f"_cell_angle_{angle}", f"cell angle {angle}", source, where)
            if raw is None:
                continue
            if not np.isfinite(x) or not 0.0 < x < 180.0:
                flat = " (a flat cell of zero volume)" if x in (0.0, 180.0) else ""
                raise CrystalInputError(
                    source, f"cell angle {angle} = {raw} lies outside (0, 180) degrees{flat}", where
                )
            angles.append(x)
        if len(angles) == 3:
            from nesf.data.crystal import angles_form_cell

            if not angles_form_cell(np.radians(np.array(angles))):
                shown = ", ".join(f"{a:g}" for a in angles)
                raise CrystalInputError(source, f"cell angles {shown} degrees form no real cell", where)
        op_strings: list[str] = []
        for key in _SYMOP_KEYS:
            ops = data.get(key)
            if ops is None:
                continue
            for op in ops if isinstance(ops, list) else [ops]:
                op = str(op).strip()
                if not op or op in ("?", "."):
                    raise CrystalInputError(source, "an empty symmetry operation", where)
                if len(op) > _MAX_SYMOP_CHARS:
                    raise CrystalInputError(source, f"a symmetry operation of {len(op)} characters", where)
                op_strings.append(op)
        n_atoms = _expanded_atom_count(data, op_strings)
        from nesf.data.crystal import LIMITS

        if n_atoms is not None and n_atoms > LIMITS.max_atoms:
            raise CrystalInputError(
                source,
                f"{n_atoms} atoms after symmetry expansion, more than the limit of {LIMITS.max_atoms} (--max-atoms)",
                where,
            )


def _expanded_atom_count(data: dict, op_strings: list[str]) -> int | None:
    """Atoms of a CIF block after symmetry expansion, counted before pymatgen expands it (None: unknown).

    Cheap bound first (sites x operations); only when that exceeds the atom limit are the
    orbits counted exactly (every operation applied to every site with NumPy, duplicates merged
    on a 1e-3 grid), so a file that would expand to tens of thousands of atoms is refused in
    well under a second instead of minutes.
    """
    from nesf.data.crystal import LIMITS

    xs, ys, zs = (data.get(f"_atom_site_fract_{a}") for a in "xyz")
    if xs is None or ys is None or zs is None:
        return None
    xs, ys, zs = ([v] if not isinstance(v, list) else v for v in (xs, ys, zs))
    try:
        sites = np.array([[_cif_number(a), _cif_number(b), _cif_number(c)] for a, b, c in zip(xs, ys, zs)])
    except ValueError:
        return None
    ops = _symmetry_operations(data, op_strings)
    if ops is None or len(sites) * len(ops) <= LIMITS.max_atoms:
        return None if ops is None else len(sites) * len(ops)  # an upper bound within the limit
    rot = np.stack([op.rotation_matrix for op in ops])  # [O, 3, 3]
    trans = np.stack([op.translation_vector for op in ops])  # [O, 3]
    images = np.einsum("oij,sj->soi", rot, sites) + trans[None]  # [S, O, 3]
    q = np.rint((images - np.floor(images)) * 1000).astype(np.int64) % 1000
    return int(sum(len(np.unique(q[i], axis=0)) for i in range(len(sites))))


def _symmetry_operations(data: dict, op_strings: list[str]) -> list | None:
    """The block's symmetry operations (pymatgen ``SymmOp``), from its list or its space group; None if unknown."""
    from pymatgen.core.operations import SymmOp

    if op_strings:
        try:
            return [SymmOp.from_xyz_str(op.replace(" ", "")) for op in op_strings]
        except Exception:  # pymatgen decides about odd operations itself
            return None
    from pymatgen.symmetry.groups import SpaceGroup

    for key in ("_symmetry_space_group_name_H-M", "_space_group_name_H-M_alt", "_space_group_name_h-m_alt"):
        symbol = data.get(key)
        if isinstance(symbol, str) and symbol.strip() not in ("", "?", "."):
            try:
                return list(SpaceGroup(symbol.replace(" ", "").strip("'\"")).symmetry_ops)
            except Exception:  # an unknown symbol: pymatgen's own fallback is refused later
                return None
    return None


def _crystals_from_cif_text(text: str, source: str, stem: str, location: str | None = None) -> list[Crystal]:
    from pymatgen.io.cif import CifParser

    text = text.lstrip("\ufeff")  # a UTF-8 byte-order mark would hide the first block
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line endings
    if not text.strip():
        raise CrystalInputError(source, "the CIF is empty", location)
    _check_cif_blocks(text, source, location)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            parser = CifParser.from_str(text, occupancy_tolerance=1.0)
            structures = parser.parse_structures(primitive=False, on_error="raise")
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError... on bad CIFs
        if "thickness" in str(exc) or "Singular matrix" in str(exc):  # flat or zero-length cell
            raise CrystalInputError(
                source, "the lattice has zero volume: its vectors are not independent (flat cell)", location
            ) from None
        raise CrystalInputError(source, f"could not parse CIF: {_short(exc)}", location) from None
    for w in caught:
        message = str(w.message)
        for marker, meaning in _DATA_CHANGING_WARNINGS.items():
            if marker in message:
                raise CrystalInputError(source, f"{meaning} (pymatgen: {_short(Exception(message))})", location)
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
