"""Species vocabulary: the mapping between atomic numbers and class indices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from nesf.errors import UnknownElementError


@dataclass(frozen=True)
class SpeciesVocab:
    """An ordered set of elements; class index ``i`` is element ``numbers[i]``.

    Attributes:
        numbers: atomic numbers, sorted ascending, no duplicates.
    """

    numbers: tuple[int, ...]

    def __post_init__(self) -> None:
        nums = tuple(sorted({int(z) for z in self.numbers}))
        if not nums:
            raise ValueError("a species vocabulary needs at least one element")
        if nums[0] < 1 or nums[-1] > 118:
            raise ValueError("atomic numbers must lie between 1 and 118")
        object.__setattr__(self, "numbers", nums)
        table = np.full(119, -1, dtype=np.int64)
        table[list(nums)] = np.arange(len(nums))
        object.__setattr__(self, "_table", table)

    @classmethod
    def from_crystals(cls, crystals: Iterable) -> SpeciesVocab:
        """The elements present in a set of crystals."""
        found: set[int] = set()
        for c in crystals:
            found.update(np.unique(c.numbers).tolist())
        return cls(tuple(found))

    def __len__(self) -> int:
        return len(self.numbers)

    @property
    def symbols(self) -> list[str]:
        """Element symbols in class order."""
        from ase.data import chemical_symbols

        return [chemical_symbols[z] for z in self.numbers]

    def encode(self, numbers: Sequence[int] | np.ndarray, crystal_id: str | None = None) -> np.ndarray:
        """Atomic numbers -> class indices; raises :class:`UnknownElementError` for unknown ones."""
        numbers = np.asarray(numbers, dtype=np.int64)
        idx = self._table[np.clip(numbers, 0, 118)]  # type: ignore[attr-defined]
        bad = (idx < 0) | (numbers < 1) | (numbers > 118)
        if np.any(bad):
            from ase.data import chemical_symbols

            z = int(numbers[bad][0])
            symbol = chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"
            raise UnknownElementError(symbol, self.symbols, crystal_id)
        return idx

    def decode(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Class indices -> atomic numbers."""
        return np.asarray(self.numbers, dtype=np.int64)[np.asarray(indices, dtype=np.int64)]

    def to_dict(self) -> dict:
        """Plain, JSON- and checkpoint-safe form."""
        return {"numbers": list(self.numbers)}

    @classmethod
    def from_dict(cls, d: dict) -> SpeciesVocab:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(int(z) for z in d["numbers"]))
