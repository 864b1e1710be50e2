"""The species vote (each atom's own majority, or the majority within a crystal's palette) and overlapping atoms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nesf.reconstruction.reconstruct import palette_vote
from nesf.reconstruction.settings import ReconstructionSettings


def test_the_palette_drops_elements_with_little_probability_and_keeps_the_rest():
    # crystal 0: three atoms clearly class 0, one atom split between classes 1 and 2;
    # crystal 1: one atom of class 2 alone, confident (a real single-atom element)
    tally = torch.tensor([[27, 0, 0], [27, 0, 0], [27, 0, 0], [0, 14, 13], [0, 0, 27]], dtype=torch.int32)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.3, 0.36, 0.34], [0.05, 0.05, 0.9]])
    owner = torch.tensor([0, 0, 0, 0, 1])
    own = tally.argmax(dim=-1)
    assert own.tolist() == [0, 0, 0, 1, 2]
    # class 1 holds 0.56 atoms' worth in crystal 0, class 2 0.54: both dropped at 0.6
    assert palette_vote(tally, probs, owner, 2, 0.6).tolist() == [0, 0, 0, 0, 2]
    # at 0.55 class 1 stays; class 2 (0.54) goes, so the split atom keeps its own vote
    assert palette_vote(tally, probs, owner, 2, 0.55).tolist() == [0, 0, 0, 1, 2]
    # an element below the threshold everywhere still leaves each crystal its most probable one
    assert palette_vote(tally, probs, owner, 2, 5.0).tolist() == [0, 0, 0, 0, 2]
    # a tiny threshold changes nothing
    assert palette_vote(tally, probs, owner, 2, 1e-6).tolist() == own.tolist()


def test_species_min_atoms_is_checked():
    with pytest.raises(ValueError, match="species_min_atoms"):
        ReconstructionSettings(species_min_atoms=-1)


def test_atoms_on_top_of_an_earlier_atom_are_dropped_across_the_cell_boundary():
    from nesf.fields.geometry import PeriodicGeometry
    from nesf.reconstruction.cluster import drop_overlapping

    lattice = np.array([np.eye(3) * 5.0, [[5.0, 0, 0], [4.0, 3.0, 0], [0, 0, 5.0]]])
    geometry = PeriodicGeometry.from_lattices(lattice)  # float32, as decoding binds it
    atoms = torch.tensor(
        [
            [0.1, 1.0, 1.0],  # crystal 0: A
            [1.0, 1.0, 1.0],  # B, 0.9 A from A: kept
            [4.95, 1.0, 1.0],  # C, 0.15 A from A through the boundary: dropped
            [1.3, 1.0, 1.0],  # D, 0.3 A from B: dropped
            [1.7, 1.0, 1.0],  # E, 0.4 A from D (dropped) and 0.7 A from B: kept
            [0.2, 0.2, 0.2],  # crystal 1: F
            [9.05, 3.1, 0.2],  # G = F + a + b + (0.05, -0.1, 0) through the skewed cell: dropped
        ]
    )
    owner = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    kept, kept_owner = drop_overlapping(atoms, owner, 2, geometry, 0.5)
    assert kept.tolist() == atoms[[0, 1, 4, 5]].tolist() and kept_owner.tolist() == [0, 0, 0, 1]
    # without a cell (the paper frame) only plain distances count: C stays
    kept, _ = drop_overlapping(atoms[:5], owner[:5], 1, None, 0.5)
    assert kept.tolist() == atoms[[0, 1, 2, 4]].tolist()
    # nothing close: the very same tensors come back
    same, same_owner = drop_overlapping(atoms[[0, 1, 4]], owner[[0, 1, 4]], 2, geometry, 0.5)
    assert torch.equal(same, atoms[[0, 1, 4]]) and torch.equal(same_owner, owner[[0, 1, 4]])
