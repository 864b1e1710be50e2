"""Reconstruction from exact fields: exactness, diagnosis, settings, merging and clustering."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from pymatgen.symmetry.groups import SpaceGroup

from nesf.data.crystal import Crystal
from nesf.fields.frame import get_frame
from nesf.fields.geometry import PeriodicGeometry
from nesf.metrics.paper import paper_metrics
from nesf.reconstruction.cluster import nms_cluster
from nesf.reconstruction.exact import diagnose, reconstruct_exact
from nesf.reconstruction.particles import Particles, merge_particles
from nesf.reconstruction.settings import ReconstructionSettings


def assert_exact(true, pred, frame, tol=1e-3):
    m = paper_metrics(true, pred, frame)
    bad = [t.id for t, p in zip(true, pred) if t.n_atoms != p.n_atoms]
    assert m["atom_count_error_pct"] == 0, f"wrong atom counts: {bad}"
    assert m["position_error_actual"] < tol and m["position_error_detected"] < tol, m
    assert m["species_error_actual_pct"] == 0 and m["species_error_detected_pct"] == 0, m
    assert m["lattice_length_mae"] == 0 and m["lattice_angle_mae_deg"] == 0, m
    for t, p in zip(true, pred):  # per crystal as well, not only pooled
        assert sorted(t.numbers.tolist()) == sorted(p.numbers.tolist()), t.id


# ---------------------------------------------------------------------- exactness


@pytest.mark.parametrize("frame", ["periodic", "paper"])
def test_reconstruct_exact_classic(frame, classic):
    crystals = [c.wrapped() for c in classic] if frame == "periodic" else classic
    pred = reconstruct_exact(crystals, frame)
    assert [p.id for p in pred] == [c.id for c in crystals]
    assert_exact(crystals, pred, frame)
    if frame == "periodic":  # detected atoms are inside the cell
        for p in pred:
            f = p.frac
            assert f.min() >= -1e-6 and f.max() < 1 + 1e-6, p.id


def _general(r):
    return list(r.random(3))


#: Wyckoff positions with random free parameters (x, y, z); general positions in the low-symmetry groups
_WYCKOFF = {
    "P2_1/c": [_general],
    "P-1": [_general],
    "P6_3/mmc": [
        lambda r: [0, 0, 0],
        lambda r: [1 / 3, 2 / 3, 1 / 4],
        lambda r: [0, 0, r.random()],
        lambda r: [1 / 3, 2 / 3, r.random()],
        lambda r: (lambda x: [x, 2 * x, 1 / 4])(r.random()),
    ],
    "R-3m": [
        lambda r: [0, 0, 0],
        lambda r: [0, 0, 1 / 2],
        lambda r: [0, 0, r.random()],
        lambda r: (lambda x, z: [x, -x, z])(r.random(), r.random()),
        lambda r: [1 / 2, 0, 0],
    ],
}

#: space group -> lattice parameter sampler (shape only; the cell is scaled afterwards)
_GROUPS = {
    "P2_1/c": lambda r: (*r.uniform(4, 8, 3), 90, r.uniform(95, 125), 90),
    "P-1": lambda r: (*r.uniform(3.5, 7, 3), *r.uniform(65, 115, 3)),
    "P6_3/mmc": lambda r: (*[r.uniform(2.6, 4.5)] * 2, r.uniform(4, 9), 90, 90, 120),
    "R-3m": lambda r: (*[r.uniform(2.8, 4.5)] * 2, r.uniform(10, 20), 90, 90, 120),
}


def _random_packing(rng, sg: str, n_target: int):
    """Add random Wyckoff sites of ``sg`` to a cell of about 15 A^3/atom while all atoms (and
    periodic images) stay at least 1.5 A apart. Returns a pymatgen Structure."""
    group = SpaceGroup(sg)
    lat = Lattice.from_parameters(*_GROUPS[sg](rng))
    lat = lat.scale(n_target * rng.uniform(12, 18))
    symbols = ["Li", "O", "Mg", "Si", "S", "Fe", "Sr", "Ba"]
    frac: list[np.ndarray] = []
    species: list[str] = []
    sites = _WYCKOFF[sg]
    for _ in range(60):
        orbit = np.array(group.get_orbit(sites[int(rng.integers(len(sites)))](rng), tol=1e-3)) % 1.0
        if len(frac) + len(orbit) > min(n_target, 60):
            continue
        pts = np.array(frac + list(orbit))
        d = lat.get_all_distances(pts, pts) + np.eye(len(pts)) * 1e9
        if d.min() < 1.6:
            continue
        frac.extend(orbit)
        species.extend([symbols[int(rng.integers(len(symbols)))]] * len(orbit))
    return Structure(lat, species, np.array(frac))


def random_spacegroup_crystals(n: int, seed: int = 123) -> list[Crystal]:
    """Fresh random crystals of the groups above (atoms >= 1.5 A apart, <= 60 atoms), some in
    their primitive cells and some in a non-reduced basis of the same lattice."""
    rng = np.random.default_rng(seed)
    names = list(_GROUPS)
    out: list[Crystal] = []
    tries = 0
    while len(out) < n:
        tries += 1
        assert tries < 500, "could not generate random crystals"
        sg = names[len(out) % len(names)]
        s = _random_packing(rng, sg, int(rng.integers(8, 61)))
        if len(s) < 2 or len(s.get_neighbor_list(1.5)[0]) > 0 or min(s.lattice.abc) < 1.5:
            continue  # two atoms (or an atom and its own image) closer than 1.5 A
        variant = len(out) % 3
        if variant == 1:
            s = s.get_primitive_structure()
            if len(s.get_neighbor_list(1.5)[0]) > 0:
                continue
        cid = f"{sg}-{len(out)}-{['conv', 'prim', 'basis'][variant]}"
        crystal = Crystal.from_pymatgen(s, id=cid)
        if variant == 2:  # same lattice, another (skewed) basis
            u = np.array([[1, 0, 0], [1, 1, 0], [-1, 1, 1]], dtype=np.float64)
            crystal = Crystal(u @ crystal.lattice, crystal.cart, crystal.numbers, cid)
        out.append(crystal.wrapped())
    return out


@pytest.fixture(scope="module")
def random_sg():
    return random_spacegroup_crystals(12)


def test_random_spacegroup_crystals_are_new_and_varied(random_sg, classic):
    assert len(random_sg) == 12
    counts = [c.n_atoms for c in random_sg]
    assert max(counts) <= 60 and len(set(counts)) > 3
    lat_classic = [np.round(c.lattice_params, 4) for c in classic]
    for c in random_sg:
        assert not any(np.array_equal(np.round(c.lattice_params, 4), lc) for lc in lat_classic)
        angles = np.degrees(c.lattice_params[3:])
        assert np.abs(angles - 90).max() > 1  # non-orthogonal cells


def test_reconstruct_exact_random_spacegroup_crystals(random_sg):
    for c in random_sg:
        assert diagnose(c, "periodic") is None, (c.id, diagnose(c, "periodic"))
    pred = reconstruct_exact(random_sg, "periodic")
    assert_exact(random_sg, pred, "periodic")


def test_reconstruct_exact_float64_and_small_batches(classic):
    crystals = [c.wrapped() for c in classic[:7]]
    s = ReconstructionSettings(batch_size=3)
    pred = reconstruct_exact(crystals, "periodic", settings=s, dtype=torch.float64)
    assert_exact(crystals, pred, "periodic", tol=1e-6)


# ---------------------------------------------------------------------- published algorithm


@pytest.mark.parametrize("frame", ["periodic", "paper"])
def test_speedups_do_not_change_results(frame, classic):
    """merge_tol=0 and converge_tol=0 (every particle makes all 64 steps, no merging) finds the
    same atoms as the defaults."""
    picks = ["Mg-hcp-conventional", "CaCO3-calcite-primitive", "ZrO2-baddeleyite-conventional", "skewed-1"]
    crystals = [c for c in classic if c.id in picks]
    assert len(crystals) == len(picks)
    if frame == "periodic":
        crystals = [c.wrapped() for c in crystals]
    fast = reconstruct_exact(crystals, frame)
    pure = reconstruct_exact(crystals, frame, settings=ReconstructionSettings(merge_tol=0.0, converge_tol=0.0))
    assert_exact(crystals, pure, frame)
    m = paper_metrics(pure, fast, frame)
    assert m["atom_count_error_pct"] == 0
    assert m["position_error_actual"] < 1e-5 and m["position_error_detected"] < 1e-5
    assert m["species_error_actual_pct"] == 0 and m["species_error_detected_pct"] == 0


@pytest.mark.parametrize("frame", ["periodic", "paper"])
def test_merging_does_not_change_results_with_few_steps(frame, classic):
    mg = next(c for c in classic if c.id == "Mg-hcp-conventional").wrapped()
    pure = reconstruct_exact([mg], frame, settings=ReconstructionSettings(n_steps=1, merge_tol=0.0))[0]
    fast = reconstruct_exact([mg], frame, settings=ReconstructionSettings(n_steps=1))[0]
    assert pure.n_atoms == mg.n_atoms  # the published algorithm finds both atoms after one step
    assert fast.n_atoms == pure.n_atoms


# ---------------------------------------------------------------------- diagnose


@pytest.mark.parametrize("frame", ["periodic", "paper"])
def test_diagnose_none_for_normal_crystals(frame, classic):
    crystals = classic if frame == "periodic" else classic[::4]
    for c in crystals:
        assert diagnose(c.wrapped() if frame == "periodic" else c, frame) is None, c.id


def _cubic(a, cart, numbers, cid):
    return Crystal(np.eye(3) * a, np.asarray(cart, dtype=float), numbers, cid)


@pytest.mark.parametrize("frame", ["periodic", "paper"])
def test_diagnose_close_atoms(frame):
    c = _cubic(6.0, [[1, 1, 1], [1.3, 1, 1], [4, 4, 4]], [8, 8, 26], "close")
    reason = diagnose(c, frame)
    assert reason is not None and "clustering radius" in reason
    assert "0.300 A" in reason
    # and the reconstruction does indeed miss an atom
    assert reconstruct_exact([c], frame)[0].n_atoms == 2


def test_diagnose_close_through_the_cell_face():
    """Only the periodic frame sees atoms 0.3 A apart across a face of the cell."""
    c = _cubic(6.0, [[0.1, 3, 3], [5.8, 3, 3]], [8, 8], "face")
    reason = diagnose(c, "periodic")
    assert reason is not None and "clustering radius" in reason
    assert diagnose(c, "paper") is None


def test_diagnose_too_few_particles_coarse_grid(classic):
    cu = next(c for c in classic if c.id == "Cu-fcc-primitive")
    s = ReconstructionSettings(grid_spacing=1.5)
    reason = diagnose(cu.wrapped(), "periodic", settings=s)
    assert reason is not None and "particles" in reason and "grid-spacing" in reason
    assert reconstruct_exact([cu.wrapped()], "periodic", settings=s)[0].n_atoms == 0
    assert diagnose(cu.wrapped(), "periodic") is None


@pytest.mark.parametrize("frame", ["periodic", "paper"])
def test_diagnose_squeezed_hydrogen(frame):
    """An H atom caged by O atoms 0.6 A away owns too small a region of the grid."""
    centre = np.array([4.0, 4.0, 4.0])
    cage = [centre + 0.6 * s * e for e in np.eye(3) for s in (1, -1)]
    c = _cubic(8.0, [centre, *cage], [1] + [8] * 6, "squeezed-H")
    reason = diagnose(c, frame)
    assert reason is not None and "particles" in reason and "(H)" in reason, reason
    pred = reconstruct_exact([c], frame)[0]
    assert 1 not in pred.numbers.tolist()  # the H atom is lost, as diagnosed


def test_diagnose_atom_outside_paper_domain():
    c = _cubic(6.0, [[1, 1, 1], [4, 4, 4]], [8, 26], "outside")
    bbox = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, 3.0]])
    reason = diagnose(c, "paper", bbox=bbox)
    assert reason is not None and "outside" in reason
    assert diagnose(c, "periodic", bbox=bbox) is None


# ---------------------------------------------------------------------- settings


def test_settings_defaults_are_published_values():
    s = ReconstructionSettings()
    assert (s.grid_spacing, s.n_steps, s.max_residual, s.nms_radius, s.min_particles) == (0.5, 64, 0.9, 0.5, 10)
    assert (s.species_grid, s.species_spacing) == (6, 0.1)
    assert s.to_dict()["grid_spacing"] == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grid_spacing": -0.5},
        {"grid_spacing": 0.0},
        {"nms_radius": -1.0},
        {"species_spacing": -0.1},
        {"max_residual": -0.9},
        {"n_steps": -1},
        {"n_steps": 0},
        {"min_particles": -10},
        {"species_grid": -6},
        {"batch_size": -1},
        {"converge_tol": -1e-4},
        {"merge_tol": -1e-3},
    ],
)
def test_settings_reject_negative_values(kwargs):
    with pytest.raises(ValueError):
        ReconstructionSettings(**kwargs)


def test_settings_accept_zero_tolerances():
    s = ReconstructionSettings(converge_tol=0.0, merge_tol=0.0)
    assert s.converge_tol == 0 and s.merge_tol == 0


# ---------------------------------------------------------------------- particles and clustering


def make_particles(pos, crystal=None, weight=None, residual=None, active=None):
    pos = torch.as_tensor(np.asarray(pos), dtype=torch.float64)
    n = pos.shape[0]
    return Particles(
        pos=pos,
        crystal=torch.zeros(n, dtype=torch.long) if crystal is None else torch.as_tensor(crystal, dtype=torch.long),
        weight=torch.ones(n, dtype=torch.float64) if weight is None else torch.as_tensor(weight, dtype=torch.float64),
        residual=torch.zeros(n, dtype=torch.float64)
        if residual is None
        else torch.as_tensor(residual, dtype=torch.float64),
        active=torch.ones(n, dtype=torch.bool) if active is None else torch.as_tensor(active),
    )


def expected_mean(pos, weight, residual):
    w = weight * np.exp(-residual)
    return (pos * w[:, None]).sum(0) / w.sum()


def test_nms_two_groups_one_atom_at_weighted_mean():
    rng = np.random.default_rng(0)
    a = np.array([1.0, 1.0, 1.0]) + rng.normal(scale=0.05, size=(12, 3))
    b = np.array([5.0, 5.0, 5.0]) + rng.normal(scale=0.05, size=(5, 3))
    pos = np.concatenate([a, b])
    residual = rng.uniform(0, 0.5, size=17)
    p = make_particles(pos, residual=residual)
    atoms, owner = nms_cluster(p, 1, get_frame("paper"), None, radius=0.5, min_particles=10)
    assert atoms.shape == (1, 3) and owner.tolist() == [0]
    np.testing.assert_allclose(atoms[0].numpy(), expected_mean(a, np.ones(12), residual[:12]), atol=1e-12)


def test_nms_weights_count_as_particles():
    """Five particles that each stand for three (merged) particles make an atom."""
    rng = np.random.default_rng(1)
    a = np.array([2.0, 0.0, 0.0]) + rng.normal(scale=0.02, size=(5, 3))
    w = np.array([3.0, 1.0, 2.0, 3.0, 1.0])
    residual = rng.uniform(0, 0.2, size=5)
    p = make_particles(a, weight=w, residual=residual)
    atoms, _ = nms_cluster(p, 1, get_frame("paper"), None, radius=0.5, min_particles=10)
    assert atoms.shape == (1, 3)
    np.testing.assert_allclose(atoms[0].numpy(), expected_mean(a, w, residual), atol=1e-12)
    p = make_particles(a, weight=w - 0.5, residual=residual)  # 7.5 < 10
    atoms, _ = nms_cluster(p, 1, get_frame("paper"), None, radius=0.5, min_particles=10)
    assert atoms.shape == (0, 3)


def test_nms_keeps_crystals_apart():
    """Particles of different crystals at the same place never join one cluster."""
    rng = np.random.default_rng(2)
    pos = np.array([1.0, 2.0, 3.0]) + rng.normal(scale=0.03, size=(30, 3))
    crystal = np.repeat([0, 1, 2], 10)
    order = np.argsort(crystal, kind="stable")
    p = make_particles(pos[order], crystal=crystal[order])
    atoms, owner = nms_cluster(p, 4, get_frame("paper"), None, radius=0.5, min_particles=10)
    assert owner.tolist() == [0, 1, 2]
    for k in range(3):
        np.testing.assert_allclose(atoms[k].numpy(), pos[crystal == k].mean(0), atol=1e-12)
    p = make_particles(pos, crystal=np.repeat([0, 1], 15))
    atoms, owner = nms_cluster(p, 2, get_frame("paper"), None, radius=0.5, min_particles=16)
    assert atoms.shape == (0, 3)  # 15 + 15 would be enough together, not apart


def test_nms_periodic_clusters_across_cell_faces():
    lat = Lattice.from_parameters(6.0, 7.0, 8.0, 80, 100, 110).matrix.copy()
    geom = PeriodicGeometry.from_lattices(lat[None], dtype=torch.float64)
    rng = np.random.default_rng(3)
    frac = np.concatenate([np.tile([0.01, 0.5, 0.5], (6, 1)), np.tile([0.99, 0.5, 0.5], (6, 1))]) + rng.normal(
        scale=1e-3, size=(12, 3)
    ) * [0, 1, 1]
    p = make_particles(frac @ lat)
    atoms, owner = nms_cluster(p, 1, get_frame("periodic"), geom, radius=0.5, min_particles=10)
    assert atoms.shape == (1, 3) and owner.tolist() == [0]
    f = atoms[0].numpy() @ np.linalg.inv(lat)
    assert f.min() >= 0 and f.max() < 1  # wrapped
    target = np.array([0.0, frac[:, 1].mean(), frac[:, 2].mean()]) @ lat
    d = geom.minimum_image(torch.as_tensor((atoms[0].numpy() - target)[None, None]))
    assert float(torch.linalg.norm(d)) < 1e-9
    # without periodicity the two halves are separate groups of 6: no atom
    atoms, _ = nms_cluster(make_particles(frac @ lat), 1, get_frame("paper"), None, radius=0.5, min_particles=10)
    assert atoms.shape == (0, 3)


def test_nms_empty_and_nearby_atoms():
    atoms, owner = nms_cluster(make_particles(np.zeros((0, 3))), 2, get_frame("paper"), None, 0.5, 10)
    assert atoms.shape == (0, 3) and owner.shape == (0,)
    # two atoms 0.8 A apart (more than the radius) are both found
    pos = np.concatenate([np.zeros((10, 3)), np.tile([0.8, 0, 0], (10, 1))])
    atoms, _ = nms_cluster(make_particles(pos), 1, get_frame("paper"), None, 0.5, 10)
    np.testing.assert_allclose(np.sort(atoms[:, 0].numpy()), [0.0, 0.8], atol=1e-12)


def test_merge_particles_sums_weights_and_averages():
    rng = np.random.default_rng(4)
    base = np.array([1.0002, 2.0002, 3.0002])
    group = base + rng.uniform(0, 5e-4, size=(12, 3))  # all in one 1e-3 cube
    other = np.array([[4.0, 4.0, 4.0]])
    pos = np.concatenate([group, other, group[:3]])
    crystal = np.array([0] * 13 + [1] * 3)
    residual = np.concatenate([rng.uniform(0, 1, 12), [0.3], [0.1, 0.2, np.inf]])
    active = np.array([False] * 11 + [True] + [False] + [False] * 3)
    weight = np.concatenate([rng.integers(1, 4, 12).astype(float), [1.0], [1.0, 1.0, 1.0]])
    p = make_particles(pos, crystal=crystal, weight=weight, residual=residual, active=active)
    m = merge_particles(p, 1e-3)
    assert len(m) == 3
    assert m.crystal.tolist() == sorted(m.crystal.tolist()) == [0, 0, 1]
    i = int(torch.argmax(m.weight))
    assert float(m.weight[i]) == weight[:12].sum()
    np.testing.assert_allclose(m.pos[i].numpy(), (group * weight[:12, None]).sum(0) / weight[:12].sum(), atol=1e-12)
    np.testing.assert_allclose(float(m.residual[i]), (residual[:12] * weight[:12]).sum() / weight[:12].sum())
    assert bool(m.active[i])  # one member still moving
    j = 1 - i if i in (0, 1) else 0
    assert float(m.weight[j]) == 1.0 and not bool(m.active[j])
    # crystal 1's copies merged separately; an infinite residual stays infinite
    assert float(m.weight[2]) == 3.0 and float(m.residual[2]) == float("inf")
    assert float(m.weight.sum()) == weight.sum()  # no particle lost


def test_merge_particles_noop():
    p = make_particles(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    assert merge_particles(p, 0.0) is p
    assert merge_particles(p, 1e-3) is p


def test_merge_then_cluster_equals_cluster():
    """Merged particles make the same atom as the particles they stand for."""
    rng = np.random.default_rng(5)
    pos = np.concatenate(
        [
            np.array([1.0004, 1.0004, 1.0004]) + rng.uniform(0, 4e-4, (8, 3)),
            np.array([1.2, 1.0, 1.0]) + rng.normal(scale=0.02, size=(4, 3)),
        ]
    )
    residual = np.full(12, 0.01)
    p = make_particles(pos, residual=residual)
    a1, _ = nms_cluster(p, 1, get_frame("paper"), None, 0.5, 10)
    m = merge_particles(make_particles(pos, residual=residual), 1e-3)
    assert len(m) < 12
    a2, _ = nms_cluster(m, 1, get_frame("paper"), None, 0.5, 10)
    assert a1.shape == a2.shape == (1, 3)
    torch.testing.assert_close(a1, a2, atol=1e-12, rtol=0)
