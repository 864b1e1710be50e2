"""Exceptions raised by nesf.

Every error a user can cause with bad input derives from :class:`NesfError`; the CLI turns
these into one clear line on stderr and exit code 2.
"""

from __future__ import annotations


class NesfError(Exception):
    """Base class of the errors nesf raises for bad input or bad state."""


class CrystalInputError(NesfError, ValueError):
    """A crystal could not be read or is not a valid crystal.

    Args:
        source: the file (or object description) the crystal came from.
        reason: what is wrong, in words.
        location: where in the source (``"frame 3"``, ``"row 12"``, ``"block 'abc'"``).
    """

    def __init__(self, source: str, reason: str, location: str | None = None) -> None:
        self.source = str(source)
        self.reason = reason
        self.location = location
        where = f"{self.source}, {location}" if location else self.source
        super().__init__(f"{where}: {reason}")


class UnknownElementError(NesfError, KeyError):
    """An element is not in a model's or dataset's species vocabulary."""

    def __init__(self, symbol: str, known: list[str], crystal_id: str | None = None) -> None:
        self.symbol = symbol
        where = f"crystal {crystal_id!r}: " if crystal_id else ""
        known_txt = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
        self.message = f"{where}element {symbol} is not in the species vocabulary ({len(known)} elements: {known_txt})"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return self.message


class CheckpointError(NesfError):
    """A checkpoint is missing, corrupted or not an nesf checkpoint."""


class OutputError(NesfError):
    """An output path cannot be written (a file where a folder is needed, a non-empty folder, no permission)."""
