"""Readers: extxyz, CIF (file and folder), CDVAE CSV, pymatgen / ASE objects, shared datasets."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import nesf
from nesf import Crystal, read_crystals
from nesf.data.crystal import params_to_lattice
from nesf.errors import CrystalInputError
from nesf.io.writers import write_cif, write_extxyz

EXAMPLES = Path(nesf.__file__).parent / "examples" / "classic_crystals.extxyz"


def _small_crystals() -> list[Crystal]:
    """Three small crystals in pymatgen's standard orientation (so CIF round trips keep the matrices)."""
    rock = Lattice.cubic(5.64).matrix
    rock_frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0, 0, 0.5]])
    hexa = params_to_lattice(np.array([3.25, 3.25, 5.21, np.pi / 2, np.pi / 2, 2 * np.pi / 3]))
    hex_frac = np.array([[1 / 3, 2 / 3, 0.0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]])
    tric = params_to_lattice(np.array([4.1, 5.3, 6.2, np.radians(80.0), np.radians(95.0), np.radians(104.0)]))
    tric_frac = np.array([[0.1, 0.2, 0.3], [0.6, 0.7, 0.15], [0.35, 0.9, 0.8]])
    return [
        Crystal(rock, rock_frac @ rock, [11, 17, 11, 17], id="mp-22862"),
        Crystal(hexa, hex_frac @ hexa, [30, 30, 8, 8], id="mp-2133"),
        Crystal(tric, tric_frac @ tric, [8, 14, 26], id="tric-1"),
    ]


def _assert_same(a: Crystal, b: Crystal, atol: float = 1e-5) -> None:
    """Same cell parameters and the same atoms (species, fractional position modulo 1), in any order.

    CIF writers group atoms by species, so the atom order is not kept through a CIF.
    """
    np.testing.assert_allclose(a.lattice_params, b.lattice_params, atol=atol)
    assert a.n_atoms == b.n_atoms
    d = a.frac[:, None, :] - b.frac[None, :, :]
    dist = np.abs(d - np.round(d)).max(axis=-1)  # [Na, Nb]
    same = (dist < atol) & (a.numbers[:, None] == b.numbers[None, :])
    assert same.any(axis=1).all() and same.any(axis=0).all(), "atoms differ"


def _assert_identical(a: Crystal, b: Crystal, atol: float = 1e-8) -> None:
    np.testing.assert_allclose(a.lattice, b.lattice, atol=atol)
    np.testing.assert_allclose(a.cart, b.cart, atol=atol)
    np.testing.assert_array_equal(a.numbers, b.numbers)
    assert a.id == b.id


# ---------------------------------------------------------------------------- extxyz
def test_extxyz_round_trip(tmp_path):
    crystals = _small_crystals()
    path = write_extxyz(tmp_path / "set.extxyz", crystals)
    back = read_crystals(path)
    assert len(back) == len(crystals)
    for a, b in zip(crystals, back):
        _assert_identical(a, b)


def test_extxyz_round_trip_classic_cells(tmp_path):
    """Hexagonal, rhombohedral, monoclinic, triclinic and skewed cells survive exactly."""
    classic = read_crystals(EXAMPLES)
    assert len(classic) > 20
    back = read_crystals(write_extxyz(tmp_path / "classic.extxyz", classic))
    assert [c.id for c in back] == [c.id for c in classic]
    for a, b in zip(classic, back):
        _assert_identical(a, b)


def test_the_shipped_example_set_is_the_one_the_builder_makes():
    """``classic_crystals()`` writes ``examples/classic_crystals.extxyz`` (the tests read the file)."""
    from nesf.data.examples import classic_crystals

    shipped, built = read_crystals(EXAMPLES), classic_crystals()
    assert [c.id for c in shipped] == [c.id for c in built]
    for a, b in zip(shipped, built):
        assert np.array_equal(a.numbers, b.numbers), a.id
        assert np.abs(a.lattice - b.lattice).max() < 1e-8, a.id
        # the same sites; pymatgen versions differ in whether a supercell's site sits at 0 or 1
        shift = a.frac - b.frac
        assert np.abs((shift - np.round(shift)) @ a.lattice).max() < 1e-7, a.id


def test_extxyz_xyz_suffix_and_missing_ids(tmp_path):
    crystals = [Crystal(c.lattice, c.cart, c.numbers) for c in _small_crystals()]  # no ids
    back = read_crystals(write_extxyz(tmp_path / "noid.xyz", crystals))
    assert [c.id for c in back] == ["noid-0", "noid-1", "noid-2"]


def test_extxyz_round_trip_keeps_numeric_looking_ids(tmp_path):
    """ASE alone reads ``material_id=007`` back as the number 7 and ``T`` as True; ids stay as written."""
    base = _small_crystals()[0]
    ids = ["007", "T", "1e3", "mp-1 (relaxed)", "-12"]
    crystals = [Crystal(base.lattice, base.cart, base.numbers, id=i) for i in ids]
    back = read_crystals(write_extxyz(tmp_path / "ids.extxyz", crystals))
    assert [c.id for c in back] == ids


# ---------------------------------------------------------------------------- CIF
def test_single_cif_file(tmp_path):
    crystal = _small_crystals()[2]
    path = write_cif(tmp_path / "my-crystal.cif", crystal)
    back = read_crystals(path)
    assert len(back) == 1
    assert back[0].id == "my-crystal"
    _assert_same(crystal, back[0])
    # pymatgen's orientation is kept, so the matrices agree too
    np.testing.assert_allclose(back[0].lattice, crystal.lattice, atol=1e-5)


def test_cif_folder(tmp_path):
    crystals = _small_crystals()
    folder = tmp_path / "cifs"
    for c in crystals:
        write_cif(folder / f"{c.id}.cif", c)
    (folder / "notes.txt").write_text("not a CIF, ignored")
    back = read_crystals(folder)
    by_id = {c.id: c for c in back}
    assert [c.id for c in back] == sorted(c.id for c in crystals)  # sorted file-name order
    for c in crystals:
        _assert_same(c, by_id[c.id])


def test_cif_uppercase_suffix(tmp_path):
    crystal = _small_crystals()[0]
    path = tmp_path / "ROCK.CIF"
    path.write_text(str(CifWriter(crystal.to_pymatgen())))
    (back,) = read_crystals(path)
    assert back.id == "ROCK"
    _assert_same(crystal, back)


def test_cdvae_csv(tmp_path):
    crystals = _small_crystals()
    path = tmp_path / "val.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", "material_id", "cif", "formation_energy_per_atom"])
        for i, c in enumerate(crystals):
            writer.writerow([i, c.id, str(CifWriter(c.to_pymatgen())), -1.0])
    back = read_crystals(path)
    assert [c.id for c in back] == [c.id for c in crystals]
    for a, b in zip(crystals, back):
        _assert_same(a, b)


def test_csv_without_material_id_uses_stem_and_row(tmp_path):
    crystals = _small_crystals()[:2]
    path = tmp_path / "data.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["cif"])
        writer.writeheader()
        for c in crystals:
            writer.writerow({"cif": str(CifWriter(c.to_pymatgen()))})
    assert [c.id for c in read_crystals(path)] == ["data-0", "data-1"]


def test_csv_bad_row_is_named(tmp_path):
    good = str(CifWriter(_small_crystals()[0].to_pymatgen()))
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["material_id", "cif"])
        writer.writerow(["ok", good])
        writer.writerow(["broken", "definitely not a CIF"])
    with pytest.raises(CrystalInputError) as info:
        read_crystals(path)
    assert "rows.csv" in str(info.value)
    assert info.value.location == "row 2"


# ---------------------------------------------------------------------------- objects
def test_list_of_pymatgen_structures():
    crystals = _small_crystals()
    structures = [c.to_pymatgen() for c in crystals]
    structures[0].properties["material_id"] = "mp-22862"
    back = read_crystals(structures)
    assert [c.id for c in back] == ["mp-22862", "structure-1", "structure-2"]
    for a, b in zip(crystals, back):
        np.testing.assert_allclose(b.lattice, a.lattice, atol=1e-10)
        np.testing.assert_allclose(b.cart, a.cart, atol=1e-10)
        np.testing.assert_array_equal(b.numbers, a.numbers)


def test_list_of_ase_atoms():
    crystals = _small_crystals()
    atoms = [c.to_ase() for c in crystals]
    del atoms[2].info["material_id"]
    back = read_crystals(atoms)
    assert [c.id for c in back] == ["mp-22862", "mp-2133", "structure-2"]
    for a, b in zip(crystals, back):
        np.testing.assert_allclose(b.lattice, a.lattice, atol=1e-12)
        np.testing.assert_allclose(b.cart, a.cart, atol=1e-12)
        np.testing.assert_array_equal(b.numbers, a.numbers)


def test_single_structure_and_single_atoms():
    crystal = _small_crystals()[1]
    (from_structure,) = read_crystals(crystal.to_pymatgen())
    (from_atoms,) = read_crystals(crystal.to_ase())
    for back in (from_structure, from_atoms):
        np.testing.assert_allclose(back.cart, crystal.cart, atol=1e-10)
        np.testing.assert_array_equal(back.numbers, crystal.numbers)
    assert from_structure.id == "structure-0"
    assert from_atoms.id == "mp-2133"


def test_mixed_objects_and_conventional_option():
    a = 3.615
    fcc = Crystal(np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), [[0, 0, 0]], [29], id="Cu")
    back = read_crystals([fcc, fcc.to_pymatgen(), fcc.to_ase()], conventional=True)
    assert [c.n_atoms for c in back] == [4, 4, 4]
    assert back[0].id == "Cu"


def test_objects_errors():
    with pytest.raises(CrystalInputError, match="no structures"):
        read_crystals([])
    with pytest.raises(CrystalInputError, match="dict"):
        read_crystals([{"lattice": np.eye(3)}])
    flat = Atoms("Cu", positions=[[0, 0, 0]], cell=[[3, 0, 0], [3, 0, 0], [0, 0, 3]], pbc=True)
    with pytest.raises(CrystalInputError, match="volume") as info:
        read_crystals([flat])
    assert info.value.location == "item 0"


def test_disordered_structure_refused():
    s = Structure(Lattice.cubic(3.0), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    with pytest.raises(CrystalInputError, match="partial occupanc"):
        read_crystals([s])


# ---------------------------------------------------------------------------- shared datasets
_MP_ID = re.compile(r"^(mp|mvc)-\d+$")


def test_shared_icsg3d_test(shared_data):
    crystals = read_crystals(shared_data / "nesf_paper" / "icsg3d" / "test.extxyz")
    assert len(crystals) == 360
    assert crystals[0].id.startswith("mp-")
    assert sum(c.id.startswith("mp-") for c in crystals) >= 350
    assert all(_MP_ID.match(c.id) for c in crystals)  # Materials Project ids (a few are "mvc-")
    assert len({c.id for c in crystals}) == 360
    assert all(c.n_atoms <= 40 for c in crystals)


@pytest.mark.slow
def test_shared_perov5_val(shared_data):
    path = shared_data / "cdvae" / "perov_5" / "val.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        crystals = read_crystals(path)
    assert len(crystals) == 3787
    assert all(c.n_atoms == 5 for c in crystals)
    csv.field_size_limit(1 << 28)
    with open(path, newline="") as fh:
        ids = [row["material_id"] for row in csv.DictReader(fh)]
    assert [c.id for c in crystals] == ids
