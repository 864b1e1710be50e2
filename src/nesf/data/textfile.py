"""Helpers every text reader shares: short error messages, whole files, size limits, the grammar of numbers."""

from __future__ import annotations

from pathlib import Path

from nesf.data.cif_check import quote
from nesf.errors import CrystalInputError

#: A decimal number as files write them (``1.5``, ``-2e-3``); not Python's ``1_000``, ``inf``, ``nan`` or ``0x10``.
FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def short_message(exc: Exception) -> str:
    """One line of an exception's message (all its lines joined), at most 300 characters."""
    parts = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = " / ".join(parts) if parts else type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


def check_complete(text: str, source: str) -> None:
    """Refuse a text file whose last line has no line break: it may have been cut in the middle of a number."""
    if text and not text.endswith("\n"):
        last = text.rsplit("\n", 1)[-1]
        raise CrystalInputError(
            source,
            f"the file ends in the middle of a line ({quote(last.strip())} without a line break): it may be cut off; "
            "if it is complete, end it with a line break",
        )


def check_size(path: Path, limit: int) -> None:
    """Refuse a file larger than ``limit`` bytes before reading it."""
    size = path.stat().st_size
    if size > limit:
        raise CrystalInputError(str(path), f"the file holds {size:,} bytes, more than the limit of {limit:,}")


__all__ = ["FLOAT", "check_complete", "check_size", "short_message"]
