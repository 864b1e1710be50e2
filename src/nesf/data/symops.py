"""Symmetry operations as CIFs write them (``'-y+1/2, x, z'``), parsed strictly, and the group check."""

from __future__ import annotations

import re

import numpy as np

#: Longest symmetry operation accepted (characters); real ones are a few dozen.
MAX_SYMOP_CHARS = 200
#: Fractional tolerance when matching composed symmetry operations (CIFs round 1/3 to 0.3333).
OP_TOLERANCE = 2e-3
_OP_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)"
_OP_TERM = rf"(?:{_OP_NUM}(?:/{_OP_NUM})?\*?[xyz](?:/{_OP_NUM})?|[xyz](?:/{_OP_NUM})?|{_OP_NUM}(?:/{_OP_NUM})?)"
_OP_COMPONENT = re.compile(rf"[+-]?{_OP_TERM}(?:[+-]{_OP_TERM})*")
_OP_PARTS = re.compile(rf"([+-]?)({_OP_NUM}(?:/{_OP_NUM})?)?\*?([xyz])?(?:/({_OP_NUM}))?")


def parse_symop(op: str) -> tuple[np.ndarray, np.ndarray]:
    """A symmetry operation ``'-y+1/2, x, z'`` -> rotation ``[3, 3]`` (integer) and translation ``[3]``.

    Strict: exactly three components, each a sum of signed terms in x, y, z and rational
    constants; each variable at most once per component and at least one per component;
    an integer rotation with determinant +-1.

    Raises:
        ValueError: the operation is not one (the message says why).
    """
    text = re.sub(r"\s+", "", op).lower()
    if not text:
        raise ValueError("it is empty")
    if len(text) > MAX_SYMOP_CHARS:
        raise ValueError(f"it has {len(text)} characters")
    if not re.fullmatch(r"[xyz0-9.,/*+-]+", text):
        bad = sorted({ch for ch in text if ch not in "xyz0123456789.,/*+-"})
        raise ValueError(f"it holds {', '.join(repr(b) for b in bad[:3])} (only x, y, z, numbers and signs belong)")
    parts = text.split(",")
    if len(parts) != 3:
        raise ValueError(f"it has {len(parts)} components instead of 3")
    rot = np.zeros((3, 3))
    trans = np.zeros(3)
    for row, part in enumerate(parts):
        if not _OP_COMPONENT.fullmatch(part):
            raise ValueError(f"component {part!r} is not a sum of x, y, z and fractions")
        seen: set[str] = set()
        for m in _OP_PARTS.finditer(part):
            sign, coef, var, div = m.groups()
            if not (coef or var):
                continue
            value = _fraction(coef) if coef else 1.0
            value /= float(div) if div else 1.0
            value *= -1.0 if sign == "-" else 1.0
            if var:
                if var in seen:
                    raise ValueError(f"component {part!r} names {var} twice")
                seen.add(var)
                rot[row, "xyz".index(var)] = value
            else:
                trans[row] += value
        if not seen:
            raise ValueError(f"component {part!r} names none of x, y, z")
    if not np.allclose(rot, np.rint(rot)) or round(abs(np.linalg.det(rot))) != 1:
        raise ValueError("it is not a symmetry operation (its rotation part is not an integer matrix of determinant 1)")
    if not np.all(np.isfinite(trans)):
        raise ValueError("its translation is not finite")
    return np.rint(rot), trans


def _fraction(text: str) -> float:
    if "/" in text:
        num, den = text.split("/")
        if float(den) == 0:
            raise ValueError("it divides by zero")
        return float(num) / float(den)
    return float(text)


def check_group(rot: np.ndarray, trans: np.ndarray) -> tuple[int, int] | None:
    """The first pair ``(i, j)`` whose product is not in the list of operations, or None for a group.

    Args:
        rot: ``[O, 3, 3]`` rotations.
        trans: ``[O, 3]`` translations (fractional, compared modulo 1).
    """
    prod_rot = np.einsum("iab,jbc->ijac", rot, rot)  # [O, O, 3, 3]
    prod_trans = np.einsum("iab,jb->ija", rot, trans) + trans[:, None, :]  # [O, O, 3]
    keys = rot.reshape(len(rot), 9).astype(np.int64)
    found = np.zeros(prod_rot.shape[:2], dtype=bool)
    flat_rot = prod_rot.reshape(len(rot), len(rot), 9).astype(np.int64)
    for key in np.unique(keys, axis=0):
        listed = trans[np.all(keys == key, axis=1)]  # [K, 3]
        same = np.all(flat_rot == key, axis=-1)  # [O, O]
        if not same.any():
            continue
        diff = prod_trans[same][:, None, :] - listed[None, :, :]  # [P, K, 3]
        diff -= np.rint(diff)
        found[same] = np.any(np.all(np.abs(diff) < OP_TOLERANCE, axis=-1), axis=1)
    if found.all():
        return None
    i, j = np.argwhere(~found)[0]
    return int(i), int(j)


def same_operations(r1: np.ndarray, t1: np.ndarray, r2: np.ndarray, t2: np.ndarray) -> bool:
    """Whether two lists of operations (rotations ``[O, 3, 3]``, translations ``[O, 3]``) hold the same set."""

    def covered(ra: np.ndarray, ta: np.ndarray, rb: np.ndarray, tb: np.ndarray) -> bool:
        same_rot = np.all((ra[:, None] == rb[None]).reshape(len(ra), len(rb), 9), axis=-1)
        diff = ta[:, None] - tb[None]
        diff -= np.rint(diff)
        return bool(np.all(np.any(same_rot & np.all(np.abs(diff) < OP_TOLERANCE, axis=-1), axis=1)))

    return covered(r1, t1, r2, t2) and covered(r2, t2, r1, t1)


__all__ = ["MAX_SYMOP_CHARS", "OP_TOLERANCE", "check_group", "parse_symop", "same_operations"]
