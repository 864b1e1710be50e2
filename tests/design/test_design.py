"""Design: heads on latent codes, prediction, optimisation, conditional sampling, evaluators, success rates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from design_helpers import random_features, volume_per_atom

from nesf.cli import main
from nesf.design import (
    ConditionalSettings,
    OptimizeSettings,
    conditional_sample,
    load_head,
    optimize_codes,
    save_head,
    success_rates,
)
from nesf.design.success import best_scores
from nesf.errors import CheckpointError, CrystalInputError


def test_success_rates_on_hand_made_paths():
    nan = np.nan
    # 3 steps x 4 starts; NaN: an invalid decode, never counted
    scores = np.array(
        [
            [0.9, 0.30, nan, 2.0],
            [0.5, 0.70, nan, 1.0],
            [0.6, 0.45, nan, 0.8],
        ]
    )
    np.testing.assert_allclose(best_scores(scores), [0.5, 0.30, np.inf, 0.8])
    rates = success_rates(scores, (0.3, 0.5, 0.8))
    assert rates == {"sr5": 0.25, "sr10": 0.5, "sr15": 0.75}  # <= counts, as CDVAE
    up = success_rates(scores, (2.0, 0.7, 0.9), minimize=False)
    assert up == {"sr5": 0.25, "sr10": 0.75, "sr15": 0.5}  # best: 0.9, 0.7, none, 2.0
    assert success_rates(np.zeros((2, 0)), (1, 2, 3)) == {"sr5": 0.0, "sr10": 0.0, "sr15": 0.0}
    with pytest.raises(ValueError, match="K steps, S starts"):
        success_rates(np.zeros(3), (1, 2, 3))


def test_seeded_split_is_the_split_command(design_setup, tmp_path):
    from nesf.data.readers import read_crystals
    from nesf.design.data import seeded_split

    assert main(["split", str(design_setup["data"]), "--out", str(tmp_path), "--fraction", "0.7", "--seed", "3"]) == 0
    ids = [c.id for c in read_crystals(design_setup["data"])]
    mask = seeded_split(len(ids), 0.7, 3)
    assert [c.id for c in read_crystals(tmp_path / "train.extxyz")] == [i for i, m in zip(ids, mask) if m]


def test_fit_save_load_predict(design_setup, tiny_head, tmp_path):
    model, head = tiny_head
    card = head.card
    assert card["target"] == "vpa" and card["n_train"] == 7 and card["model_sha256"] == model.info["sha256"]
    assert {"val_mae", "val_r2", "val_n"} <= set(card)
    path = save_head(tmp_path / "head.pt", head, model.vocab.to_dict())
    assert torch.load(path, weights_only=True)["kind"] == "property_head"
    loaded = load_head(path)
    mean, spread = model.predict(design_setup["crystals"], path)
    assert mean.shape == spread.shape == (7,) and (spread >= 0).all() and np.isfinite(mean).all()
    np.testing.assert_allclose(mean, model.predict(design_setup["crystals"], loaded)[0], rtol=1e-6)
    with pytest.raises(CheckpointError, match="not a property head"):
        load_head(design_setup["prior"])
    from nesf.registry import load_model

    assert isinstance(load_model(path), type(head))  # the one registry opens heads too
    with pytest.raises(CheckpointError, match="no shipped head"):
        model.predict(design_setup["crystals"], "no_such_target")


def test_a_target_the_crystals_do_not_carry_is_named(design_setup, tiny_head):
    from nesf.design import fit_property

    model, _ = tiny_head
    with pytest.raises(CrystalInputError, match="'band_gap'"):
        fit_property(model, design_setup["data"], "band_gap")


def test_optimisation_is_batched_and_moves_the_head(tiny_head):
    from nesf.design.workflow import design_codes

    model, head = tiny_head
    starts = model.prepare(tiny_head_crystals())
    z0 = design_codes(model, starts)
    s = OptimizeSettings(steps=30, lr=0.05, save_every=10, trust=False, recycle=False)
    result = optimize_codes(model, head, z0, s, [c.id for c in starts])
    assert result.steps == [0, 10, 20, 30]
    assert result.predicted.shape == result.valid.shape == (4, len(starts))
    assert result.codes.shape == (4, len(starts), model.latent_dim)
    assert (result.predicted[-1] < result.predicted[0]).all()  # minimised
    up = optimize_codes(
        model, head, z0, OptimizeSettings(steps=30, lr=0.05, save_every=30, goal="maximize", trust=False, recycle=False)
    )
    assert (up.predicted[-1] > up.predicted[0]).all()
    # the trust region keeps codes on the prior's principal subspace
    from nesf.design.optimize import TrustRegion

    region = TrustRegion.from_codes(z0, variance_kept=0.9)
    kept = optimize_codes(model, head, z0, OptimizeSettings(steps=10, save_every=5), region=region)
    assert torch.allclose(region.project(kept.codes[-1]), kept.codes[-1], atol=1e-4)
    assert kept.steps == [0, 5, 10] and len(kept.crystals) == 3  # decoded (and recycled) on the way
    # only allowed elements are decoded
    only = optimize_codes(
        model, head, z0, OptimizeSettings(steps=2, save_every=2, elements=("Na", "Cl")), region=region
    )
    assert {s for row in only.crystals for c in row for s in c.symbols} <= {"Na", "Cl"}
    with pytest.raises(ValueError, match="target value"):
        optimize_codes(model, head, z0, OptimizeSettings(goal="target"))


def tiny_head_crystals():
    from design_helpers import NAMES

    from nesf.data.examples import demo_crystals

    return demo_crystals(NAMES[:3])


def test_tree_export_matches_scikit_learn():
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    from nesf.design.trees import TreeEnsemble, export_trees

    x, y = random_features()
    for reg in (RandomForestRegressor(n_estimators=7, random_state=0), GradientBoostingRegressor(n_estimators=9)):
        reg.fit(x, y)
        trees = export_trees(reg)
        np.testing.assert_allclose(trees.predict(x), reg.predict(x), rtol=1e-9, atol=1e-9)
        again = TreeEnsemble.from_state(trees.to_state(), trees.combine, trees.base, trees.scale)
        np.testing.assert_allclose(again.predict(x[:5]), reg.predict(x[:5]), atol=1e-9)


def test_evaluator_is_stored_without_pickle(design_setup, tmp_path):
    from nesf.design.evaluator import evaluate_evaluator, fit_evaluator, load_evaluator, save_evaluator
    from nesf.design.features import crystal_features

    crystals = design_setup["crystals"]
    y = np.array([volume_per_atom(c) for c in crystals])
    ev = fit_evaluator(crystals, y, "rf", card={"target": "vpa"})
    x = crystal_features(crystals)
    metrics = evaluate_evaluator(ev, x, y)
    assert metrics["n"] == 7 and ev.card["heldout_mae"] == metrics["mae"]
    path = save_evaluator(tmp_path / "ev.pt", ev)
    raw = torch.load(path, weights_only=True)  # tensors and plain data only
    assert raw["kind"] == "property_evaluator" and all(isinstance(v, torch.Tensor) for v in raw["state_dict"].values())
    np.testing.assert_allclose(load_evaluator(path).predict(crystals), ev.predict(crystals))
    # an evaluator that also reads site-table rows keeps that through its file
    from nesf.design.features import feature_names

    sited = fit_evaluator(crystals, y, "rf", card={"target": "vpa"}, sites=3)
    assert sited.features(crystals).shape == (7, len(feature_names(True, 3))) == (7, x.shape[1] + 3 * 13)
    assert np.isnan(sited.features([c for c in crystals if c.n_atoms < 3])[:, -13:]).all()  # beyond its atoms
    reloaded = load_evaluator(save_evaluator(tmp_path / "sited.pt", sited))
    assert reloaded.sites == 3
    np.testing.assert_allclose(reloaded.predict(crystals), sited.predict(crystals))


def test_conditional_sampling(design_setup, tiny_head):
    model, head = tiny_head
    from nesf.generation.prior import load_prior

    prior, _ = load_prior(design_setup["prior"])
    mean, _ = head.predict(prior.sample(64, seed=5))
    target = float(np.median(mean))
    s = ConditionalSettings(target=target, tolerance=float(np.ptp(mean)) / 4 + 1e-6, n=6, batch=16)
    result = conditional_sample(model, head, s, prior=prior, seed=1)
    assert len(result.crystals) == 6 and result.n_drawn >= 6
    assert (np.abs(result.predicted - target) <= s.tolerance + 1e-5).all()
    summary = result.summary(s.tolerance, target)
    assert summary["n_delivered"] == 6 and 0 < summary["acceptance_pct"] <= 100
    # head-guided draws
    guided = conditional_sample(
        model, head, ConditionalSettings(target=target, tolerance=10.0, n=3, guidance=1.0), prior=prior
    )
    assert len(guided.crystals) == 3


def test_the_command_line_end_to_end(design_setup, tmp_path):
    model, data, prior = str(design_setup["model"]), str(design_setup["data"]), str(design_setup["prior"])
    head = tmp_path / "head.pt"
    fit = ["fit-property", "--model", model, data, "--target", "vpa", "--val", data, "--out", str(head)]
    assert main([*fit, "--members", "2", "--epochs", "3", "--quiet", "--threads", "1"]) == 0
    # an evaluator beside the head is found by name
    from nesf.design.evaluator import fit_evaluator, save_evaluator

    crystals = design_setup["crystals"]
    ev = fit_evaluator(crystals, np.array([volume_per_atom(c) for c in crystals]), "rf", card={"target": "vpa"})
    save_evaluator(tmp_path / "head.evaluator.pt", ev)
    pred = tmp_path / "pred.json"
    assert main(["predict", "--model", model, "--property", str(head), data, "--json", str(pred), "--quiet"]) == 0
    out = json.loads(pred.read_text())
    assert (
        out["n"] == 7 and len(out["predictions"]) == 7 and {"id", "prediction", "spread"} <= set(out["predictions"][0])
    )
    opt = tmp_path / "opt"
    args = ["optimize", "--model", model, "--property", str(head), "--start", data, "--out", str(opt)]
    args += ["--n", "2", "--steps", "4", "--save-every", "2", "--json", str(tmp_path / "opt.json"), "--quiet"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "opt.json").read_text())
    assert summary["n_starts"] == 2 and "evaluator_mae" in summary
    assert (opt / "paths.csv").read_text().count("\n") == 1 + 3 * 2 and (opt / "paths.png").is_file()
    sample = tmp_path / "sample"
    args = ["sample", "--model", model, "--prior", prior, "--n", "3", "--out", str(sample), "--property", str(head)]
    assert main([*args, "--target", "15", "--tolerance", "100", "--quiet"]) == 0
    s = json.loads((sample / "summary.json").read_text())
    assert s["n_delivered"] == 3 and {"within_tolerance_pct", "n_drawn", "n_unique_formulas"} <= set(s)


# ------------------------------------------------------------------ heads that read crystals
def test_site_table_orders_a_perovskite_by_coordination_and_keeps_it_under_noise():
    from nesf.data.crystal import Crystal
    from nesf.design.sites import ELEMENT_PROPERTY_NAMES, site_table

    a = 3.905
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    # SrTiO3 written with the oxygens first and Ti before Sr: the table puts Sr (12 neighbours), Ti (6), O (2)
    order = [2, 3, 4, 1, 0]
    numbers = np.array([38, 22, 8, 8, 8])
    srtio3 = Crystal(np.eye(3) * a, frac[order] * a, numbers[order], "SrTiO3")
    t = site_table(srtio3)
    assert t.numbers.tolist() == [38, 22, 8, 8, 8]
    cn = t.values[:, len(ELEMENT_PROPERTY_NAMES) + 1]
    assert cn.tolist() == [12, 6, 2, 2, 2]
    np.testing.assert_allclose(t.values[1, len(ELEMENT_PROPERTY_NAMES)], a / 2, atol=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(5):  # decoded positions are ~0.02 A off: the order does not change
        noisy = Crystal(srtio3.lattice, srtio3.cart + rng.normal(0, 0.02, (5, 3)), srtio3.numbers, "noisy")
        assert site_table(noisy).numbers.tolist() == [38, 22, 8, 8, 8]
    with pytest.raises(ValueError, match="no atoms"):
        site_table(Crystal(np.eye(3) * 4, np.zeros((0, 3)), [], "empty"))


def test_crystal_head_fits_saves_loads_and_predicts(design_setup, tmp_path):
    from nesf.api import NeSF
    from nesf.design.crystal_head import CrystalHead, CrystalHeadConfig, save_crystal_head
    from nesf.design.workflow import as_head, fit_property, load_any_head

    model = NeSF.load(design_setup["model"])
    crystals = model.prepare(design_setup["crystals"])
    cfg = CrystalHeadConfig(max_sites=max(c.n_atoms for c in crystals), members=3, hidden=16, epochs=300)
    head = fit_property(model, crystals, "vpa", cfg=cfg, reads="crystal", train_source=design_setup["data"])
    assert isinstance(head, CrystalHead) and head.card["reads"].startswith("crystal")
    truth = np.array([volume_per_atom(c) for c in crystals])
    mean, spread = head.predict_crystals(crystals)
    # the volume per atom is one of its inputs: 300 epochs fit 7 crystals far better than their mean does
    assert np.abs(mean - truth).mean() < 0.5 * np.abs(truth - truth.mean()).mean()
    assert (spread > 0).all()
    path = save_crystal_head(tmp_path / "crystal.pt", head)
    assert torch.load(path, weights_only=True)["kind"] == "crystal_property_head"
    loaded = load_any_head(path)
    np.testing.assert_allclose(model.predict(design_setup["crystals"], path)[0], mean, rtol=1e-5)
    np.testing.assert_allclose(loaded.predict_crystals(crystals)[0], mean, rtol=1e-5)
    from nesf.registry import load_model

    assert isinstance(load_model(path), CrystalHead)
    with pytest.raises(CheckpointError, match="cannot steer"):
        as_head(path, model)  # optimisation and conditional sampling need a latent head
    big = crystals[0].to_pymatgen() * (2, 2, 2)
    from nesf.data.crystal import Crystal

    with pytest.raises(ValueError, match="at most"):
        head.predict_crystals([Crystal.from_pymatgen(big, "big")])


def test_predict_command_with_a_crystal_head(design_setup, tmp_path):
    model, data = str(design_setup["model"]), str(design_setup["data"])
    head = tmp_path / "crystal.pt"
    fit = ["fit-property", "--model", model, data, "--target", "vpa", "--out", str(head), "--reads", "crystal"]
    assert main([*fit, "--members", "2", "--epochs", "3", "--quiet", "--threads", "1"]) == 0
    pred = tmp_path / "pred.json"
    assert main(["predict", "--model", model, "--property", str(head), data, "--json", str(pred), "--quiet"]) == 0
    out = json.loads(pred.read_text())
    assert out["reads"] == "crystal" and out["n"] == 7 and np.isfinite(out["mae"])
    args = ["optimize", "--model", model, "--property", str(head), "--start", data, "--out", str(tmp_path / "o")]
    assert main([*args, "--n", "1", "--steps", "2", "--save-every", "1", "--quiet"]) != 0  # cannot steer codes
