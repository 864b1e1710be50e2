"""Relaxation of crystals (CHGNet) and the checks after it: RMSD, symmetry, uniqueness, novelty, the hull proxy."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from nesf.data.crystal import Crystal
from nesf.relax.checks import fixed_order_rmsd, novel_mask, rmsd_to_relaxed, space_group_number, unique_mask
from nesf.relax.hull import EnergyCache, HullProxy, crystals_sha256, needed_indices, training_hull
from nesf.relax.metrics import relaxed_metrics


def rocksalt(a: float = 5.64, elements: tuple[int, int] = (11, 17), id: str = "NaCl") -> Crystal:
    """The primitive two-atom cell of rock salt (space group 225)."""
    lattice = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    return Crystal(lattice, np.array([[0.0, 0.0, 0.0], [0.5 * a, 0.5 * a, 0.5 * a]]), np.array(elements), id)


def cscl(a: float = 4.12, id: str = "CsCl-type") -> Crystal:
    """The CsCl structure with Na and Cl (space group 221): same formula as rock salt, another structure."""
    return Crystal(np.eye(3) * a, np.array([[0.0, 0.0, 0.0], [0.5 * a] * 3]), np.array([11, 17]), id)


def perturbed(c: Crystal, amplitude: float = 0.1, seed: int = 0) -> Crystal:
    """Every atom moved by ``amplitude`` A in a random direction."""
    d = np.random.default_rng(seed).normal(size=c.cart.shape)
    d *= amplitude / np.linalg.norm(d, axis=1, keepdims=True)
    return Crystal(c.lattice.copy(), c.cart + d, c.numbers.copy(), c.id + "-perturbed")


def chgnet_or_skip() -> None:
    try:
        import chgnet  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chgnet is missing: the test extra installs it (pip install -e '.[test]')")
        pytest.skip("chgnet is not installed (pip install 'nesf[relax]')")


# ---------------------------------------------------------------------- no potential needed
def test_space_group_and_rmsd_of_a_perturbation():
    nacl = rocksalt()
    assert space_group_number(nacl) == 225
    moved = perturbed(nacl, 0.1)
    assert space_group_number(moved, symprec=0.01) != 225
    assert fixed_order_rmsd(nacl, nacl) == pytest.approx(0.0, abs=1e-12)
    rmsd, method = rmsd_to_relaxed(moved, nacl)
    assert method == "matcher"
    assert 0.02 < rmsd < 0.12  # the two 0.1 A moves, less their common translation
    assert fixed_order_rmsd(moved, nacl) == pytest.approx(rmsd, rel=0.3)


def test_unique_counts_distinct_structures():
    nacl = rocksalt()
    crystals = [
        nacl,
        rocksalt(id="again"),  # the same structure
        rocksalt(a=5.7, id="scaled"),  # pymatgen's matcher scales volumes: the same again
        cscl(),  # same formula, another structure
        rocksalt(elements=(12, 8), id="MgO"),  # another formula
        Crystal(nacl.lattice, nacl.cart[::-1], nacl.numbers[::-1], "reordered"),
    ]
    assert unique_mask(crystals).tolist() == [True, False, False, True, True, False]


def test_novel_against_training_crystals():
    training = [rocksalt(id="train-NaCl"), rocksalt(a=4.2, elements=(12, 8), id="train-MgO")]
    generated = [rocksalt(a=5.5), cscl(), rocksalt(a=4.6, elements=(19, 17), id="KCl")]
    assert novel_mask(generated, training).tolist() == [False, True, True]
    assert novel_mask(generated, []).tolist() == [True, True, True]


def test_hull_of_a_binary():
    # A-B binary (Na-Cl): elements at 0, NaCl at -1 eV/atom, a metastable Na3Cl above the line
    hull = HullProxy([("Na", 0.0), ("Cl", 0.0), ("NaCl", -1.0), ("Na3Cl", -0.2)])
    assert hull.e_above_hull("NaCl", -1.0) == pytest.approx(0.0, abs=1e-9)
    assert hull.e_above_hull("NaCl", -1.2) == pytest.approx(-0.2, abs=1e-9)  # below the hull
    # Na2Cl (x_Cl = 1/3) on the segment Na (0) - NaCl (-1): hull at -2/3
    assert hull.e_above_hull("Na2Cl", -0.5) == pytest.approx(1 / 6, abs=1e-9)
    assert hull.e_above_hull("Na2Cl", -0.6) == pytest.approx(1 / 15, abs=1e-9)
    assert hull.e_above_hull("Na3Cl", -0.2) == pytest.approx(0.3, abs=1e-9)  # hull at -1/2
    assert hull.e_above_hull("Na", 0.05) == pytest.approx(0.05, abs=1e-9)
    # an element without a reference of its own sits at 0 eV/atom, or at its value in a table
    assert HullProxy([("NaCl", -1.0)]).e_above_hull("NaCl", -1.0) == pytest.approx(0.0, abs=1e-9)
    tabled = HullProxy([("NaCl", -1.0)], element_references={"Na": -1.5, "Cl": -1.5})
    assert tabled.e_above_hull("NaCl", -1.0) == pytest.approx(0.5, abs=1e-9)  # above the elements' line
    assert tabled.missing_elements == {"Na", "Cl"} and tabled.default_elements == set()


def test_elemental_references_belong_to_their_potential(tmp_path):
    from nesf.relax.hull import ELEMENTAL_REFERENCES, elemental_references

    table = json.loads(ELEMENTAL_REFERENCES.read_text())
    refs = elemental_references(table["potential"])
    assert len(refs) >= 80 and {"O", "N", "F", "Sr", "Ti"} <= set(refs)
    assert all(-15.0 < e < 0.5 for e in refs.values())  # CHGNet energies per atom of elemental solids
    assert refs["O"] > refs["Ti"]  # molecular oxygen binds far less than titanium metal
    assert elemental_references("another potential") == {} and elemental_references(None) == {}


def test_linear_programme_gives_the_diagram_hull():
    rng = np.random.default_rng(0)
    elements = ["Li", "Fe", "P", "O"]
    refs = [(el, 0.0) for el in elements]
    for _ in range(40):  # random compositions of up to four elements, random energies
        counts = rng.integers(0, 4, size=4)
        if counts.sum() == 0:
            continue
        refs.append(({el: int(n) for el, n in zip(elements, counts) if n}, float(rng.uniform(-2.0, 0.5))))
    hull = HullProxy(refs)
    for formula in ("LiFePO4", "Li2O", "FeP2O7", "LiFe3", "Li3PO4"):
        assert hull.hull_energy(formula, "lp") == pytest.approx(hull.hull_energy(formula, "diagram"), abs=1e-7)
    # a dozen elements: beyond a diagram, the programme still answers (missing elements at 0 eV/atom)
    big = "LiFePOMgAlSiCaTiCuZnS"
    assert hull.e_above_hull(big, -0.1) == pytest.approx(-0.1 - hull.hull_energy(big, "lp"))
    assert hull.hull_energy(big) <= 0.0


def test_training_hull_cache_and_relaxed_metrics(tmp_path):
    training = [
        Crystal(np.eye(3) * 4.3, np.zeros((1, 3)), np.array([11]), "Na"),
        Crystal(np.eye(3) * 4.0, np.zeros((1, 3)), np.array([17]), "Cl"),
        rocksalt(id="train-NaCl"),
        rocksalt(a=4.2, elements=(12, 8), id="train-MgO"),  # another system: not needed
    ]
    made_up = {11: 0.0, 17: 0.0}
    calls: list[int] = []

    def energies(crystals):
        calls.append(len(crystals))
        return [-1.0 if len(set(c.numbers.tolist())) == 2 else made_up[int(c.numbers[0])] for c in crystals]

    assert needed_indices(training, [frozenset({"Na", "Cl"})]) == [0, 1, 2]
    cache = EnergyCache(tmp_path, "made-up", crystals_sha256(training))
    hull, record = training_hull(training, [frozenset({"Na", "Cl"})], energies, cache, progress=False)
    assert record["hull_energies_computed"] == 3 and hull.e_above_hull("NaCl", -0.95) == pytest.approx(0.05)
    again = EnergyCache(tmp_path, "made-up", crystals_sha256(training))
    assert again.energies == {0: 0.0, 1: 0.0, 2: -1.0}
    _, record = training_hull(training, [frozenset({"Na", "Cl"})], energies, again, progress=False)
    assert record["hull_energies_computed"] == 0 and calls == [3]

    def relaxed(c: Crystal, energy: float, rmsd: float) -> Crystal:
        c.info["properties"] = {"relax_energy_per_atom_ev": energy, "relax_rmsd_a": rmsd, "relax_spacegroup_kept": True}
        return c

    generated = [
        relaxed(rocksalt(id="a"), -0.95, 0.1),  # known (training NaCl), stable
        relaxed(rocksalt(id="b"), -0.95, 0.3),  # a duplicate of a
        relaxed(cscl(), -0.95, 0.2),  # novel and stable: unique, novel, stable
        relaxed(cscl(a=3.9, id="hot"), -0.5, 0.2),  # same structure as the CsCl one (volume scaled), unstable
    ]
    generated[3].info["properties"]["relax_spacegroup_kept"] = False
    m = relaxed_metrics(generated, training, energies=energies, progress=False)
    assert m["n_relaxed_now"] == 0 and m["rmsd_to_relaxed_mean_a"] == pytest.approx(0.2)
    assert m["unique_pct"] == pytest.approx(50.0) and m["novel_pct"] == pytest.approx(50.0)
    assert m["stable_proxy_pct"] == pytest.approx(75.0) and m["sun_pct"] == pytest.approx(25.0)
    assert m["spacegroup_kept_pct"] == pytest.approx(75.0)


# ---------------------------------------------------------------------- CHGNet
def test_perturbed_rock_salt_relaxes_back():
    chgnet_or_skip()
    import torch

    from nesf.relax.potential import Relaxer, RelaxSettings

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # CHGNet's forces on this perturbation are about 0.07 eV/A: a tight fmax lets it find 225 again
        result = Relaxer(RelaxSettings(fmax=0.02, steps=200)).relax_one(perturbed(rocksalt(), 0.1))
    finally:
        torch.set_num_threads(threads)
    assert result.error is None and result.converged
    assert result.spacegroup_before != 225 and result.spacegroup_after == 225 and not result.spacegroup_kept
    assert result.rmsd_a is not None and result.rmsd_a < 0.15
    assert -4.5 < result.energy_per_atom_ev < -3.0  # CHGNet's rock salt: about -3.7 eV/atom
    assert result.energy_per_atom_ev <= result.initial_energy_per_atom_ev + 1e-6
    relaxed = result.relaxed
    assert space_group_number(relaxed) == 225
    assert relaxed.info["properties"]["relax_spacegroup_after"] == 225


def test_missing_chgnet_is_one_clear_error(monkeypatch):
    import builtins

    from nesf.relax.potential import RelaxError, require_chgnet

    real = builtins.__import__

    def no_chgnet(name, *args, **kwargs):
        if name == "chgnet" or name.startswith("chgnet."):
            raise ImportError("no chgnet")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_chgnet)
    with pytest.raises(RelaxError, match=r"nesf relax needs the relax extra: pip install 'nesf\[relax\]'"):
        require_chgnet()


def test_relax_command_writes_relaxed_crystals_and_table(tmp_path, capsys):
    chgnet_or_skip()

    import torch

    from nesf.cli import main
    from nesf.data.readers import read_crystals
    from nesf.io.writers import write_extxyz

    threads = torch.get_num_threads()
    src = write_extxyz(tmp_path / "in.extxyz", [perturbed(rocksalt(), 0.1, seed=1)])
    out = tmp_path / "out"
    try:
        assert main(["relax", str(src), "--out", str(out), "--fmax", "0.02", "--threads", "1", "--quiet"]) == 0
        assert "relaxed 1 of 1 crystals (0 failed)" in capsys.readouterr().out
        table = json.loads((out / "relax.json").read_text())
        row = table["crystals"][0]
        assert row["spacegroup_after"] == 225 and row["rmsd_a"] < 0.15 and row["error"] is None
        assert table["summary"]["rmsd_units"] == "Angstrom" and table["settings"]["fmax"] == 0.02
        assert (out / "relax.csv").read_text().startswith("id,formula,n_atoms,energy_per_atom_ev")
        (relaxed,) = read_crystals(out / "all.extxyz")
        assert space_group_number(relaxed) == 225
        assert relaxed.info["properties"]["relax_rmsd_a"] == pytest.approx(row["rmsd_a"])
        assert sorted(p.name for p in out.glob("*.cif")) == ["NaCl-perturbed.cif"]
        # the relaxed file carries its fields: generation-metrics --relaxed does not relax it again
        m_json = tmp_path / "m.json"
        args = [str(out / "all.extxyz"), str(out / "all.extxyz"), "--relaxed", "--json", str(m_json), "--quiet"]
        assert main(["generation-metrics", *args, "--jobs", "1"]) == 0
        m = json.loads(m_json.read_text())
        assert m["n_relaxed_now"] == 0 and m["rmsd_to_relaxed_mean_a"] == pytest.approx(row["rmsd_a"])
        assert m["unique_pct"] == 100.0 and "mean RMSD to relaxed [A]" in capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)


def test_relax_command_without_chgnet(monkeypatch, tmp_path, capsys):
    import nesf.relax.potential as potential
    from nesf.cli import main

    def missing(what: str = "nesf relax") -> None:
        raise potential.RelaxError(f"{what} {potential.MISSING}")

    monkeypatch.setattr(potential, "require_chgnet", missing)
    src = tmp_path / "in.extxyz"
    assert main(["relax", str(src), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == "nesf: error: nesf relax needs the relax extra: pip install 'nesf[relax]'"
    assert not (tmp_path / "out").exists()


def test_sample_relax_reports_unique_novel_and_stable_shares(tmp_path, capsys):
    """`nesf sample --relax --train` puts the shares of the generation checks in summary.json."""
    chgnet_or_skip()

    import torch

    from nesf.cli import main

    threads = torch.get_num_threads()
    common = ["--model", "perov_5", "--n", "2", "--seed", "3", "--grid", "0", "--threads", "1", "--quiet"]
    try:
        assert main(["sample", *common, "--out", str(tmp_path / "plain")]) == 0
        train = tmp_path / "plain" / "all.extxyz"  # the same draws as training crystals: none is novel
        relax = ["--relax", "--relax-steps", "30", "--train", str(train), "--hull-cache", str(tmp_path / "hull")]
        assert main(["sample", *common, "--out", str(tmp_path / "relaxed"), *relax]) == 0
        s = json.loads((tmp_path / "relaxed" / "summary.json").read_text())
        assert s["novel_pct"] == 0.0 and s["sun_pct"] == 0.0 and s["train"] == str(train)
        assert s["unique_pct"] in (50.0, 100.0) and 0.0 <= s["stable_proxy_pct"] <= 100.0
        assert s["rmsd_to_relaxed_mean"] >= 0.0 and "novel 0.0 %" in capsys.readouterr().out
        # --train means nothing without --relax: refused before any sampling
        assert main(["sample", *common, "--out", str(tmp_path / "x"), "--train", str(train)]) != 0
        assert "--train is used with --relax only" in capsys.readouterr().err and not (tmp_path / "x").exists()
    finally:
        torch.set_num_threads(threads)
