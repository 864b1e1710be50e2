"""Voxelisation: density peaks sit on atoms, labels name the right species, images and rotations."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest
import torch
from voxel_helpers import shipped_examples

from nesf.data.crystal import Crystal
from nesf.data.examples import demo_crystals
from nesf.data.vocab import SpeciesVocab
from nesf.voxel.grid import (
    covalent_radius,
    cube_rotations,
    fractional_to_voxel,
    random_rotations,
    voxel_centres,
    voxel_to_fractional,
    voxelize,
)


@pytest.fixture(scope="module")
def salts():
    return [c.standardized() for c in demo_crystals(("NaCl-rocksalt", "SrTiO3-perovskite", "CsCl"))]


def brute_force(crystal: Crystal, d: int, vocab: SpeciesVocab, sigma_factor=0.5, label_factor=1.0):
    """Reference: every voxel against every image in a 7^3 block of cells (numpy, float64)."""
    u = voxel_centres(d, torch.float64).numpy()
    pts = np.stack(np.meshgrid(u, u, u, indexing="ij"), -1).reshape(-1, 3) @ crystal.lattice
    r = covalent_radius(crystal.numbers)
    sigma = sigma_factor * r
    shifts = np.array(list(product(range(-3, 4), repeat=3)))
    cart = ((crystal.frac % 1.0)[None] + shifts[:, None]).reshape(-1, 3) @ crystal.lattice
    atom = np.tile(np.arange(crystal.n_atoms), len(shifts))
    d2 = ((pts[:, None] - cart[None]) ** 2).sum(-1)
    cut = np.maximum(4 * sigma, label_factor * r)[atom]
    density = (np.exp(-d2 / (2 * sigma[atom] ** 2)) * (d2 <= cut**2)).sum(1)
    cover = d2 <= (label_factor * r[atom]) ** 2
    nearest = np.where(cover, d2, np.inf).argmin(1)
    labels = np.where(cover.any(1), vocab.encode(crystal.numbers)[atom][nearest] + 1, 0)
    return density.reshape(d, d, d), labels.reshape(d, d, d)


def test_density_peaks_on_atoms_and_labels_right(salts):
    vocab = SpeciesVocab.from_crystals(salts)
    d = 32
    density, labels = voxelize(salts, d, vocab=vocab)
    assert density.shape == labels.shape == (3, d, d, d)
    assert density.dtype == torch.float32 and labels.dtype == torch.long
    for b, c in enumerate(salts):
        grid = density[b].numpy()
        for frac, z in zip(c.frac % 1.0, c.numbers):
            for shift in ((0, 0, 0), (1, 1, 1)):  # the atom and its image in the margin of the box
                v = np.rint(fractional_to_voxel(frac + np.array(shift) * (frac < 0.2), d)).astype(int)
                block = grid[v[0] - 1 : v[0] + 2, v[1] - 1 : v[1] + 2, v[2] - 1 : v[2] + 2]
                assert grid[tuple(v)] == block.max(), (c.id, frac)
                assert grid[tuple(v)] > 0.85
                assert labels[b][tuple(v)].item() == vocab.encode([z])[0] + 1
        # the voxel farthest from every atom is background in rock salt's label grid
    assert labels[0].min().item() == 0
    assert set(labels[0].unique().tolist()) == {0, *(vocab.encode([11, 17]) + 1).tolist()}


def test_matches_brute_force_in_a_skewed_cell():
    wanted = ("CaCO3-calcite-primitive", "ZrO2-baddeleyite-conventional")
    crystals = [c for c in shipped_examples() if c.id in wanted]
    assert len(crystals) == 2
    vocab = SpeciesVocab.from_crystals(crystals)
    density, labels = voxelize(crystals, 10, vocab=vocab)
    for b, c in enumerate(crystals):
        ref_density, ref_labels = brute_force(c, 10, vocab)
        np.testing.assert_allclose(density[b].numpy(), ref_density, atol=1e-5)
        assert np.mean(labels[b].numpy() == ref_labels) > 0.999


def test_density_only_without_vocab_and_errors(salts):
    density, labels = voxelize(salts[:1], 16)
    assert labels is None and density.shape == (1, 16, 16, 16)
    with pytest.raises(ValueError, match="rotations"):
        voxelize(salts[:1], 16, rotations=torch.eye(3).expand(2, 3, 3))
    with pytest.raises(KeyError, match="not in the species vocabulary"):
        voxelize(salts[:1], 16, vocab=SpeciesVocab((8,)))


def test_index_conversions_are_inverse():
    idx = np.array([[0.0, 3.5, 31.0]])
    np.testing.assert_allclose(fractional_to_voxel(voxel_to_fractional(idx, 32), 32), idx)
    np.testing.assert_allclose(voxel_centres(4).numpy(), [-0.0625, 0.3125, 0.6875, 1.0625])


def test_rotations_seeded_proper_and_cubic_symmetry(salts):
    r1 = random_rotations(5, torch.Generator().manual_seed(7))
    r2 = random_rotations(5, torch.Generator().manual_seed(7))
    assert torch.equal(r1, r2)
    np.testing.assert_allclose(torch.det(r1).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose((r1 @ r1.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    assert len(cube_rotations()) == 24
    cubic = random_rotations(3, torch.Generator().manual_seed(0), kind="cubic")
    rock = salts[:1] * 3
    vocab = SpeciesVocab.from_crystals(rock)
    plain, plain_labels = voxelize(rock, 16, vocab=vocab)
    turned, turned_labels = voxelize(rock, 16, vocab=vocab, rotations=cubic)
    torch.testing.assert_close(turned, plain, atol=1e-5, rtol=0)  # rock salt is symmetric about its cell centre
    assert torch.mean((turned_labels == plain_labels).float()) > 0.99
    anyrot = voxelize(rock[:1], 16, rotations=random_rotations(1, torch.Generator().manual_seed(1)))[0]
    assert not torch.allclose(anyrot, plain[:1], atol=1e-2)
    with pytest.raises(ValueError, match="kind"):
        random_rotations(1, torch.Generator(), kind="tetragonal")
