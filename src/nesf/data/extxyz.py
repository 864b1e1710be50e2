"""Extended-XYZ files, read frame by frame (memory bounded), every number by its grammar."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from nesf.data.cif_check import quote
from nesf.data.crystal import Crystal
from nesf.data.extxyz_plain import parse_plain_frames
from nesf.data.textfile import FLOAT, check_complete, short_message
from nesf.errors import CrystalInputError


def crystals_from_frames(frames: list, path: Path, first: int = 0) -> list[Crystal]:
    """ASE ``Atoms`` frames of a file -> validated crystals (ids from ``material_id`` or ``<stem>-<i>``).

    ``first`` is the index in the file of ``frames[0]`` (frames read in groups).
    """
    records = [
        (atoms.cell[:], atoms.get_positions(), atoms.numbers, atoms.info)
        if np.all(atoms.pbc) and atoms.cell.rank == 3
        else None
        for atoms in frames
    ]
    return _crystals(records, path, first)


def _crystals(records: list, path: Path, first: int) -> list[Crystal]:
    """Frames ``(lattice [3, 3], cart [N, 3], numbers [N], info)`` (None: no 3D periodic cell) -> validated crystals."""
    if not records:
        raise CrystalInputError(str(path), "the file holds no structures")
    crystals = []
    for i, record in enumerate(records, start=first):
        where = f"frame {i}"
        if record is None:
            raise CrystalInputError(str(path), "the frame has no 3D periodic cell (Lattice= missing?)", where)
        lattice, cart, numbers, info = record
        crystal = Crystal(
            lattice=np.array(lattice, dtype=np.float64),
            cart=np.array(cart, dtype=np.float64),
            numbers=np.array(numbers, dtype=np.int64),
            id=str(info.get("material_id", f"{path.stem}-{i}")),
        )
        properties = scalar_properties(info, skip=("material_id", "setting"))
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


def _prescan_extxyz(text: str, source: str, frame0: int = 0, line0: int = 0) -> list[str | None]:
    """Check every frame's count line against the lines that follow and the atom limit, before parsing.

    A count line claiming a billion atoms would otherwise make the parser run for hours, and a
    frame whose ``Properties`` lack positions would put every atom at the origin.

    Args:
        text: whole frames of the file.
        source: the file, for messages.
        frame0: index in the file of the first frame of ``text``.
        line0: lines of the file before ``text`` (messages give line numbers in the file).

    Returns:
        Each frame's ``material_id`` exactly as written (None where it has none): ASE turns ids
        that look like numbers or booleans into them (``007`` -> 7, ``T`` -> True).
    """
    from nesf.data.crystal import LIMITS

    lines = text.splitlines()
    ids: list[str | None] = []
    row_patterns: dict[str, re.Pattern] = {}
    i, frame = 0, frame0
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
                f"could not parse extxyz: line {line0 + i + 1}: expected the atom count of frame {frame}, "
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
                        source, f"line {line0 + k + 1}: atomic coordinates contain NaN or infinite values", where
                    )
                raise CrystalInputError(
                    source,
                    f"line {line0 + k + 1}: {quote(lines[k].strip())} is not an atom row of {spec} (a number that is "
                    "not one, a missing or extra column?)",
                    where,
                )
        i += n + 2
        frame += 1
    return ids


_COLUMN = {"R": FLOAT, "I": r"[+-]?\d+", "L": r"(?:[TF]|True|False|true|false)", "S": r"\S+"}


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
    if len(values) != 9 or not all(re.fullmatch(FLOAT, v) for v in values):
        raise CrystalInputError(source, f'Lattice="{quote(found.group(1), 60)[1:-1]}" is not nine numbers', where)


def read_extxyz(path: str | Path) -> list[Crystal]:
    """Read every frame of an extended-XYZ file; the id is the frame's ``material_id``."""
    return list(iter_extxyz(path))


#: Frames parsed together when an extxyz file is read frame by frame.
FRAMES_PER_GROUP = 256


def iter_extxyz(path: str | Path, group: int = FRAMES_PER_GROUP) -> Iterator[Crystal]:
    """The crystals of an extended-XYZ file one by one, reading ``group`` frames at a time (memory bounded).

    Every frame is checked before it is parsed (:func:`_prescan_extxyz`); a file whose last
    line has no line break is refused before any frame is read (it may be cut off).
    """
    path = Path(path)
    source = str(path)
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 256))
        tail = fh.read()
    if tail and tail[-1:] not in (b"\n", b"\r"):
        check_complete(tail.decode("utf-8", errors="replace"), source)
    lines: list[str] = []
    frames, frame0, line0 = 0, 0, 0
    try:
        with open(path, encoding="utf-8-sig") as fh:  # universal newlines: LF, CRLF and CR alike
            it = iter(fh)
            for line in it:
                lines.append(line)
                if not line.strip():
                    continue
                n = _count(line)
                for _ in range(n + 1 if n is not None else 0):
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    lines.append(nxt)
                frames += 1
                if n is None or frames >= group:
                    yield from _parse_group(lines, path, frame0, line0)
                    frame0, line0, frames, lines = frame0 + frames, line0 + len(lines), 0, []
    except UnicodeDecodeError:
        raise CrystalInputError(source, "the file is not UTF-8 text (is it really an extxyz file?)") from None
    if lines and any(ln.strip() for ln in lines):
        yield from _parse_group(lines, path, frame0, line0)
    elif frame0 == 0:
        raise CrystalInputError(source, "the file holds no structures")


def _count(line: str) -> int | None:
    """The atom count a frame's first line declares, or None if it is not a usable one."""
    try:
        n = int(line.split()[0])
    except ValueError:
        return None
    from nesf.data.crystal import LIMITS

    return n if 1 <= n <= LIMITS.max_atoms else None


def _parse_group(lines: list[str], path: Path, frame0: int, line0: int) -> list[Crystal]:
    """Whole frames of a file (its lines ``line0``...), checked, then parsed, as crystals.

    Frames of the plain dialect are parsed here (:mod:`nesf.data.extxyz_plain`), others by ASE.
    Blank lines between frames are skipped (ASE would stop reading at the first).
    """
    text = "".join(lines)
    ids = _prescan_extxyz(text, str(path), frame0, line0)
    lines = _without_blank_lines_between_frames(text.splitlines(keepends=True))
    plain = parse_plain_frames(lines)
    if plain is not None:  # a frame with a zero cell vector has no 3D cell, as ASE's rank says
        records = [(f.lattice, f.cart, f.numbers, f.info) if f.lattice.any(axis=1).all() else None for f in plain]
        return _crystals(records, path, frame0)
    import ase.io

    try:
        frames = ase.io.read(io.StringIO("".join(lines)), index=":", format="extxyz")
    except Exception as exc:  # ase raises many kinds of errors for malformed files
        raise CrystalInputError(str(path), f"could not parse extxyz: {short_message(exc)}") from None
    if len(ids) != len(frames):
        raise CrystalInputError(str(path), f"could not parse extxyz: {len(frames)} of {len(ids)} frames were read")
    for atoms, raw in zip(frames, ids):
        if raw is not None and "material_id" in atoms.info:
            atoms.info["material_id"] = raw.replace('\\"', '"')
    return crystals_from_frames(frames, path, first=frame0)


def _without_blank_lines_between_frames(lines: list[str]) -> list[str]:
    """Lines of checked frames without the blank lines before a frame's count line (a comment line may be blank)."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        n = int(lines[i].split()[0])
        out += lines[i : i + n + 2]
        i += n + 2
    return out


def crystal_from_extxyz_text(text: str) -> Crystal:
    """The one crystal of an extxyz text written by nesf (:func:`nesf.io.writers.extxyz_text`).

    For nesf's own chunk files (stored reconstructions and samples), not for user input: no checks.
    """
    plain = parse_plain_frames(text.splitlines())
    if plain is not None and len(plain) == 1:
        frame = plain[0]
        return Crystal(frame.lattice, frame.cart, frame.numbers, id=str(frame.info.get("material_id", "")))
    import ase.io

    from nesf.data.readers import to_crystal

    return to_crystal(ase.io.read(io.StringIO(text), format="extxyz"))


__all__ = [
    "FRAMES_PER_GROUP",
    "crystal_from_extxyz_text",
    "crystals_from_frames",
    "iter_extxyz",
    "read_extxyz",
    "scalar_properties",
]
