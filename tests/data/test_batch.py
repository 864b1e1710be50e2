"""CrystalBatch: padding, masks, species indices, lattice parameters, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nesf import Crystal, SpeciesVocab
from nesf.data.batch import CrystalBatch, bounding_box
from nesf.data.crystal import lattice_to_params, params_to_lattice
from nesf.errors import UnknownElementError


def _crystals() -> list[Crystal]:
    tric = params_to_lattice(np.array([4.1, 5.3, 6.2, np.radians(80.0), np.radians(95.0), np.radians(104.0)]))
    return [
        Crystal(np.eye(3) * 4.0, [[0, 0, 0], [2, 2, 2]], [11, 17], id="NaCl"),
        Crystal(tric, np.array([[0.1, 0.2, 0.3], [0.6, 0.7, 0.15], [0.35, 0.9, 0.8]]) @ tric, [8, 14, 26], id="tric"),
        Crystal(np.eye(3) * 3.0, [[0.5, 0.5, 0.5]], [29], id="Cu"),
    ]


def test_shapes_mask_and_padding():
    crystals = _crystals()
    batch = CrystalBatch.from_crystals(crystals)
    assert len(batch) == 3
    assert batch.lattice.shape == (3, 3, 3)
    assert batch.cart.shape == (3, 3, 3)
    assert batch.species.shape == (3, 3)
    assert batch.numbers.shape == (3, 3)
    assert batch.mask.shape == (3, 3) and batch.mask.dtype == torch.bool
    assert batch.lattice_params.shape == (3, 6)
    assert batch.cart.dtype == torch.float32 and batch.lattice.dtype == torch.float32
    assert batch.species.dtype == torch.int64
    expected_mask = torch.tensor([[True, True, False], [True, True, True], [True, False, False]])
    assert torch.equal(batch.mask, expected_mask)
    assert batch.n_atoms.tolist() == [2, 3, 1]
    assert batch.ids == ["NaCl", "tric", "Cu"]
    pad = ~batch.mask
    assert torch.all(batch.cart[pad] == 0)
    assert torch.all(batch.numbers[pad] == 0)
    assert torch.all(batch.species[pad] == 0)
    for i, c in enumerate(crystals):
        n = c.n_atoms
        np.testing.assert_allclose(batch.cart[i, :n].numpy(), c.cart, atol=1e-6)
        np.testing.assert_array_equal(batch.numbers[i, :n].numpy(), c.numbers)
        np.testing.assert_allclose(batch.lattice[i].numpy(), c.lattice, atol=1e-6)
        np.testing.assert_allclose(batch.lattice_params[i].numpy(), lattice_to_params(c.lattice), atol=1e-6)
        np.testing.assert_allclose(batch.frac[i, :n].numpy(), c.frac, atol=1e-5)


def test_species_match_vocab():
    crystals = _crystals()
    batch = CrystalBatch.from_crystals(crystals)
    assert batch.vocab == SpeciesVocab.from_crystals(crystals)
    for i, c in enumerate(crystals):
        n = c.n_atoms
        np.testing.assert_array_equal(batch.species[i, :n].numpy(), batch.vocab.encode(c.numbers))
        np.testing.assert_array_equal(batch.vocab.decode(batch.species[i, :n].numpy()), c.numbers)


def test_given_vocab_and_dtype():
    vocab = SpeciesVocab(tuple(range(1, 40)))
    batch = CrystalBatch.from_crystals(_crystals(), vocab=vocab, dtype=torch.float64)
    assert batch.vocab is vocab
    assert batch.cart.dtype == torch.float64
    assert batch.species[0, :2].tolist() == [10, 16]  # Na, Cl with index Z - 1
    np.testing.assert_allclose(batch.cart[1, :3].numpy(), _crystals()[1].cart, atol=1e-12)


def test_unknown_element_names_crystal():
    vocab = SpeciesVocab((8, 11, 17, 26))  # no Si, no Cu
    with pytest.raises(UnknownElementError) as info:
        CrystalBatch.from_crystals(_crystals(), vocab=vocab)
    msg = str(info.value)
    assert "'tric'" in msg
    assert "element Si " in msg


def test_empty_batch_refused():
    with pytest.raises(ValueError):
        CrystalBatch.from_crystals([])


def test_to_device_keeps_everything():
    batch = CrystalBatch.from_crystals(_crystals())
    moved = batch.to("cpu")
    for name in ("lattice", "cart", "species", "numbers", "mask", "lattice_params"):
        assert torch.equal(getattr(moved, name), getattr(batch, name))
    assert moved.ids == batch.ids and moved.vocab == batch.vocab


def test_bounding_box():
    crystals = _crystals()
    box = bounding_box(crystals, margin=1.0)
    pts = np.concatenate([c.cart for c in crystals])
    np.testing.assert_allclose(box, [pts.min(0) - 1.0, pts.max(0) + 1.0])


def test_shift_origin_moves_the_field_with_the_atoms():
    from nesf.fields.exact import ExactField

    batch = CrystalBatch.from_crystals(_crystals(), dtype=torch.float64)
    shift = torch.tensor([[0.25, 0.5, 0.0], [0.3, 0.7, 0.9], [0.5, 0.5, 0.5]], dtype=torch.float64)
    moved = batch.shift_origin(shift)
    assert torch.equal(moved.lattice, batch.lattice) and torch.equal(moved.species, batch.species)
    frac = moved.frac[moved.mask]
    assert bool(((frac >= 0) & (frac < 1)).all())  # wrapped back into the cell
    assert torch.equal(moved.cart[~moved.mask], torch.zeros_like(moved.cart[~moved.mask]))
    gen = torch.Generator().manual_seed(0)
    points = torch.bmm(torch.rand(3, 50, 3, generator=gen, dtype=torch.float64), batch.lattice)
    moved_points = points + torch.bmm(shift.unsqueeze(1), batch.lattice)
    before, after = ExactField(batch, "periodic"), ExactField(moved, "periodic")
    torch.testing.assert_close(after.position(moved_points), before.position(points))
    assert torch.equal(after.species_labels(moved_points), before.species_labels(points))
    with pytest.raises(ValueError, match="shape"):
        batch.shift_origin(torch.zeros(2, 3))
