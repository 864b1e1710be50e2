"""Batching crystals of different sizes into padded tensors with masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from nesf.data.crystal import Crystal, lattice_to_params
from nesf.data.vocab import SpeciesVocab
from nesf.fields.geometry import PeriodicGeometry


@dataclass
class CrystalBatch:
    """``B`` crystals padded to ``N`` atoms (the largest in the batch).

    Attributes:
        lattice: ``[B, 3, 3]`` cell matrices, Angstrom, rows a, b, c.
        cart: ``[B, N, 3]`` Cartesian positions, Angstrom (zeros on padding).
        species: ``[B, N]`` species class indices of ``vocab`` (0 on padding; use ``mask``).
        numbers: ``[B, N]`` atomic numbers (0 on padding).
        mask: ``[B, N]`` True for real atoms.
        lattice_params: ``[B, 6]`` a, b, c (Angstrom) and alpha, beta, gamma (radians).
        ids: crystal ids.
        vocab: the species vocabulary used for ``species``.
    """

    lattice: torch.Tensor
    cart: torch.Tensor
    species: torch.Tensor
    numbers: torch.Tensor
    mask: torch.Tensor
    lattice_params: torch.Tensor
    ids: list[str]
    vocab: SpeciesVocab
    _geometry: PeriodicGeometry | None = field(default=None, repr=False)

    @classmethod
    def from_crystals(
        cls,
        crystals: Sequence[Crystal],
        vocab: SpeciesVocab | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> CrystalBatch:
        """Pad and stack crystals (one pass over crystals, vectorised over atoms).

        Args:
            crystals: the crystals.
            vocab: species vocabulary; built from ``crystals`` when omitted.
            dtype: floating dtype of the tensors.
            device: target device.

        Raises:
            UnknownElementError: a crystal holds an element outside ``vocab``.
        """
        if not crystals:
            raise ValueError("cannot batch zero crystals")
        vocab = vocab if vocab is not None else SpeciesVocab.from_crystals(crystals)
        counts = np.array([c.n_atoms for c in crystals])
        b, n = len(crystals), int(counts.max())
        mask = np.arange(n)[None, :] < counts[:, None]
        cart = np.zeros((b, n, 3))
        numbers = np.zeros((b, n), dtype=np.int64)
        cart[mask] = np.concatenate([c.cart for c in crystals])
        numbers[mask] = np.concatenate([c.numbers for c in crystals])
        species = np.zeros((b, n), dtype=np.int64)
        for i, c in enumerate(crystals):  # per crystal, to name the crystal of an unknown element
            species[i, : counts[i]] = vocab.encode(c.numbers, crystal_id=_where(c))
        lattice = np.stack([c.lattice for c in crystals])
        return cls(
            lattice=torch.as_tensor(lattice, dtype=dtype, device=device),
            cart=torch.as_tensor(cart, dtype=dtype, device=device),
            species=torch.as_tensor(species, device=device),
            numbers=torch.as_tensor(numbers, device=device),
            mask=torch.as_tensor(mask, device=device),
            lattice_params=torch.as_tensor(lattice_to_params(lattice), dtype=dtype, device=device),
            ids=[c.id for c in crystals],
            vocab=vocab,
        )

    def __len__(self) -> int:
        return int(self.lattice.shape[0])

    @property
    def n_atoms(self) -> torch.Tensor:
        """``[B]`` number of atoms of each crystal."""
        return self.mask.sum(dim=1)

    @property
    def geometry(self) -> PeriodicGeometry:
        """Periodic geometry of the cells (computed on first use, then cached)."""
        if self._geometry is None:
            self._geometry = PeriodicGeometry.from_lattices(
                self.lattice, dtype=self.lattice.dtype, device=self.lattice.device
            )
        return self._geometry

    @property
    def frac(self) -> torch.Tensor:
        """``[B, N, 3]`` fractional coordinates (not wrapped)."""
        return torch.bmm(self.cart, torch.linalg.inv(self.lattice))

    def select(self, index: torch.Tensor) -> CrystalBatch:
        """Sub-batch of crystals ``index`` ``[b]``, padded only to its own largest crystal."""
        mask = self.mask.index_select(0, index)
        n = max(int(mask.sum(dim=1).max()), 1)
        return CrystalBatch(
            lattice=self.lattice.index_select(0, index),
            cart=self.cart.index_select(0, index)[:, :n],
            species=self.species.index_select(0, index)[:, :n],
            numbers=self.numbers.index_select(0, index)[:, :n],
            mask=mask[:, :n],
            lattice_params=self.lattice_params.index_select(0, index),
            ids=[self.ids[i] for i in index.tolist()],
            vocab=self.vocab,
            _geometry=self._geometry.select(index) if self._geometry is not None else None,
        )

    def shift_origin(self, shift: torch.Tensor) -> CrystalBatch:
        """The same crystals with their origins moved: fractional ``u -> (u + shift) mod 1``.

        Args:
            shift: ``[B, 3]`` fractional shift of each crystal.

        Returns:
            A batch whose atoms are wrapped back into their (unchanged) cells.
        """
        if shift.shape != (len(self), 3):
            raise ValueError(f"shift must have shape [{len(self)}, 3], got {list(shift.shape)}")
        frac = self.frac + shift.to(self.cart).unsqueeze(1)
        frac = frac - torch.floor(frac)
        cart = torch.bmm(frac, self.lattice) * self.mask.unsqueeze(-1)
        return replace(self, cart=cart)

    def to(self, device: torch.device | str) -> CrystalBatch:
        """Move every tensor to ``device``."""
        return CrystalBatch(
            lattice=self.lattice.to(device),
            cart=self.cart.to(device),
            species=self.species.to(device),
            numbers=self.numbers.to(device),
            mask=self.mask.to(device),
            lattice_params=self.lattice_params.to(device),
            ids=self.ids,
            vocab=self.vocab,
            _geometry=self._geometry.to(device) if self._geometry is not None else None,
        )


def bounding_box(crystals: Sequence[Crystal], margin: float = 0.0) -> np.ndarray:
    """``[2, 3]`` low and high corner (Angstrom) of all atoms of ``crystals``, grown by ``margin``."""
    pts = np.concatenate([c.cart for c in crystals])
    return np.stack([pts.min(axis=0) - margin, pts.max(axis=0) + margin])


def _where(c: Crystal) -> str:
    """A crystal's id, with the file it came from when known."""
    source = c.info.get("source")
    return f"{source}: {c.id}" if source else c.id
