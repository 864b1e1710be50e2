"""The species vote: each atom's own majority, or the majority within a crystal's palette."""

from __future__ import annotations

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
