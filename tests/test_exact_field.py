"""ExactField against brute force, in float64, in both frames."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice
from scipy.spatial.distance import cdist

import nesf.fields.exact as exact_mod
from nesf.data.batch import CrystalBatch
from nesf.data.crystal import Crystal
from nesf.data.vocab import SpeciesVocab
from nesf.fields.exact import ExactField

SHIFTS4 = np.array(list(itertools.product(range(-4, 5), repeat=3)), dtype=np.float64)  # [729, 3]
ELEMENTS = np.array([1, 6, 8, 14, 26, 56, 79])


def random_crystal(rng, n_atoms, skewed=False, offset=0.0, cid="rand"):
    """Random P1 crystal (atoms at least 1 A apart); ``offset`` shifts atoms away from the origin."""
    while True:
        if skewed:
            params = (
                *rng.permutation([rng.uniform(2.5, 4), rng.uniform(5, 8), rng.uniform(15, 22)]),
                *rng.uniform(35, 145, size=3),
            )
        else:
            params = (*rng.uniform(3, 8, size=3), *rng.uniform(60, 120, size=3))
        lat = Lattice.from_parameters(*params)
        if np.allclose(lat.angles, params[3:], atol=1e-6) and lat.volume / np.prod(params[:3]) > 0.1:
            break
    frac = []
    while len(frac) < n_atoms:
        f = rng.random(3)
        if not frac or lat.get_all_distances(np.array(frac), f[None]).min() > 1.0:
            frac.append(f)
    cart = np.array(frac) @ lat.matrix + offset
    return Crystal(lat.matrix.copy(), cart, rng.choice(ELEMENTS, size=n_atoms), id=cid)


def batch64(crystals):
    return CrystalBatch.from_crystals(crystals, dtype=torch.float64)


def brute_periodic(crystal: Crystal, points: np.ndarray, lattice: np.ndarray | None = None):
    """Nearest distance over all images in [-4, 4]^3 (points and atoms wrapped first).

    ``lattice``: another basis of the same lattice to search in (default: the crystal's own).
    """
    lat = crystal.lattice if lattice is None else lattice
    inv = np.linalg.inv(lat)
    q = (points @ inv) % 1.0 @ lat  # [Q, 3]
    atoms = (crystal.cart @ inv) % 1.0 @ lat  # [N, 3]
    images = (atoms[None, :, :] + (SHIFTS4 @ lat)[:, None, :]).reshape(-1, 3)  # [K * N, 3]
    dist = cdist(q, images).min(axis=1)
    # the search range is provably enough: an image beyond it is farther than `dist`
    heights = abs(np.linalg.det(lat)) / np.linalg.norm(np.cross(lat[[1, 2, 0]], lat[[2, 0, 1]]), axis=-1)
    assert np.all(dist.max() / heights + 1 <= 4), "brute-force range [-4, 4]^3 too small for this cell"
    return dist


def query_points(rng, crystals, q, far=True):
    """``[B, Q, 3]`` random points: inside/around the cell and (optionally) far outside it."""
    out = []
    for c in crystals:
        frac = rng.uniform(-0.3, 1.3, size=(q, 3))
        if far:
            frac[: q // 3] = rng.uniform(-40, 40, size=(q // 3, 3))
        out.append(frac @ c.lattice)
    return torch.as_tensor(np.stack(out))


# ---------------------------------------------------------------------- paper frame


def test_paper_frame_is_nearest_own_atom_with_padding():
    rng = np.random.default_rng(0)
    # different sizes; atoms moved away from the origin, where padding entries sit (zeros)
    crystals = [random_crystal(rng, n, offset=7.0, cid=f"c{n}") for n in (1, 3, 9, 17, 2)]
    batch = batch64(crystals)
    assert batch.cart.shape[1] == 17 and not bool(batch.mask.all())
    field = ExactField(batch, "paper")
    pts = query_points(rng, crystals, 300)
    pts[:, :5] = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0, 0], [0, -0.1, 0.05], [-1, -1, -1], [0.3, 0.3, 0.3]])
    disp, idx = field.nearest(pts)
    labels = field.species_labels(pts)
    for i, c in enumerate(crystals):
        p = pts[i].numpy()
        d = np.linalg.norm(p[:, None, :] - c.cart[None], axis=-1)
        j = d.argmin(axis=1)
        np.testing.assert_allclose(disp[i].numpy(), c.cart[j] - p, atol=1e-9, rtol=0)
        np.testing.assert_array_equal(idx[i].numpy(), j)
        np.testing.assert_array_equal(batch.vocab.decode(labels[i].numpy()), c.numbers[j])
        assert int(idx[i].max()) < c.n_atoms  # padding never selected


def test_paper_frame_position_species_and_call_agree():
    rng = np.random.default_rng(1)
    crystals = [random_crystal(rng, n) for n in (4, 7)]
    field = ExactField(batch64(crystals), "paper")
    pts = query_points(rng, crystals, 50)
    disp, onehot = field(pts)
    torch.testing.assert_close(disp, field.position(pts))
    torch.testing.assert_close(onehot, field.species(pts))
    assert onehot.shape == (2, 50, field.n_species)
    torch.testing.assert_close(onehot.argmax(-1), field.species_labels(pts))
    assert field.geometry is None and field.dtype == torch.float64


# ---------------------------------------------------------------------- periodic frame


def check_periodic(crystals, rng, q=240, reference=None):
    batch = batch64(crystals)
    field = ExactField(batch, "periodic")
    pts = query_points(rng, crystals, q)
    disp, idx = field.nearest(pts)
    labels = field.species_labels(pts)
    for i, c in enumerate(crystals):
        dist = brute_periodic(c, pts[i].numpy(), None if reference is None else reference[i])
        got = np.linalg.norm(disp[i].numpy(), axis=-1)
        np.testing.assert_allclose(got, dist, rtol=0, atol=1e-8, err_msg=c.id)
        k = idx[i].numpy()
        assert k.max() < c.n_atoms
        # point + displacement is (modulo the lattice) the atom that idx names
        n = (pts[i].numpy() + disp[i].numpy() - c.cart[k]) @ np.linalg.inv(c.lattice)
        np.testing.assert_allclose(n, np.round(n), rtol=0, atol=1e-8, err_msg=c.id)
        np.testing.assert_array_equal(batch.vocab.decode(labels[i].numpy()), c.numbers[k], err_msg=c.id)


def test_periodic_frame_on_classic_crystals(classic):
    rng = np.random.default_rng(2)
    check_periodic(classic, rng)


def test_periodic_frame_on_classic_crystals_unwrapped_atoms(classic):
    """Atoms given anywhere (not in the cell) give the same field."""
    rng = np.random.default_rng(3)
    moved = []
    for c in classic[:10]:
        n = rng.integers(-3, 4, size=(c.n_atoms, 3))
        moved.append(Crystal(c.lattice, c.cart + n @ c.lattice, c.numbers, c.id))
    check_periodic(moved, rng, q=120)


def test_periodic_frame_on_random_skewed_cells():
    rng = np.random.default_rng(4)
    crystals = [
        random_crystal(rng, int(n), skewed=True, cid=f"skewed-{k}") for k, n in enumerate(rng.integers(1, 25, 12))
    ]
    check_periodic(crystals, rng)


def test_periodic_frame_on_non_reduced_basis():
    """The cell given by a very non-reduced basis of the same lattice: same field."""
    rng = np.random.default_rng(5)
    base = random_crystal(rng, 6)
    u = np.array([[1, 0, 0], [5, 1, 0], [3, 7, 1]], dtype=np.float64)
    skew = Crystal(u @ base.lattice, base.cart, base.numbers, "non-reduced")
    check_periodic([skew, base], rng, q=200, reference=[base.lattice, base.lattice])
    pts = query_points(rng, [base], 100).expand(2, -1, -1)
    f = ExactField(batch64([skew, base]), "periodic")
    a = torch.linalg.norm(f.position(pts), dim=-1)
    torch.testing.assert_close(a[0], a[1], atol=1e-9, rtol=0)


def test_periodic_frame_small_chunks_give_same_result(monkeypatch, classic):
    """The chunked nearest-atom search gives the same result whatever the chunk size."""
    rng = np.random.default_rng(6)
    crystals = classic[:8]
    pts = query_points(rng, crystals, 150)
    full = ExactField(batch64(crystals), "periodic").nearest(pts)
    monkeypatch.setattr(exact_mod, "_CHUNK_ELEMENTS", 1000)
    small = ExactField(batch64(crystals), "periodic").nearest(pts)
    torch.testing.assert_close(full[0], small[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(full[1], small[1])


def test_periodic_frame_with_shared_vocab_and_padding(classic):
    """A vocabulary larger than the batch's elements and padded atoms do not change labels."""
    rng = np.random.default_rng(7)
    crystals = [classic[0], classic[9], classic[17]]  # 2, 60 and 1 atoms
    vocab = SpeciesVocab(tuple(range(1, 90)))
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    field = ExactField(batch, "periodic")
    assert field.n_species == 89
    pts = query_points(rng, crystals, 120)
    _, idx = field.nearest(pts)
    labels = field.species_labels(pts)
    for i, c in enumerate(crystals):
        assert int(idx[i].max()) < c.n_atoms
        np.testing.assert_array_equal(vocab.decode(labels[i].numpy()), c.numbers[idx[i].numpy()])


# ---------------------------------------------------------------------- invariance


@pytest.mark.parametrize("which", ["classic", "skewed"])
def test_periodic_field_invariant_under_lattice_translations(which, classic):
    rng = np.random.default_rng(8)
    if which == "classic":
        crystals = classic
    else:
        crystals = [random_crystal(rng, 8, skewed=True) for _ in range(8)]
    field = ExactField(batch64(crystals), "periodic")
    pts = query_points(rng, crystals, 60, far=False)
    lat = torch.as_tensor(np.stack([c.lattice for c in crystals]))
    base_pos = field.position(pts)
    base_lab = field.species_labels(pts)
    for _ in range(3):
        n = torch.as_tensor(rng.integers(-20, 21, size=pts.shape), dtype=torch.float64)
        shifted = pts + torch.bmm(n, lat)
        torch.testing.assert_close(field.position(shifted), base_pos, atol=1e-6, rtol=0)
        torch.testing.assert_close(field.species_labels(shifted), base_lab)


def test_atoms_are_fixed_points_of_both_frames(classic):
    """At an atom the displacement is zero and the species is the atom's own."""
    crystals = classic[:12]
    batch = batch64(crystals)
    for frame in ("paper", "periodic"):
        field = ExactField(batch, frame)
        disp, idx = field.nearest(batch.cart)
        d = torch.linalg.norm(disp, dim=-1)[batch.mask]
        assert float(d.max()) < 1e-9, frame
        expect = torch.arange(batch.cart.shape[1]).expand_as(idx)
        assert bool((idx == expect)[batch.mask].all()), frame
