"""Symmetrisation of decoded crystals, field polishing, and the space-group figures of reports."""

from __future__ import annotations

import numpy as np
import pytest
import spglib

from nesf.data.crystal import Crystal
from nesf.data.examples import demo_crystals
from nesf.metrics.report import MATCHED_KEYS, evaluate_reconstruction, matched_metrics
from nesf.metrics.verdicts import VERDICT_KEYS, make_verdicts
from nesf.reconstruction.exact import reconstruct_exact
from nesf.reconstruction.settings import ReconstructionSettings
from nesf.reconstruction.symmetry import (
    atom_moves,
    cell_strain,
    crystal_system,
    finish_decoded,
    pick_tolerance,
    pure_translations,
    space_group,
    symmetrize,
)

LADDER = (0.01, 0.02, 0.05, 0.1, 0.2)


def perturbed(crystal: Crystal, distance: float, rng: np.random.Generator, strain: float = 0.003) -> Crystal:
    """Every atom moved by ``distance`` (Angstrom) in a random direction, the cell strained by ``strain``."""
    step = rng.normal(size=crystal.cart.shape)
    step *= distance / np.linalg.norm(step, axis=1, keepdims=True)
    lattice = crystal.lattice @ (np.eye(3) + strain * rng.uniform(-1, 1, (3, 3)))
    frac = crystal.frac + step @ np.linalg.inv(crystal.lattice)
    return Crystal(lattice, frac @ lattice, crystal.numbers.copy(), crystal.id)


def test_perturbed_crystals_get_their_space_group_back_in_their_own_cell():
    rng = np.random.default_rng(0)
    for c in demo_crystals():
        want = space_group(c, 1e-3)
        p = perturbed(c, 0.05, rng)
        assert space_group(p, 1e-3).number <= 2  # two-atom cells keep an inversion centre
        s, group = symmetrize(p, LADDER)
        assert group is not None and group.number == want.number, c.id
        assert space_group(s, 1e-4).number == want.number, c.id  # exactly symmetric
        assert s.info["symmetrized"]["number"] == want.number
        # the decoded cell and origin: the same lattice vectors up to the snapped metric, atoms in order
        assert np.abs(s.lattice - p.lattice).max() < 0.05, c.id
        assert np.array_equal(s.numbers, p.numbers)
        assert atom_moves(p, s).max() <= group.symprec + 1e-9, c.id
        assert np.all((s.frac > -1e-9) & (s.frac < 1))


def test_atoms_never_move_farther_than_the_tolerance_used():
    rng = np.random.default_rng(1)
    for distance in (0.02, 0.08, 0.15):
        for c in demo_crystals(("SrTiO3-perovskite", "ZnO-wurtzite", "TiO2-rutile", "CsCl", "NiAs", "Mg-hcp")):
            p = perturbed(c, distance, rng, strain=0.01)
            s, group = symmetrize(p, LADDER)
            if group is None:
                assert s is p
                continue
            assert atom_moves(p, s).max() <= group.symprec + 1e-9, (c.id, distance)


def test_p1_crystals_stay_untouched():
    rng = np.random.default_rng(2)
    lattice = np.array([[4.1, 0.0, 0.0], [0.7, 5.3, 0.0], [-0.9, 1.1, 6.2]])
    c = Crystal(lattice, rng.uniform(0, 1, (7, 3)) @ lattice, [8, 8, 26, 14, 14, 3, 12], "random")
    assert space_group(c, 0.1).number == 1
    s, group = symmetrize(c, LADDER)
    assert group is None and s is c
    settings = ReconstructionSettings(symmetrize=True)
    assert finish_decoded([c], settings)[0] is c


def test_the_largest_rule_searches_the_ladder_from_the_top_and_stops_at_the_first_snap(monkeypatch):
    """The same pick as trying each tolerance alone from the largest down, with fewer spglib searches."""
    import nesf.reconstruction.symmetry as sym

    rng = np.random.default_rng(4)
    named = demo_crystals(("ZnO-wurtzite", "NiAs", "CsCl"))
    crystals = [perturbed(c, d, rng, 0.01) for d in (0.03, 0.12) for c in named]
    searched = []
    dataset = sym._dataset
    monkeypatch.setattr(sym, "_dataset", lambda c, t: searched.append(t) or dataset(c, t))
    for c in crystals:
        searched.clear()
        s, group = symmetrize(c, LADDER, mean_move=0.05)
        calls = list(searched)
        alone = next(
            (r for t in sorted(LADDER, reverse=True) if (r := symmetrize(c, (t,), mean_move=0.05))[1] is not None),
            (c, None),
        )
        assert (group is None) == (alone[1] is None), c.id
        if group is not None:
            assert group == alone[1] and np.array_equal(s.cart, alone[0].cart), c.id
            # the searches stop at the tolerance that snapped (one more search checks the snap)
            assert calls[:-1] == [t for t in sorted(LADDER, reverse=True) if t >= group.symprec], c.id
        else:
            assert calls == sorted(LADDER, reverse=True)


def test_tolerance_rules():
    assert pick_tolerance([1, 1, 1], "largest") is None
    assert pick_tolerance([1, 2, 221], "largest") == 2
    assert pick_tolerance([1, 123, 221], "stable") == 1  # 221 only at the top: not stable
    assert pick_tolerance([2, 2, 221, 221], "stable") == 3
    with pytest.raises(ValueError, match="rule"):
        pick_tolerance([1], "nearest")


def test_settings_switch_symmetrisation_and_validate():
    c = perturbed(demo_crystals(("CsCl",))[0], 0.03, np.random.default_rng(3))
    assert finish_decoded([c], ReconstructionSettings())[0] is c
    out = finish_decoded([c], ReconstructionSettings(symmetrize=True, symmetry_tolerances=(0.1, 0.05)))[0]
    assert space_group(out, 1e-4).number == 221
    assert ReconstructionSettings(symmetry_tolerances=(0.1, 0.05)).symmetry_tolerances == (0.05, 0.1)
    with pytest.raises(ValueError):
        ReconstructionSettings(symmetry_rule="nearest")
    with pytest.raises(ValueError):
        ReconstructionSettings(symmetry_tolerances=())
    with pytest.raises(ValueError):
        ReconstructionSettings(polish_steps=-1)


def test_polishing_keeps_exact_fields_exact(classic):
    crystals = [c.wrapped() for c in classic[:6]]
    pred = reconstruct_exact(crystals, "periodic", ReconstructionSettings(polish_steps=2))
    for t, p in zip(crystals, pred):
        assert t.n_atoms == p.n_atoms
        d = np.linalg.norm(t.cart[:, None] - p.cart[None], axis=-1).min(axis=1)
        assert d.max() < 1e-3, t.id


def test_verdicts_and_metrics_carry_space_groups():
    true = demo_crystals(("NaCl-rocksalt", "ZnO-wurtzite", "Cu-fcc"))
    rng = np.random.default_rng(4)
    noisy = [perturbed(c, d, rng) for c, d in zip(true, (0.05, 0.01, 0.0))]
    pred = [symmetrize(noisy[0], LADDER)[0], noisy[1], Crystal(true[2].lattice, np.zeros((0, 3)), [], true[2].id)]
    verdicts = make_verdicts(true, pred, [0.01, 0.02, None])
    for key in ("spacegroup_in", "spacegroup_out", "spacegroup_symprec", "symmetrized_symprec"):
        assert key in VERDICT_KEYS and key in verdicts[0].to_dict()
    assert verdicts[0].spacegroup_in == "Fm-3m (225)" and verdicts[0].spacegroup_out == "Fm-3m (225)"
    assert verdicts[0].symmetrized_symprec in LADDER and verdicts[1].symmetrized_symprec is None
    assert verdicts[1].spacegroup_in == "P6_3mc (186)" and verdicts[2].spacegroup_out == ""
    m = matched_metrics(true, pred, [0.01, 0.02, None], "periodic")
    assert set(MATCHED_KEYS) == set(m)
    assert m["match_rate_pct"] == pytest.approx(200 / 3)
    assert m["rmse"] == m["rmse_matched"] == pytest.approx(0.015)
    assert m["rmse_all"] == pytest.approx((0.01 + 0.02 + 0.5) / 3)
    assert m["spacegroup_kept_pct"] == 100.0 and m["crystal_system_kept_pct"] == 100.0  # wurtzite kept at 0.1 A
    assert m["position_error_actual_matched"] < 0.06
    full = evaluate_reconstruction(true, pred, "periodic", n_jobs=1)
    assert set(MATCHED_KEYS) <= set(full)
    assert crystal_system(225) == "cubic" and crystal_system(186) == "hexagonal" and crystal_system(1) == "triclinic"


def test_a_strain_limit_keeps_a_pseudo_cubic_crystal_in_its_own_lower_group():
    nacl = next(c for c in demo_crystals() if c.id.startswith("NaCl"))
    stretch = np.diag([1.0, 1.0, 1.02])  # c 2 % longer: tetragonal, 0.11 A from its cubic parent
    c = Crystal(nacl.lattice @ stretch, nacl.frac @ (nacl.lattice @ stretch), nacl.numbers.copy(), "NaCl-tetragonal")
    assert space_group(c, 0.01).number == 139  # I4/mmm
    ladder = (0.01, 0.05, 0.1, 0.2, 0.3)
    loose, group = symmetrize(c, ladder, mean_move=0.0)
    assert group.number == 225  # without a limit: snapped onto the cubic parent, the cell made cubic
    assert cell_strain(c.lattice, loose.lattice) > 0.01
    kept, group = symmetrize(c, ladder, mean_move=0.0, max_strain=0.005)
    assert group.number == 139 and cell_strain(c.lattice, kept.lattice) < 1e-9
    assert cell_strain(c.lattice, c.lattice) == 0.0
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert cell_strain(c.lattice, c.lattice @ turn) < 1e-12  # the metric, not the orientation
    with pytest.raises(ValueError, match="symmetry_max_strain"):
        ReconstructionSettings(symmetry_max_strain=-1.0)


def test_the_mean_move_limit_rises_with_the_number_of_atoms():
    s = ReconstructionSettings(symmetry_mean_move=0.2, symmetry_mean_move_large=0.3, symmetry_atoms_ramp=(6, 10))
    assert [round(s.mean_move_limit(n), 6) for n in (2, 6, 8, 10, 40)] == [0.2, 0.2, 0.25, 0.3, 0.3]
    assert ReconstructionSettings(symmetry_mean_move=0.2).mean_move_limit(40) == 0.2  # no ramp by default
    assert ReconstructionSettings(symmetry_mean_move=0.0, symmetry_mean_move_large=0.3).mean_move_limit(40) == 0.0
    for bad in ({"symmetry_atoms_ramp": (10, 6)}, {"symmetry_atoms_ramp": (0, 6)}, {"symmetry_mean_move_large": -1}):
        with pytest.raises(ValueError):
            ReconstructionSettings(**bad)
    # a 16-atom CsCl supercell with every atom 0.25 A off: its group is 0.2-0.3 A away on average
    cscl = demo_crystals(("CsCl",))[0]
    shifts = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T  # [8, 3] cells of the 2x2x2
    frac = ((cscl.frac[None] + shifts[:, None]) / 2).reshape(-1, 3)
    big = Crystal(cscl.lattice * 2, frac @ (cscl.lattice * 2), np.tile(cscl.numbers, 8), "CsCl-222")
    assert big.n_atoms == 16 and space_group(big, 1e-3).number == 221
    p = perturbed(big, 0.25, np.random.default_rng(4), strain=0.0)
    ladder = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    fixed = ReconstructionSettings(symmetrize=True, symmetry_tolerances=ladder, symmetry_mean_move=0.2)
    ramped = ReconstructionSettings(
        symmetrize=True, symmetry_tolerances=ladder, symmetry_mean_move=0.2, symmetry_mean_move_large=0.3
    )
    assert 0.2 < atom_moves(p, symmetrize(p, ladder, mean_move=0.0)[0]).mean() < 0.3
    assert space_group(finish_decoded([p], fixed)[0], 1e-3).number != 221
    out = finish_decoded([p], ramped)[0]
    assert space_group(out, 1e-3).number == 221 and out.info["symmetrized"]["number"] == 221
    small = perturbed(cscl, 0.25, np.random.default_rng(5), strain=0.0)  # two atoms: no larger allowance
    assert finish_decoded([small], ramped)[0].info.get("symmetrized") == finish_decoded([small], fixed)[0].info.get(
        "symmetrized"
    )


def test_primitive_cells_are_not_snapped_onto_groups_that_make_them_supercells():
    cscl = demo_crystals(("CsCl",))[0]
    frac = np.concatenate([cscl.frac / [2, 1, 1], cscl.frac / [2, 1, 1] + [0.5, 0, 0]])
    double = Crystal(cscl.lattice * [[2], [1], [1]], frac @ (cscl.lattice * [[2], [1], [1]]), [55, 17, 55, 17], "x2")
    p = perturbed(double, 0.03, np.random.default_rng(6), strain=0.0)
    snapped, group = symmetrize(p, LADDER, mean_move=0.0)
    assert group.number == 221  # the 2x1x1 supercell's group holds the half-cell translation
    data = spglib.get_symmetry_dataset((snapped.lattice, snapped.frac, snapped.numbers), symprec=1e-3)
    assert pure_translations(data.rotations) == 2 and pure_translations(np.eye(3, dtype=int)[None]) == 1
    kept, group = symmetrize(p, LADDER, mean_move=0.0, primitive=True)
    assert group.number != 221  # at most a group of this cell's own (the perturbation broke the translation)
    own = spglib.get_symmetry_dataset((kept.lattice, kept.frac, kept.numbers), symprec=1e-3)
    assert own.number == group.number and pure_translations(own.rotations) == 1
    single = perturbed(cscl, 0.03, np.random.default_rng(7), strain=0.0)  # a primitive cell snaps as before
    assert symmetrize(single, LADDER, mean_move=0.0, primitive=True)[1].number == 221
    settings = ReconstructionSettings(symmetrize=True, symmetry_tolerances=LADDER, symmetry_primitive=True)
    assert finish_decoded([p], settings)[0].info["symmetrized"]["number"] == group.number
    assert not ReconstructionSettings().symmetry_primitive


def test_finished_once_finishes_each_decoded_crystal_object_once(classic, monkeypatch):
    from dataclasses import replace

    from nesf.reconstruction.symmetry import FinishedOnce

    seen = []

    def finish(crystals):
        seen.append([c.id for c in crystals])
        return [replace(c, id=c.id + "-finished") for c in crystals]

    a, b, c = classic[:3]
    once = FinishedOnce(finish)
    assert [x.id for x in once([a, b, a])] == [a.id + "-finished", b.id + "-finished", a.id + "-finished"]
    assert [x.id for x in once([b, c])] == [b.id + "-finished", c.id + "-finished"]
    assert seen == [[a.id, b.id], [c.id]]

    # a round trip with the space-group check finishes every decode once
    import nesf.api
    from nesf.api import NeSF

    model = NeSF.load("mp").with_refinement(steps=5, restarts=1, symmetry_restarts=1)
    assert model.refinement.check_symmetry and model.settings.symmetrize
    finished, plain = [], nesf.api.finish_decoded

    def counted(crystals, *args, **kwargs):
        finished.extend(id(x) for x in crystals)
        return plain(crystals, *args, **kwargs)

    monkeypatch.setattr(nesf.api, "finish_decoded", counted)
    zno = [x for x in classic if x.id in ("ZnO-wurtzite-conventional", "NaCl-rocksalt-primitive")]
    back = model.reconstruct_crystals(zno)
    assert len(back) == 2 and len(finished) == len(set(finished)) >= 2
