"""The shipped heads on real perovskites they were not fitted on (the held-out part of perov_5's split)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from nesf.data.readers import read_crystals
from nesf.design.data import seeded_split, targets
from nesf.design.registry import resolve_head_path, shipped_heads
from nesf.errors import CheckpointError


def _held_out_rows(path, n: int, out):  # noqa: ANN001, ANN202
    """The first ``n`` held-out rows of the shipped heads' split of a CDVAE CSV, copied to ``out`` (no CIF parsed)."""
    csv.field_size_limit(1 << 28)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    header, rows = rows[0], rows[1:]
    keep = [row for row, train in zip(rows, seeded_split(len(rows), 0.9, 0)) if not train][:n]
    with open(out, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *keep])
    return out


def test_shipped_crystal_head_predicts_held_out_perovskites_better_than_the_latent_head(shared_data, tmp_path):
    from nesf.api import NeSF

    held_out = read_crystals(_held_out_rows(shared_data / "cdvae" / "perov_5" / "val.csv", 60, tmp_path / "h.csv"))
    assert len(held_out) == 60
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
