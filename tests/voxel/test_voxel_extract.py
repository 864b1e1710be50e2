"""Atom extraction from the true voxel density: counts, positions within a voxel, species."""

from __future__ import annotations

import numpy as np
import pytest
from voxel_helpers import shipped_examples

from nesf.data.crystal import Crystal
from nesf.data.examples import demo_crystals
from nesf.data.readers import read_crystals
from nesf.data.vocab import SpeciesVocab
from nesf.metrics.paper import pairwise_distances, paper_metrics
from nesf.voxel.extract import ExtractionSettings, extract_crystals, find_peaks, merge_periodic, vote_species
from nesf.voxel.grid import voxel_size, voxelize

#: Physical example crystals (the random triclinic cells of the example set pack atoms closer than
#: their Gaussians can be told apart).
PHYSICAL = (
    "Mg-hcp-conventional",
    "ZnO-wurtzite-conventional",
    "NiAs-conventional",
    "SiO2-alpha-quartz-conventional",
    "Al2O3-corundum-primitive",
    "CaCO3-calcite-primitive",
    "Bi-A7-primitive",
    "ZrO2-baddeleyite-conventional",
    "Ga2O3-beta-primitive",
    "Cu-fcc-primitive",
    "NaCl-rocksalt-primitive",
    "Si-diamond-primitive",
)


def round_trip(crystals: list[Crystal], d: int) -> list[Crystal]:
    vocab = SpeciesVocab.from_crystals(crystals)
    density, labels = voxelize(crystals, d, vocab=vocab)
    lattices = np.stack([c.lattice for c in crystals])
    return extract_crystals(density.numpy(), lattices, vocab, labels.numpy(), ids=[c.id for c in crystals])


def check_recovered(true: list[Crystal], pred: list[Crystal], d: int) -> None:
    for t, p, dist in zip(true, pred, pairwise_distances(true, pred, "periodic")):
        assert p.id == t.id
        assert p.n_atoms == t.n_atoms, t.id
        nearest = dist.argmin(axis=1)
        assert len(set(nearest.tolist())) == t.n_atoms, t.id  # one detected atom per true atom
        assert dist.min(axis=1).max() < voxel_size(t.lattice, d).max(), t.id
        assert np.array_equal(p.numbers[nearest], t.numbers), t.id
        assert np.all((p.frac >= -1e-9) & (p.frac < 1.0)), t.id


def test_true_density_of_classic_crystals_gives_them_back():
    crystals = [c.standardized() for c in shipped_examples() if c.id in PHYSICAL]
    assert len(crystals) == len(PHYSICAL)
    check_recovered(crystals, round_trip(crystals, 32), 32)


def test_true_density_of_salts_and_perovskite_sub_voxel():
    crystals = [c.standardized() for c in demo_crystals(("NaCl-rocksalt", "SrTiO3-perovskite", "GaAs-zincblende"))]
    pred = round_trip(crystals, 16)
    check_recovered(crystals, pred, 16)
    metrics = paper_metrics(crystals, pred, "periodic")
    assert metrics["position_error_actual"] < 0.05  # sub-voxel refinement: a tenth of a 0.4-0.5 A voxel
    assert metrics["species_error_actual_pct"] == 0.0


def test_icsg3d_test_crystals(shared_data):
    crystals = read_crystals(shared_data / "nesf_paper" / "icsg3d" / "test.extxyz")[::45]
    crystals = [c.standardized() for c in crystals]
    check_recovered(crystals, round_trip(crystals, 32), 32)


def test_find_peaks_refines_an_off_grid_gaussian():
    d = 12
    centre = np.array([5.3, 6.1, 4.75])
    idx = np.stack(np.meshgrid(*[np.arange(d)] * 3, indexing="ij"), -1)
    density = np.exp(-((idx - centre) ** 2).sum(-1) / (2 * 1.2**2))
    pos, heights = find_peaks(density, 0.2)
    np.testing.assert_allclose(pos, centre[None], atol=1e-6)
    assert heights.shape == (1,) and heights[0] > 0.8
    assert find_peaks(np.zeros((d, d, d)), 0.1)[0].shape == (0, 3)


def test_merge_periodic_joins_images_across_cell_faces():
    lattice = np.diag([4.0, 5.0, 6.0])
    frac = np.array([[0.001, 0.5, 0.5], [0.999, 0.5, 0.5], [1.0 - 1e-4, 0.5, 0.5], [0.5, 0.5, 0.5]])
    merged, groups = merge_periodic(frac, np.array([1.0, 0.9, 0.8, 1.0]), lattice, 0.3)
    assert len(merged) == 2
    assert sorted(len(g) for g in groups) == [1, 3]
    assert np.all((merged >= 0) & (merged < 1))
    edge = merged[np.argmin(np.abs(merged[:, 0] - 0.5) < 0.1)]
    assert min(edge[0], 1 - edge[0]) < 0.002


def test_vote_species_majority_and_fallbacks():
    labels = np.zeros((6, 6, 6), dtype=np.int64)
    labels[1:3, 1:3, 1:3] = 2
    labels[1, 1, 1] = 1
    assert vote_species(labels, np.array([[1, 1, 1]]), 1).tolist() == [1]  # majority of class 2 -> index 1
    far = np.array([[5, 5, 5]])
    assert vote_species(labels, far, 0).tolist() == [1]  # nearest foreground voxel
    foreground = np.full_like(labels, 1)
    assert vote_species(labels, far, 0, foreground).tolist() == [0]
    assert vote_species(np.zeros_like(labels), far, 1).tolist() == [0]


def test_extract_checks_shapes_and_empty_grid():
    vocab = SpeciesVocab((8,))
    empty, no_labels, cell = np.zeros((1, 8, 8, 8)), np.zeros((1, 8, 8, 8), dtype=int), np.eye(3)[None] * 4
    none = extract_crystals(empty, cell, vocab, no_labels, settings=ExtractionSettings(keep_one=False))
    assert none[0].n_atoms == 0 and none[0].id == "decoded-0"
    one = extract_crystals(empty, cell, vocab, no_labels)  # keep_one: the highest local maximum in the cell
    assert one[0].n_atoms == 1 and one[0].numbers.tolist() == [8]
    assert np.all((one[0].frac >= 0) & (one[0].frac < 1))
    edge = np.zeros((1, 8, 8, 8))
    edge[0, 0, 0, 0] = 1.0  # the only peak lies in the margin: the densest voxel of the cell is taken
    assert extract_crystals(edge, cell, vocab, no_labels)[0].n_atoms == 1
    with pytest.raises(ValueError, match="same crystals"):
        extract_crystals(np.zeros((1, 8, 8, 8)), np.eye(3)[None], vocab, np.zeros((2, 8, 8, 8), dtype=int))
    with pytest.raises(ValueError, match="batch_size"):
        ExtractionSettings(batch_size=0)
