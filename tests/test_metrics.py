"""Paper metrics and StructureMatcher metrics on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice

from nesf.data.crystal import Crystal
from nesf.metrics.matcher import match_metrics, match_rmse
from nesf.metrics.paper import PAPER_KEYS, pairwise_distances, paper_metrics

FRAMES = ["paper", "periodic"]


def hand_crystals() -> list[Crystal]:
    """Three small crystals: 2 + 3 + 1 = 6 atoms."""
    cubic = np.eye(3) * 4.0
    hexa = Lattice.hexagonal(3.0, 5.0).matrix.copy()
    tri = Lattice.from_parameters(5.0, 6.0, 7.0, 80, 95, 105).matrix.copy()
    return [
        Crystal(cubic, [[0.5, 0.5, 0.5], [2.5, 0.5, 0.5]], [11, 17], "NaCl-like"),
        Crystal(hexa, np.array([[0, 0, 0.1], [1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.8]]) @ hexa, [8, 8, 12], "hex"),
        Crystal(tri, np.array([[0.3, 0.3, 0.3]]) @ tri, [26], "single"),
    ]


def copy(c: Crystal, cart=None, numbers=None, lattice=None) -> Crystal:
    return Crystal(
        c.lattice.copy() if lattice is None else lattice,
        c.cart.copy() if cart is None else cart,
        c.numbers.copy() if numbers is None else numbers,
        c.id,
    )


@pytest.mark.parametrize("frame", FRAMES)
def test_identical_crystals_give_zero_errors(frame, classic):
    small = [c for c in classic if c.n_atoms <= 20]  # (the 60-atom cell makes periodic metrics slow)
    for crystals in (hand_crystals(), small):
        m = paper_metrics(crystals, [copy(c) for c in crystals], frame)
        assert tuple(m) == PAPER_KEYS
        assert m["n_structures"] == len(crystals)
        for k in PAPER_KEYS[1:]:
            assert m[k] == pytest.approx(0.0, abs=1e-9), k


@pytest.mark.parametrize("frame", FRAMES)
def test_one_atom_moved(frame):
    true = hand_crystals()
    pred = [copy(c) for c in true]
    direction = np.array([1.0, 2.0, -2.0]) / 3.0
    pred[1].cart[2] += 0.1 * direction
    m = paper_metrics(true, pred, frame)
    # pooled over all 6 true (and 6 detected) atoms: one of them is 0.1 A off
    assert m["position_error_actual"] == pytest.approx(0.1 / 6, abs=1e-12)
    assert m["position_error_detected"] == pytest.approx(0.1 / 6, abs=1e-12)
    assert m["atom_count_error_pct"] == 0
    assert m["species_error_actual_pct"] == 0 and m["species_error_detected_pct"] == 0
    assert m["lattice_length_mae"] == 0 and m["lattice_angle_mae_deg"] == 0


@pytest.mark.parametrize("frame", FRAMES)
def test_one_atom_dropped(frame):
    true = hand_crystals()
    pred = [copy(c) for c in true]
    pred[0] = copy(true[0], cart=true[0].cart[:1], numbers=true[0].numbers[:1])  # Cl dropped, Na kept
    m = paper_metrics(true, pred, frame)
    assert m["atom_count_error_pct"] == pytest.approx(100 / 3)
    # the true Cl's nearest detected atom is the Na, 2.0 A away (also through the cell, 4 - 2)
    assert m["position_error_actual"] == pytest.approx(2.0 / 6, abs=1e-12)
    assert m["position_error_detected"] == pytest.approx(0.0, abs=1e-12)
    assert m["species_error_actual_pct"] == pytest.approx(100 / 6)
    assert m["species_error_detected_pct"] == 0


@pytest.mark.parametrize("frame", FRAMES)
def test_wrong_species_and_empty_prediction(frame):
    true = hand_crystals()
    pred = [copy(c) for c in true]
    pred[1].numbers[1] = 9  # one O detected as F
    pred[2] = copy(true[2], cart=np.zeros((0, 3)), numbers=np.zeros(0, dtype=int))  # nothing found
    m = paper_metrics(true, pred, frame)
    assert m["atom_count_error_pct"] == pytest.approx(100 / 3)
    # 6 true atoms: one wrong species, one with no detection at all
    assert m["species_error_actual_pct"] == pytest.approx(100 * 2 / 6)
    # 5 detected atoms: one wrong
    assert m["species_error_detected_pct"] == pytest.approx(100 / 5)
    # the empty crystal does not enter position errors
    assert m["position_error_actual"] == pytest.approx(0.0, abs=1e-12)
    assert m["position_error_detected"] == pytest.approx(0.0, abs=1e-12)


def test_lattice_errors_in_degrees_and_angstrom():
    true = hand_crystals()
    pred = [copy(c) for c in true]
    a, b, c, al, be, ga = Lattice(true[2].lattice).parameters
    new = Lattice.from_parameters(a, b + 0.3, c, al, be, ga + 6.0).matrix.copy()
    pred[2] = copy(true[2], cart=true[2].frac @ new, lattice=new)  # same fractional coordinates
    m = paper_metrics(true, pred, "periodic")
    assert m["lattice_angle_mae_deg"] == pytest.approx(6.0 / 9, abs=1e-9)
    assert m["lattice_length_mae"] == pytest.approx(0.3 / 9, abs=1e-9)
    # periodic frame: detected atoms are compared in fractional coordinates of the true cell
    assert m["position_error_actual"] == pytest.approx(0.0, abs=1e-9)
    assert m["atom_count_error_pct"] == 0


@pytest.mark.parametrize("frame, expected", [("periodic", 0.02), ("paper", 9.98)])
def test_minimum_image_across_the_cell_face(frame, expected):
    lat = Lattice.from_parameters(10.0, 8.0, 9.0, 90, 90, 90).matrix.copy()
    true = [Crystal(lat, np.array([[0.999, 0.5, 0.5]]) @ lat, [6], "t")]
    pred = [Crystal(lat, np.array([[0.001, 0.5, 0.5]]) @ lat, [6], "t")]
    m = paper_metrics(true, pred, frame)
    assert m["position_error_actual"] == pytest.approx(expected, abs=1e-9)
    assert m["position_error_detected"] == pytest.approx(expected, abs=1e-9)


def test_minimum_image_across_the_face_of_a_skewed_cell():
    lat = Lattice.from_parameters(5.0, 6.0, 18.0, 60, 115, 70).matrix.copy()
    f_true = np.array([[0.999, 0.998, 0.001]])
    f_pred = np.array([[0.001, 0.001, 0.999]])
    d = pairwise_distances([Crystal(lat, f_true @ lat, [6])], [Crystal(lat, f_pred @ lat, [6])], "periodic")[0]
    expect = np.linalg.norm((np.array([0.002, 0.003, -0.002])) @ lat)
    assert d.shape == (1, 1) and d[0, 0] == pytest.approx(expect, abs=1e-9)


def test_pairwise_distances_shapes_with_padding():
    true = hand_crystals()
    pred = [copy(c) for c in true]
    pred[0] = copy(true[0], cart=np.zeros((0, 3)), numbers=np.zeros(0, dtype=int))
    d = pairwise_distances(true, pred, "periodic")
    assert [x.shape for x in d] == [(2, 0), (3, 3), (1, 1)]
    np.testing.assert_allclose(np.diag(d[1]), 0, atol=1e-12)


def test_paper_metrics_rejects_bad_input():
    true = hand_crystals()
    with pytest.raises(ValueError):
        paper_metrics(true, true[:2], "paper")
    with pytest.raises(ValueError):
        paper_metrics([], [], "paper")
    with pytest.raises(ValueError):
        paper_metrics(true, true, "cartesian")


# ---------------------------------------------------------------------- StructureMatcher


def test_match_identical():
    true = hand_crystals()
    m = match_metrics(true, [copy(c) for c in true], n_jobs=1)
    assert m["match_rate_pct"] == 100.0
    assert m["rmse"] == pytest.approx(0.0, abs=1e-6)


def test_match_different_composition_is_not_matched():
    true = hand_crystals()
    pred = [copy(true[0], numbers=np.array([11, 11]))] + [copy(c) for c in true[1:]]
    assert match_rmse(true, pred, n_jobs=1)[0] is None
    m = match_metrics(true[:1], pred[:1], n_jobs=1)
    assert m["match_rate_pct"] == 0.0 and math.isnan(m["rmse"])
    empty = copy(true[2], cart=np.zeros((0, 3)), numbers=np.zeros(0, dtype=int))
    assert match_rmse(true[2:], [empty], n_jobs=1) == [None]


def test_match_perturbed_positions_have_positive_rmse():
    rng = np.random.default_rng(0)
    true = hand_crystals()[:2]
    pred = [copy(c, cart=c.cart + rng.normal(scale=0.05, size=c.cart.shape)) for c in true]
    rms = match_rmse(true, pred, n_jobs=1)
    assert all(r is not None and 0 < r < 0.2 for r in rms)


def test_match_parallel_equals_serial(classic):
    rng = np.random.default_rng(1)
    true = classic[:20]
    pred = []
    for k, c in enumerate(true):
        if k % 4 == 1:  # moved atoms
            pred.append(copy(c, cart=c.cart + rng.normal(scale=0.1, size=c.cart.shape)))
        elif k % 4 == 2:  # other composition
            numbers = c.numbers.copy()
            numbers[0] = 3 if numbers[0] != 3 else 4
            pred.append(copy(c, numbers=numbers))
        elif k % 4 == 3:  # lost atom
            pred.append(copy(c, cart=c.cart[1:], numbers=c.numbers[1:]) if c.n_atoms > 1 else copy(c))
        else:
            pred.append(copy(c))
    serial = match_rmse(true, pred, n_jobs=1)
    parallel = match_rmse(true, pred, n_jobs=2)
    assert len(serial) == len(parallel) == 20
    assert [r is None for r in serial] == [r is None for r in parallel]
    assert any(r is None for r in serial) and any(r is not None for r in serial)
    for s, p in zip(serial, parallel):
        if s is not None:
            assert p == pytest.approx(s, abs=1e-12)
    assert match_metrics(true, pred, n_jobs=1) == pytest.approx(match_metrics(true, pred, n_jobs=2))


def test_breakdown_by_crystal_system_and_atom_count():
    from nesf.data.examples import demo_crystals
    from nesf.metrics.breakdown import atom_bucket, breakdown, format_breakdown
    from nesf.metrics.verdicts import make_verdicts

    assert [atom_bucket(n) for n in (1, 4, 5, 20, 21, 300)] == ["1-4", "1-4", "5-8", "17-20", "21+", "21+"]
    true = demo_crystals(("NaCl-rocksalt", "ZnO-wurtzite", "TiO2-rutile", "Cu-fcc"))
    empty = Crystal(true[3].lattice, np.zeros((0, 3)), [], true[3].id)
    pred = [*true[:3], empty]  # the last one comes back with no atom
    verdicts = make_verdicts(true, pred, [0.0, 0.0, 0.0, None], [[] for _ in true])
    parts = breakdown(true, pred, verdicts, "periodic")
    systems = parts["by_crystal_system"]
    assert list(systems) == ["tetragonal", "hexagonal", "cubic"]  # International Tables order
    assert systems["cubic"]["n_structures"] == 2 and systems["cubic"]["match_rate_pct"] == 50.0
    assert systems["cubic"]["atom_count_error_pct"] == 50.0
    assert systems["hexagonal"]["match_rate_pct"] == 100.0 and systems["hexagonal"]["rmse"] == 0.0
    assert sum(g["n_structures"] for g in parts["by_atom_count"].values()) == 4
    text = format_breakdown(parts)
    assert "crystal system" in text and "atoms per cell" in text and "hexagonal" in text
    with pytest.raises(ValueError, match="one reconstruction"):
        breakdown(true, pred[:2], verdicts, "periodic")


@pytest.mark.parametrize("frame", FRAMES)
def test_running_tally_in_chunks_gives_the_pooled_metrics_and_breakdown(frame, classic):
    from nesf.data.domain import crystal_system
    from nesf.metrics.accumulate import Tally, crystal_stats
    from nesf.metrics.breakdown import atom_bucket, breakdown
    from nesf.metrics.report import evaluate_reconstruction
    from nesf.metrics.verdicts import make_verdicts

    rng = np.random.default_rng(3)
    true = [c for c in classic if c.n_atoms <= 12][:9]
    pred = []
    for k, c in enumerate(true):  # moved atoms, a dropped atom, a wrong species, an empty one
        cart = c.cart + rng.normal(0, 0.05 * (k % 3), c.cart.shape)
        numbers = c.numbers.copy()
        if k == 4:
            numbers[0] = 1
        if k == 5:
            cart, numbers = cart[:-1], numbers[:-1]
        if k == 7:
            cart, numbers = cart[:0], numbers[:0]
        pred.append(copy(c, cart=cart, numbers=numbers, lattice=c.lattice * (1 + 0.01 * k)))
    whole = evaluate_reconstruction(true, pred, frame, n_jobs=1)
    rmse = match_rmse(true, pred, n_jobs=1)
    verdicts = make_verdicts(true, pred, rmse)
    tally = Tally()
    for s in (slice(0, 4), slice(4, 5), slice(5, 9)):  # chunks of any size give the same sums
        groups = [(crystal_system(c), atom_bucket(c.n_atoms)) for c in true[s]]
        tally.add(crystal_stats(true[s], pred[s], frame), [v.to_dict() for v in verdicts[s]], groups)
    got = tally.metrics()
    assert set(got) == set(whole)
    for key, value in whole.items():
        assert got[key] == pytest.approx(value, nan_ok=True, rel=1e-12), key
    assert 0 < whole["match_rate_pct"] < 100 and whole["atom_count_error_pct"] > 0
    parts = breakdown(true, pred, verdicts, frame)
    mine = tally.breakdown()
    assert list(mine) == list(parts)
    for name in parts:
        assert list(mine[name]) == list(parts[name])
        for label, group in parts[name].items():
            for key, value in group.items():
                expect = None if value is None else pytest.approx(value, nan_ok=True, rel=1e-12)
                assert mine[name][label][key] == expect, (name, label, key)


def test_largest_displacement_ignores_a_rigid_shift_and_sees_a_moved_atom():
    from nesf.metrics.paper import largest_displacements

    lat = np.diag([4.0, 4.0, 6.0])
    cart = np.array([[0.0, 0.0, 0.0], [2.0, 2.0, 3.0]])
    true = Crystal(lattice=lat, numbers=np.array([30, 8]), cart=cart, id="t")
    shifted = Crystal(lattice=lat, numbers=np.array([30, 8]), cart=cart + [0.0, 0.0, 0.05], id="shifted")
    moved = Crystal(lattice=lat, numbers=np.array([30, 8]), cart=cart + [[0.0, 0.0, 0.0], [0.0, 0.0, 0.04]], id="m")
    across = Crystal(lattice=lat, numbers=np.array([30, 8]), cart=cart - [0.0, 0.0, 0.01], id="across")  # wraps
    empty = Crystal(lattice=lat, numbers=np.zeros(0, dtype=int), cart=np.zeros((0, 3)), id="empty")
    aligned = largest_displacements([true] * 4, [shifted, moved, across, empty], "periodic")
    pinned = largest_displacements([true] * 4, [shifted, moved, across, empty], "periodic", align=False)
    assert aligned[0] == pytest.approx(0.0, abs=1e-12) and pinned[0] == pytest.approx(0.05)
    # one atom 0.04 A off: the best overlay splits it, 0.02 A each; as written, 0.04 A
    assert aligned[1] == pytest.approx(0.02) and pinned[1] == pytest.approx(0.04)
    assert aligned[2] == pytest.approx(0.0, abs=1e-12) and pinned[2] == pytest.approx(0.01)
    assert aligned[3] is None and pinned[3] is None


def test_verdicts_carry_each_crystals_position_error():
    from nesf.metrics.accumulate import crystal_stats, position_errors
    from nesf.metrics.verdicts import VERDICT_KEYS, format_verdicts, make_verdicts

    true = hand_crystals()
    moved = true[0].cart.copy()
    moved[1, 0] += 0.2  # one of two atoms 0.2 A off: mean 0.1 A
    pred = [copy(true[0], cart=moved), true[1], Crystal(true[2].lattice, np.zeros((0, 3)), [], true[2].id)]
    pos = position_errors(crystal_stats(true, pred, "periodic"))
    assert pos[0] == pytest.approx(0.1, abs=1e-9) and pos[1] == pytest.approx(0.0, abs=1e-9) and pos[2] is None
    verdicts = make_verdicts(true, pred, [0.01, 0.0, None], position_errors=pos)
    assert "position_error" in VERDICT_KEYS and verdicts[0].to_dict()["position_error"] == pytest.approx(0.1)
    assert verdicts[2].position_error is None and make_verdicts(true, pred, None)[0].position_error is None
    assert "0.100" in format_verdicts(verdicts) and "pos err A" in format_verdicts(verdicts)
