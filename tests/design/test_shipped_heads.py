"""The shipped heads on real perovskites they were not fitted on (the held-out part of perov_5's split)."""

from __future__ import annotations

import numpy as np
import pytest

from nesf.data.readers import read_crystals
from nesf.design.data import seeded_split, targets
from nesf.design.registry import resolve_head_path, shipped_heads
from nesf.errors import CheckpointError


def test_shipped_crystal_head_predicts_held_out_perovskites_better_than_the_latent_head(shared_data):
    from nesf.api import NeSF

    path = shared_data / "cdvae" / "perov_5" / "val.csv"
    crystals = read_crystals(path)
    held_out = [c for c, train in zip(crystals, seeded_split(len(crystals), 0.9, 0)) if not train][:60]
    truth = targets(held_out, "heat_ref")
    model = NeSF.load("perov_5")
    crystal_mean, crystal_spread = model.predict(held_out, "heat_ref")  # auto: the shipped crystal head
    latent_mean, _ = model.predict(held_out, "heat_ref", reads="latent")
    crystal_mae, latent_mae = np.abs(crystal_mean - truth).mean(), np.abs(latent_mean - truth).mean()
    # held out from the heads' fit: 379 crystals gave 0.077 and 0.226 eV/cell
    assert crystal_mae < 0.15 and crystal_mae < 0.6 * latent_mae, (crystal_mae, latent_mae)
    assert (crystal_spread >= 0).all()
    np.testing.assert_allclose(model.predict(held_out, "heat_ref", reads="crystal")[0], crystal_mean)


def test_shipped_head_names():
    assert ("perov_5", "heat_ref") in shipped_heads()
    assert all(not t.endswith((".crystal", ".evaluator")) for _, t in shipped_heads())
    assert resolve_head_path("heat_ref", "perov_5", reads="auto").name == "perov_5-heat_ref.crystal.pt"
    assert resolve_head_path("heat_ref", "perov_5").name == "perov_5-heat_ref.pt"
    # carbon_24 ships no crystal head: auto falls back to its latent head, crystal is refused
    assert resolve_head_path("energy_per_atom", "carbon_24", reads="auto").name == "carbon_24-energy_per_atom.pt"
    with pytest.raises(CheckpointError, match="no shipped head"):
        resolve_head_path("energy_per_atom", "carbon_24", reads="crystal")
