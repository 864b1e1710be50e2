"""Screening samples by their static CHGNet formation energy (``nesf sample --screen``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_relax import chgnet_or_skip, rocksalt

from nesf.data.crystal import Crystal
from nesf.relax.screen import formation_energies, screen


def diamond(a: float = 3.567) -> Crystal:
    """The two-atom primitive cell of diamond."""
    lattice = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Crystal(lattice, np.array([[0.0, 0.0, 0.0], [0.25 * a] * 3]), np.array([6, 6]), "diamond")


def squeezed_carbon() -> Crystal:
    """Diamond's two atoms 0.9 A apart in an expanded cell: a carbon cell no synthesis gives."""
    lattice = np.eye(3) * 4.0
    return Crystal(lattice, np.array([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0]]), np.array([6, 6]), "squeezed")


def test_formation_energy_is_energy_minus_element_references():
    """Given energies, the formation energy subtracts each atom's elemental reference (no potential needed)."""
    from nesf.relax.hull import elemental_references
    from nesf.relax.potential import model_tag

    chgnet_or_skip()
    refs = elemental_references(model_tag())
    salt, c = rocksalt(), diamond()
    empty = Crystal(np.eye(3), np.zeros((0, 3)), np.zeros(0, int), "empty")
    e = formation_energies([salt, c, empty], [-3.0, None, -1.0])
    assert e[0] == pytest.approx(-3.0 - 0.5 * (refs["Na"] + refs["Cl"]))
    assert np.isnan(e[1]) and np.isnan(e[2])  # no energy, no atoms: not evaluated
    with pytest.raises(ValueError, match="2 energies for 1 crystals"):
        formation_energies([salt], [-1.0, -2.0])


def test_screen_keeps_diamond_and_drops_a_squeezed_cell():
    """CHGNet puts diamond near carbon's reference and a 0.9 A C-C contact far above it."""
    chgnet_or_skip()
    keep, e_form = screen([diamond(), squeezed_carbon()], 1.0)
    assert keep.tolist() == [True, False]
    assert abs(e_form[0]) < 0.3 and e_form[1] > 2.0
    with pytest.raises(ValueError, match="finite"):
        screen([diamond()], float("nan"))


def test_sample_screen_writes_only_kept_samples(tmp_path, capsys):
    """`nesf sample --screen` writes the samples that pass, each with its formation energy, and counts the rest."""
    chgnet_or_skip()
    import torch

    from nesf.cli import main

    threads = torch.get_num_threads()
    common = ["--model", "carbon_24", "--n", "12", "--seed", "0", "--grid", "0", "--threads", "1", "--quiet"]
    try:
        assert main(["sample", *common, "--out", str(tmp_path / "s"), "--screen", "1.0"]) == 0
        s = json.loads((tmp_path / "s" / "summary.json").read_text())
        kept = s["samples"]
        assert s["n_decoded"] == 12 and s["n_written"] == len(kept) == s["screen"]["n_kept"]
        assert s["n_screened_out"] == 12 - len(kept) and 0 < len(kept) < 12
        assert all(r["chgnet_formation_energy_ev"] <= 1.0 for r in kept)
        cifs = sorted(p.stem for p in (tmp_path / "s").glob("*.cif"))
        assert cifs == sorted(r["id"] for r in kept)
        assert open(tmp_path / "s" / "all.extxyz").read().count("Lattice=") == len(kept)
        assert f"{s['n_screened_out']} screened out" in capsys.readouterr().out
        # a threshold that is no energy is refused before any sampling
        assert main(["sample", *common, "--out", str(tmp_path / "x"), "--screen", "nan"]) != 0
        assert "--screen nan" in capsys.readouterr().err and not (tmp_path / "x").exists()
    finally:
        torch.set_num_threads(threads)


def test_api_sample_screen_keeps_a_subset_of_the_same_draw():
    """`NeSF.sample(screen=...)` returns the unscreened draw's crystals that pass, in order."""
    chgnet_or_skip()
    from nesf import NeSF

    model = NeSF.load("carbon_24")
    every = model.sample(10, seed=2)
    kept = model.sample(10, seed=2, screen=1.0)
    assert 0 < len(kept) < len(every)
    keep, _ = screen([Crystal.from_pymatgen(s) for s in every], 1.0)
    expected = [s for s, k in zip(every, keep) if k]
    assert [len(s) for s in kept] == [len(s) for s in expected]
    assert all(np.allclose(a.lattice.matrix, b.lattice.matrix) for a, b in zip(kept, expected))
