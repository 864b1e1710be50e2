"""Crystal: conversions, conventional cells, wrapping, validation, lattice parameters."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from pymatgen.core import Lattice, Structure

from nesf import Crystal
from nesf.data.crystal import lattice_to_params, params_to_lattice
from nesf.errors import CrystalInputError

A_CU = 3.615


def _fcc_cu_primitive() -> Crystal:
    h = A_CU / 2
    return Crystal(np.array([[0, h, h], [h, 0, h], [h, h, 0]]), [[0.0, 0.0, 0.0]], [29], id="Cu-prim")


def _triclinic() -> Crystal:
    lat = Lattice.from_parameters(4.1, 5.3, 6.2, 80.0, 95.0, 104.0).matrix
    frac = np.array([[0.1, 0.2, 0.3], [0.6, 0.7, 0.15], [0.35, 0.9, 0.8], [-0.25, 1.5, 2.0]])
    return Crystal(lat, frac @ lat, [8, 14, 26, 8], id="tric", info={"note": "x"})


def test_post_init_coerces_types():
    c = Crystal([[3, 0, 0], [0, 3, 0], [0, 0, 3]], [0, 0, 0], [29.0])
    assert c.lattice.shape == (3, 3) and c.lattice.dtype == np.float64
    assert c.cart.shape == (1, 3) and c.cart.dtype == np.float64
    assert c.numbers.shape == (1,) and c.numbers.dtype == np.int64
    assert c.n_atoms == 1
    assert c.symbols == ["Cu"]
    assert c.volume == pytest.approx(27.0)


def test_frac_and_formula():
    c = _triclinic()
    np.testing.assert_allclose(c.frac @ c.lattice, c.cart, atol=1e-12)
    np.testing.assert_allclose(c.frac[3], [-0.25, 1.5, 2.0], atol=1e-12)
    assert c.formula == "FeSiO2" == c.to_pymatgen().composition.reduced_formula


def test_pymatgen_round_trip():
    c = _triclinic()
    s = c.to_pymatgen()
    assert isinstance(s, Structure)
    np.testing.assert_allclose(s.lattice.matrix, c.lattice)
    np.testing.assert_allclose(s.cart_coords, c.cart, atol=1e-12)  # not wrapped
    back = Crystal.from_pymatgen(s, id="tric")
    np.testing.assert_allclose(back.lattice, c.lattice)
    np.testing.assert_allclose(back.cart, c.cart, atol=1e-12)
    np.testing.assert_array_equal(back.numbers, c.numbers)
    assert back.id == "tric"


def test_from_pymatgen_refuses_disorder():
    s = Structure(Lattice.cubic(3.0), [{"Cu": 0.5}], [[0, 0, 0]])
    with pytest.raises(CrystalInputError, match="partial occupanc"):
        Crystal.from_pymatgen(s, id="half")


def test_ase_round_trip():
    c = _triclinic()
    atoms = c.to_ase()
    assert isinstance(atoms, Atoms)
    assert atoms.pbc.all()
    assert atoms.info["material_id"] == "tric"
    np.testing.assert_allclose(atoms.cell[:], c.lattice)
    np.testing.assert_allclose(atoms.get_positions(), c.cart)
    back = Crystal.from_ase(atoms)
    assert back.id == "tric"  # taken from info when not given
    np.testing.assert_allclose(back.lattice, c.lattice)
    np.testing.assert_allclose(back.cart, c.cart)
    np.testing.assert_array_equal(back.numbers, c.numbers)
    assert Crystal.from_ase(atoms, id="other").id == "other"
    assert "material_id" not in Crystal(c.lattice, c.cart, c.numbers).to_ase().info


def test_to_conventional_fcc_cu():
    prim = _fcc_cu_primitive()
    assert prim.volume == pytest.approx(A_CU**3 / 4)
    conv = prim.to_conventional()
    assert conv.n_atoms == 4
    assert conv.id == "Cu-prim"
    assert np.all(conv.numbers == 29)
    np.testing.assert_allclose(conv.lattice_params[:3], A_CU, atol=1e-6)
    np.testing.assert_allclose(conv.lattice_params[3:], np.pi / 2, atol=1e-8)
    assert conv.volume == pytest.approx(A_CU**3)


def test_wrapped():
    c = _triclinic()
    c.cart[0] = -1e-17 * c.lattice[0]  # a tiny negative coordinate must not wrap to 1.0
    w = c.wrapped()
    assert np.all(w.frac >= 0.0) and np.all(w.frac < 1.0)
    d = w.frac - c.frac
    np.testing.assert_allclose(d - np.round(d), 0.0, atol=1e-10)
    np.testing.assert_allclose(w.frac[3], [0.75, 0.5, 0.0], atol=1e-10)
    assert w.id == c.id and w.info == c.info
    np.testing.assert_array_equal(w.numbers, c.numbers)
    assert w is not c and w.info is not c.info
    np.testing.assert_allclose(c.frac[3], [-0.25, 1.5, 2.0], atol=1e-12)  # original untouched


@pytest.mark.parametrize(
    "params_deg",
    [
        (3.0, 3.0, 3.0, 90, 90, 90),
        (3.25, 3.25, 5.21, 90, 90, 120),
        (4.1, 5.3, 6.2, 80, 95, 104),
        (2.5, 2.5, 2.5, 60, 60, 60),
        (3.5, 5.0, 18.0, 62, 118, 67),
    ],
)
def test_lattice_params_round_trip(params_deg):
    params = np.array(params_deg, dtype=float)
    params[3:] = np.radians(params[3:])
    lattice = params_to_lattice(params)
    assert lattice.shape == (3, 3)
    np.testing.assert_allclose(lattice_to_params(lattice), params, atol=1e-10)
    np.testing.assert_allclose(params_to_lattice(lattice_to_params(lattice)), lattice, atol=1e-10)
    # pymatgen's orientation
    ref = Lattice.from_parameters(*params_deg).matrix
    np.testing.assert_allclose(lattice, ref, atol=1e-10)


def test_lattice_params_batched():
    rng = np.random.default_rng(0)
    params = np.concatenate([rng.uniform(3, 6, (2, 4, 3)), np.radians(rng.uniform(80, 100, (2, 4, 3)))], axis=-1)
    lattices = params_to_lattice(params)
    assert lattices.shape == (2, 4, 3, 3)
    np.testing.assert_allclose(lattice_to_params(lattices), params, atol=1e-10)
    np.testing.assert_allclose(lattice_to_params(lattices[1, 2]), params[1, 2], atol=1e-10)


def test_params_to_lattice_invalid_angles():
    params = np.array([3.0, 3.0, 3.0, np.radians(10), np.radians(10), np.radians(170)])
    with pytest.raises(ValueError):
        params_to_lattice(params)


def test_validate():
    good = _triclinic()
    assert good.validate() is good
    cases = [
        (Crystal(np.eye(3) * 3, np.zeros((0, 3)), [], id="empty"), "no atoms"),
        (Crystal(np.eye(3) * np.nan, [[0, 0, 0]], [29], id="nanlat"), "NaN"),
        (Crystal(np.eye(3) * 3, [[np.inf, 0, 0]], [29], id="infpos"), "NaN or infinite"),
        (Crystal([[3, 0, 0], [3, 0, 0], [0, 0, 3]], [[0, 0, 0]], [29], id="flat"), "zero volume"),
        (Crystal(np.eye(3) * 3, [[0, 0, 0]], [0], id="z0"), "atomic numbers"),
        (Crystal(np.eye(3) * 3, [[0, 0, 0]], [119], id="z119"), "atomic numbers"),
    ]
    for crystal, reason in cases:
        with pytest.raises(CrystalInputError, match=reason) as info:
            crystal.validate("src.extxyz")
        msg = str(info.value)
        assert msg.startswith("src.extxyz, crystal ")
        assert repr(crystal.id) in msg
    with pytest.raises(CrystalInputError) as info:
        cases[0][0].validate("f.cif", "row 7")
    assert str(info.value) == "f.cif, row 7: the crystal has no atoms"


def test_nearest_neighbours_pairwise_and_tree_agree(monkeypatch):
    """Small crystals take all pairwise distances, large ones a k-d tree: the same neighbours either way."""
    import nesf.data.crystal as crystal_module
    from nesf.data.crystal import nearest_neighbours

    rng = np.random.default_rng(0)
    lat = Lattice.from_parameters(5.1, 6.3, 7.2, 70.0, 100.0, 115.0).matrix  # skewed: images matter
    cases = [_fcc_cu_primitive(), _triclinic(), Crystal(lat, rng.random((40, 3)) @ lat, rng.integers(1, 30, 40))]
    for c in cases:
        pairwise = nearest_neighbours(c)
        monkeypatch.setattr(crystal_module, "_PAIRWISE_MAX_ATOMS", 0)
        tree = nearest_neighbours(c)
        monkeypatch.undo()
        np.testing.assert_allclose(pairwise[0], tree[0], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(pairwise[1], tree[1])
    cu = nearest_neighbours(_fcc_cu_primitive())  # one atom: its nearest image, a / sqrt(2)
    assert cu[0][0] == pytest.approx(A_CU / np.sqrt(2)) and cu[1][0] == 0
