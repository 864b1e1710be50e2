"""Fixtures shared by the encoding tests."""

from __future__ import annotations

import pytest
import torch

from nesf.api import NeSF
from nesf.data.batch import CrystalBatch


@pytest.fixture(scope="module")
def mp_codes(classic):
    """The shipped `mp`, three classic crystals in its setting, their batch and one-pass codes."""
    model = NeSF.load("mp")
    ids = ("ZnO-wurtzite-conventional", "NiAs-conventional", "CaCO3-calcite-primitive")
    inner, _ = model.to_model_setting([c for c in classic if c.id in ids])
    batch = CrystalBatch.from_crystals(inner, model.vocab)
    with torch.no_grad():
        z, _, _ = model.model.encode(batch.cart, batch.frac, batch.species, batch.mask, batch.lattice_params)
    return model, inner, batch, z
