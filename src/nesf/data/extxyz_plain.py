"""The plain extended-XYZ dialect, read and written without ``ase.io``.

Importing ``ase.io`` takes 0.3-0.5 s (it pulls in ``scipy.integrate`` through ``ase.dft``), more
than a one-crystal command computes. Almost every extxyz file crystal tools exchange, and every
one nesf writes, is plain: a ``Lattice`` of nine numbers, ``Properties=species:S:1:pos:R:3``,
``pbc="T T T"``, and scalar keys (numbers, booleans, words). This module reads and writes exactly
that dialect, giving the values ASE's parser gives; anything else (quoted or array values, other
per-atom columns, keys ASE treats specially such as ``energy`` or ``stress``) is left to ASE:
:func:`parse_plain_frames` and :func:`plain_extxyz_text` answer None.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nesf.data.textfile import FLOAT

#: Keys ASE's extxyz reader treats specially (a calculator's results, 3x3 matrices, unprocessed
#: keys, the frame's own fields): a frame that carries one of them is read by ASE.
ASE_SPECIAL_KEYS = frozenset(
    {
        "lattice",
        "properties",
        "pbc",
        "uid",
        "virial",
        "stress",
        "stresses",
        "energy",
        "energies",
        "free_energy",
        "forces",
        "dipole",
        "charges",
        "magmom",
        "magmoms",
        "dielectric_tensor",
        "born_effective_charges",
        "polarization",
        "natoms",
        "time",
        "calc",
    }
)

#: The words ASE reads as booleans.
BOOL_WORDS = {
    **dict.fromkeys(("T", "true", "True", "TRUE"), True),
    **dict.fromkeys(("F", "false", "False", "FALSE"), False),
}

_INT = re.compile(r"[+-]?\d{1,18}")
_LONG_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(FLOAT)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.:+\-/]*")
#: One ``key=value`` of the comment line: a bare value, or a quoted one without escapes.
_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)=(?:"([^"\\]*)"|([^\s"\'\\{}\[\]=,]+))\s*')
_PROPERTIES = "species:S:1:pos:R:3"


@dataclass
class PlainFrame:
    """One frame of the plain dialect.

    Attributes:
        lattice: ``[3, 3]`` cell, Angstrom, rows a, b, c.
        cart: ``[N, 3]`` Cartesian positions, Angstrom.
        numbers: ``[N]`` atomic numbers.
        info: the frame's other keys with the values ASE would give them (``material_id`` as written).
    """

    lattice: np.ndarray
    cart: np.ndarray
    numbers: np.ndarray
    info: dict[str, Any]


def _element_numbers() -> dict[str, int]:
    from ase.data import chemical_symbols  # ``ase`` itself is quick to import; ``ase.io`` is not

    return {s: z for z, s in enumerate(chemical_symbols) if z > 0}


_NUMBERS: dict[str, int] = {}


def _value(text: str) -> Any:
    """A bare value as ASE reads it (int, float, bool or word), or None where the dialect has no rule for it."""
    if _INT.fullmatch(text):
        return int(text)
    if _LONG_INT.fullmatch(text):  # ASE reads a float where a 64-bit integer overflows: left to it
        return None
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in BOOL_WORDS:
        return BOOL_WORDS[text]
    if _WORD.fullmatch(text) and text.lower() not in ("nan", "inf", "infinity"):
        return text
    return None


def _comment(line: str) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The lattice ``[3, 3]`` and other keys of a plain frame's comment line, or None."""
    pos, end = 0, len(line.rstrip())
    lattice, info, seen = None, {}, set()
    properties = pbc = False
    while pos < end:
        found = _PAIR.match(line, pos)
        if found is None or found.end() == pos:
            return None
        pos = found.end()
        key, quoted, bare = found.group(1), found.group(2), found.group(3)
        if key in seen:
            return None
        seen.add(key)
        if key == "Lattice" and quoted is not None:
            values = quoted.split()
            if len(values) != 9 or not all(_FLOAT.fullmatch(v) for v in values):
                return None
            lattice = np.array([float(v) for v in values], dtype=np.float64).reshape(3, 3)
        elif key == "Properties" and bare == _PROPERTIES:
            properties = True
        elif key == "pbc" and quoted is not None and quoted.split() == ["T", "T", "T"]:
            pbc = True
        elif key == "material_id" and bare is not None:
            info[key] = bare  # ids stay as written (ASE would turn 007 into 7)
        elif bare is not None and key.lower() not in ASE_SPECIAL_KEYS:
            value = _value(bare)
            if value is None:
                return None
            info[key] = value
        else:
            return None
    if lattice is None or not properties or not pbc:
        return None
    return lattice, info


def parse_plain_frames(lines: Sequence[str]) -> list[PlainFrame] | None:
    """The frames of whole extxyz frames' lines, or None if any frame is not of the plain dialect.

    The lines must already have passed the file's checks (:func:`nesf.data.extxyz._prescan_extxyz`:
    counts, row grammar); blank lines between frames are skipped.
    """
    if not _NUMBERS:
        _NUMBERS.update(_element_numbers())
    frames: list[PlainFrame] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            return None
        if len(lines[i].split()) != 1 or i + 2 + n > len(lines):
            return None
        head = _comment(lines[i + 1])
        if head is None:
            return None
        numbers = np.empty(n, dtype=np.int64)
        cart = np.empty((n, 3), dtype=np.float64)
        for k, row in enumerate(lines[i + 2 : i + 2 + n]):
            parts = row.split()
            if len(parts) != 4 or parts[0] not in _NUMBERS:
                return None
            numbers[k] = _NUMBERS[parts[0]]
            try:
                cart[k] = [float(parts[1]), float(parts[2]), float(parts[3])]
            except ValueError:
                return None
        if not np.isfinite(cart).all() or not np.isfinite(head[0]).all():
            return None
        frames.append(PlainFrame(head[0], cart, numbers, head[1]))
        i += n + 2
    return frames


def _format_value(value: Any) -> str | None:
    """A property value spelled so that :func:`parse_plain_frames` (and ASE) read it back as it is, else None."""
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, int):
        text = str(value)
        return text if _INT.fullmatch(text) else None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        text = repr(value)
        return text if _FLOAT.fullmatch(text) and not _INT.fullmatch(text) else None
    if isinstance(value, str):
        return value if isinstance(_value(value), str) else None
    return None


def plain_extxyz_text(frames: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]]) -> str | None:
    """Frames ``(lattice [3, 3], cart [N, 3], numbers [N], info)`` as plain extxyz text, or None.

    ``info`` holds ``material_id`` and scalar properties. None when a value has no plain spelling
    (a quoted string, NaN, a key ASE treats specially): the caller writes those frames with ASE.
    Positions carry 8 decimals and the lattice every digit, as ASE writes them.
    """
    from ase.data import chemical_symbols

    out: list[str] = []
    for lattice, cart, numbers, info in frames:
        fields = ['Lattice="' + " ".join(repr(float(x)) for x in np.asarray(lattice, dtype=np.float64).ravel()) + '"']
        fields.append(f"Properties={_PROPERTIES}")
        for key, value in info.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) or key.lower() in ASE_SPECIAL_KEYS:
                return None
            if key == "material_id":
                text = str(value)
                if not re.fullmatch(r"[^\s\"'\\{}\[\]=,]+", text):
                    return None
            else:
                text = _format_value(value)
                if text is None:
                    return None
            fields.append(f"{key}={text}")
        fields.append('pbc="T T T"')
        out.append(f"{len(numbers)}\n" + " ".join(fields) + "\n")
        for z, (x, y, w) in zip(numbers, np.asarray(cart, dtype=np.float64)):
            out.append(f"{chemical_symbols[int(z)]:<2} {x:16.8f} {y:16.8f} {w:16.8f}\n")
    return "".join(out)


__all__ = ["ASE_SPECIAL_KEYS", "PlainFrame", "parse_plain_frames", "plain_extxyz_text"]
