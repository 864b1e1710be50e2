"""PeriodicGeometry against brute force: minimum image and wrapping for any cell."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase.geometry import minkowski_reduce
from pymatgen.core import Lattice

from nesf.fields.geometry import PeriodicGeometry

SHIFTS6 = np.array(list(itertools.product(range(-6, 7), repeat=3)), dtype=np.float64)  # [2197, 3]


def _valid_cell(a, b, c, al, be, ga, min_flatness=0.02):
    """A pymatgen cell for these parameters, or None when no real cell has them (or nearly flat)."""
    lat = Lattice.from_parameters(a, b, c, al, be, ga)
    if not np.allclose(lat.angles, (al, be, ga), atol=1e-6) or not np.allclose(lat.abc, (a, b, c), atol=1e-9):
        return None  # from_parameters clips impossible angle triples
    if lat.volume / (a * b * c) < min_flatness:
        return None
    return lat.matrix.copy()


def random_triclinic(rng, n, lengths=(2.0, 25.0), angles=(30.0, 150.0)):
    out = []
    while len(out) < n:
        m = _valid_cell(*rng.uniform(*lengths, size=3), *rng.uniform(*angles, size=3))
        if m is not None:
            out.append(m)
    return out


def random_hexagonal(rng, n):
    return [Lattice.hexagonal(rng.uniform(2, 8), rng.uniform(2, 25)).matrix.copy() for _ in range(n)]


def random_rhombohedral(rng, n):
    out = []
    while len(out) < n:
        alpha = rng.choice([rng.uniform(40, 60), rng.uniform(95, 115)])
        m = _valid_cell(*([rng.uniform(2, 12)] * 3), alpha, alpha, alpha)
        if m is not None:
            out.append(m)
    return out


#: unimodular integer matrices: same lattice, very different (non-reduced) bases
UNIMODULAR = [
    np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1]]),  # rows a, a+b, a+b+c
    np.array([[1, 0, 0], [5, 1, 0], [3, 7, 1]]),
    np.array([[1, 4, 0], [0, 1, 0], [2, -3, 1]]),
    np.array([[2, 3, 0], [1, 2, 0], [0, 5, 1]]),  # det 1, mixes a and b strongly
]


def non_reduced_cells(rng):
    """(non-reduced basis, a well-shaped basis of the same lattice) pairs."""
    out = []
    nice = [np.eye(3) * rng.uniform(2.5, 6), Lattice.hexagonal(3.2, 5.2).matrix] + random_triclinic(
        rng, 3, lengths=(3, 8), angles=(70, 110)
    )
    for base in nice:
        for u in UNIMODULAR:
            assert round(abs(np.linalg.det(u))) == 1
            out.append((u.astype(np.float64) @ base, base))
    return out


def brute_min_image(delta: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Shortest vector among ``delta`` + all shifts n @ basis, n in [-6, 6]^3, after rounding in ``basis``."""
    frac = delta @ np.linalg.inv(basis)
    base = (frac - np.round(frac)) @ basis  # [M, 3]
    cand = base[:, None, :] + (SHIFTS6 @ basis)[None, :, :]  # [M, K, 3]
    k = np.argmin((cand**2).sum(-1), axis=1)
    return cand[np.arange(len(delta)), k]


def reference_lengths(delta: np.ndarray, basis: np.ndarray, nice: np.ndarray | None = None) -> np.ndarray:
    """Brute-force minimum-image lengths, searched in the given basis, a well-shaped basis and a
    Minkowski-reduced basis (ase, independent of pymatgen's LLL); the minimum of all three."""
    bases = [basis, minkowski_reduce(basis)[0]] + ([nice] if nice is not None else [])
    return np.min([np.linalg.norm(brute_min_image(delta, b), axis=-1) for b in bases], axis=0)


def random_deltas(rng, lattice, m):
    """Difference vectors: small, of cell size, and many cells long, some near lattice vectors."""
    frac = np.concatenate(
        [
            rng.uniform(-0.6, 0.6, size=(m // 4, 3)),
            rng.uniform(-1.5, 1.5, size=(m // 4, 3)),
            rng.uniform(-8, 8, size=(m // 4, 3)),
            rng.integers(-3, 4, size=(m - 3 * (m // 4), 3)) + rng.normal(scale=1e-3, size=(m - 3 * (m // 4), 3)),
        ]
    )
    cart = frac @ lattice
    cart[: m // 8] = rng.normal(scale=1.0, size=(m // 8, 3))  # arbitrary short Cartesian vectors
    return cart


def check_min_image(lattices, nice=None, m=160, seed=0):
    rng = np.random.default_rng(seed)
    lattices = np.stack(lattices)
    deltas = np.stack([random_deltas(rng, lat, m) for lat in lattices])  # [B, M, 3]
    geom = PeriodicGeometry.from_lattices(lattices, dtype=torch.float64)
    got = geom.minimum_image(torch.as_tensor(deltas)).numpy()
    for i, lat in enumerate(lattices):
        ref = reference_lengths(deltas[i], lat, None if nice is None else nice[i])
        np.testing.assert_allclose(np.linalg.norm(got[i], axis=-1), ref, rtol=0, atol=1e-9)
        # the result is an image of the input: it differs by a lattice vector
        n = (deltas[i] - got[i]) @ np.linalg.inv(lat)
        np.testing.assert_allclose(n, np.round(n), rtol=0, atol=1e-7)


def test_min_image_random_triclinic_cells():
    rng = np.random.default_rng(1)
    check_min_image(random_triclinic(rng, 40), seed=11)


def test_min_image_very_skewed_triclinic_cells():
    """Extreme angles (near 30 / 150 degrees) and extreme length ratios."""
    rng = np.random.default_rng(2)
    cells = []
    while len(cells) < 30:
        lengths = rng.permutation([rng.uniform(2, 3), rng.uniform(8, 15), rng.uniform(20, 25)])
        angles = rng.choice([rng.uniform(30, 45), rng.uniform(135, 150), rng.uniform(60, 120)], size=3)
        m = _valid_cell(*lengths, *angles, min_flatness=0.01)
        if m is not None:
            cells.append(m)
    check_min_image(cells, seed=12)


def test_min_image_hexagonal_cells():
    check_min_image(random_hexagonal(np.random.default_rng(3), 20), seed=13)


def test_min_image_rhombohedral_cells():
    check_min_image(random_rhombohedral(np.random.default_rng(4), 20), seed=14)


def test_min_image_non_reduced_bases():
    pairs = non_reduced_cells(np.random.default_rng(5))
    check_min_image([p[0] for p in pairs], nice=[p[1] for p in pairs], seed=15)


def test_min_image_mixed_batch_and_single_cells_agree():
    """A batch of very different cells gives the same answer as each cell alone."""
    rng = np.random.default_rng(6)
    cells = random_triclinic(rng, 3) + random_rhombohedral(rng, 2) + [non_reduced_cells(rng)[1][0]]
    deltas = np.stack([random_deltas(rng, c, 64) for c in cells])
    batch = PeriodicGeometry.from_lattices(np.stack(cells), dtype=torch.float64).minimum_image(torch.as_tensor(deltas))
    for i, c in enumerate(cells):
        alone = PeriodicGeometry.from_lattices(c[None], dtype=torch.float64).minimum_image(
            torch.as_tensor(deltas[i : i + 1])
        )
        np.testing.assert_allclose(
            torch.linalg.norm(batch[i], dim=-1).numpy(), torch.linalg.norm(alone[0], dim=-1).numpy(), atol=1e-9, rtol=0
        )


def test_min_image_of_lattice_vectors_is_zero():
    rng = np.random.default_rng(7)
    cells = random_triclinic(rng, 5) + [p[0] for p in non_reduced_cells(rng)[:4]]
    n = rng.integers(-5, 6, size=(len(cells), 30, 3)).astype(np.float64)
    deltas = np.einsum("bmk,bkx->bmx", n, np.stack(cells))
    got = PeriodicGeometry.from_lattices(np.stack(cells), dtype=torch.float64).minimum_image(torch.as_tensor(deltas))
    assert float(torch.linalg.norm(got, dim=-1).max()) < 1e-9


def test_min_image_accepts_torch_lattices_and_float32():
    rng = np.random.default_rng(8)
    cells = np.stack(random_triclinic(rng, 6))
    deltas = np.stack([random_deltas(rng, c, 40) for c in cells])
    geom = PeriodicGeometry.from_lattices(torch.as_tensor(cells, dtype=torch.float32))
    assert geom.lattice.dtype == torch.float32
    got = geom.minimum_image(torch.as_tensor(deltas, dtype=torch.float32)).double().numpy()
    for i, c in enumerate(cells):
        ref = reference_lengths(deltas[i], c)
        # float32: only near-ties may pick another image, whose length is then almost the same
        np.testing.assert_allclose(np.linalg.norm(got[i], axis=-1), ref, atol=2e-4 * max(1.0, np.abs(deltas[i]).max()))


# ---------------------------------------------------------------------- wrap


def all_test_cells(rng):
    return (
        random_triclinic(rng, 15)
        + random_hexagonal(rng, 4)
        + random_rhombohedral(rng, 4)
        + [p[0] for p in non_reduced_cells(rng)[::3]]
    )


def test_wrap_into_unit_cell_and_preserves_points_modulo_lattice():
    rng = np.random.default_rng(9)
    cells = np.stack(all_test_cells(rng))
    frac_in = np.concatenate(
        [rng.uniform(-20, 20, size=(len(cells), 100, 3)), rng.uniform(0, 1, size=(len(cells), 20, 3))], 1
    )
    cart = np.einsum("bmk,bkx->bmx", frac_in, cells)
    geom = PeriodicGeometry.from_lattices(cells, dtype=torch.float64)
    wrapped = geom.wrap(torch.as_tensor(cart))
    frac = geom.to_frac(wrapped).numpy()
    assert frac.min() >= -1e-12 and frac.max() < 1.0 + 1e-12
    # moved by a whole lattice vector only
    n = np.einsum("bmx,bxk->bmk", cart - wrapped.numpy(), np.linalg.inv(cells))
    np.testing.assert_allclose(n, np.round(n), rtol=0, atol=1e-8)
    # fractional coordinates are those of the input modulo 1
    np.testing.assert_allclose(frac, frac_in - np.floor(frac_in), atol=1e-9)
    # points already inside do not move
    np.testing.assert_allclose(wrapped.numpy()[:, 100:], cart[:, 100:], atol=1e-9)


def test_wrap_is_idempotent():
    rng = np.random.default_rng(10)
    cells = np.stack(all_test_cells(rng))
    cart = np.einsum("bmk,bkx->bmx", rng.uniform(-5, 5, size=(len(cells), 50, 3)), cells)
    geom = PeriodicGeometry.from_lattices(cells, dtype=torch.float64)
    once = geom.wrap(torch.as_tensor(cart))
    np.testing.assert_allclose(geom.wrap(once).numpy(), once.numpy(), atol=1e-9)


def test_wrap_tiny_negative_goes_to_zero_not_one():
    """frac = -1e-18 gives frac - floor(frac) == 1.0 in floating point; it must come out as 0."""
    lat = np.eye(3)[None] * 4.0
    for dtype in (torch.float64, torch.float32):
        geom = PeriodicGeometry.from_lattices(lat, dtype=dtype)
        pts = torch.tensor([[[-1e-18, -1e-18, -1e-18], [-1e-30, 2.0, -1e-20], [4.0, 8.0, -4.0]]], dtype=dtype)
        frac = geom.to_frac(geom.wrap(pts))
        assert bool((frac >= 0).all()) and bool((frac < 1).all())
        np.testing.assert_allclose(frac[0].double().numpy(), [[0, 0, 0], [0, 0.5, 0], [0, 0, 0]], atol=1e-6)


def test_wrap_reduced_stays_in_reduced_cell():
    rng = np.random.default_rng(11)
    cells = np.stack([p[0] for p in non_reduced_cells(rng)])
    geom = PeriodicGeometry.from_lattices(cells, dtype=torch.float64)
    cart = torch.as_tensor(np.einsum("bmk,bkx->bmx", rng.uniform(-10, 10, size=(len(cells), 60, 3)), cells))
    out = geom.wrap_reduced(cart)
    frac_red = torch.bmm(out, geom.reduced_inverse).numpy()
    assert frac_red.min() >= -1e-9 and frac_red.max() <= 1 + 1e-9
    n = np.einsum("bmx,bxk->bmk", (cart - out).numpy(), np.linalg.inv(cells))
    np.testing.assert_allclose(n, np.round(n), atol=1e-7)
    # the reduced basis spans the same lattice (unimodular change of basis)
    u = np.einsum("bij,bjk->bik", geom.reduced.numpy(), np.linalg.inv(cells))
    np.testing.assert_allclose(u, np.round(u), atol=1e-8)
    np.testing.assert_allclose(np.abs(np.linalg.det(np.round(u))), 1.0)


@pytest.mark.parametrize("n_cells", [1, 7])
def test_select_and_to_keep_rows(n_cells):
    rng = np.random.default_rng(12)
    cells = np.stack(random_triclinic(rng, n_cells))
    geom = PeriodicGeometry.from_lattices(cells, dtype=torch.float64)
    idx = torch.tensor([n_cells - 1, 0, n_cells - 1])
    sub = geom.select(idx)
    np.testing.assert_allclose(sub.lattice.numpy(), cells[idx.numpy()])
    assert sub.batch_size == 3
    assert geom.to("cpu").batch_size == n_cells


def test_wrap_flat_matches_wrap():
    rng = np.random.default_rng(13)
    cells = np.stack(all_test_cells(rng))
    geom = PeriodicGeometry.from_lattices(cells, dtype=torch.float64)
    index = torch.as_tensor(rng.integers(0, len(cells), size=300))
    cart = torch.as_tensor(np.einsum("pk,pkx->px", rng.uniform(-6, 6, size=(300, 3)), cells[index.numpy()]))
    flat = geom.wrap_flat(cart, index)
    one_by_one = geom.select(index).wrap(cart.unsqueeze(1)).squeeze(1)
    torch.testing.assert_close(flat, one_by_one, atol=1e-12, rtol=0)


def test_minimum_image_tries_shifts_in_blocks_with_the_result_of_one_at_a_time(monkeypatch):
    import nesf.fields.geometry as geometry

    rng = np.random.default_rng(3)
    lattices = np.stack([np.diag([3.0, 4.0, 5.0]), [[4.0, 0, 0], [3.9, 0.5, 0], [0.2, 0.3, 6.0]]])
    deltas = torch.as_tensor(np.stack([random_deltas(rng, lat, 200) for lat in lattices]))
    geom = PeriodicGeometry.from_lattices(lattices, dtype=torch.float64)
    blocked = geom.minimum_image(deltas)
    for elements in (1, 7 * 3 * deltas.shape[0] * deltas.shape[1]):  # one shift at a time, then blocks of 7
        monkeypatch.setattr(geometry, "MINIMUM_IMAGE_ELEMENTS", elements)
        assert torch.equal(geom.minimum_image(deltas), blocked)


def test_minimum_image_skips_the_search_inside_the_safe_radius_with_the_same_result():
    from dataclasses import replace

    rng = np.random.default_rng(5)
    lattices = np.stack(
        [
            np.diag([3.0, 3.0, 30.0]),
            [[4.0, 0, 0], [3.9, 0.5, 0], [0.2, 0.3, 6.0]],
            [[5, 0, 0], [-2.5, 4.33, 0], [0, 0, 9]],
        ]
    )
    deltas = torch.as_tensor(np.stack([random_deltas(rng, lat, 400) for lat in lattices]))
    geom = PeriodicGeometry.from_lattices(lattices, dtype=torch.float64)
    searched = replace(geom, safe_sq=torch.full_like(geom.safe_sq, -1.0))  # every vector searched
    assert torch.equal(geom.minimum_image(deltas), searched.minimum_image(deltas))
    # the safe radius is half the shortest lattice vector's lower bound: 1.5 A in the long 3 x 3 x 30 cell
    assert float(geom.safe_sq[0]) == pytest.approx(1.5**2, rel=1e-2)
