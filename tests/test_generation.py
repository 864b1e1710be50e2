"""Generation: VAE training from the CLI, a latent prior, sampling, and the field's generation metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nesf.api import NeSF
from nesf.cli import main
from nesf.data.crystal import Crystal
from nesf.data.examples import demo_crystals
from nesf.data.readers import read_crystals
from nesf.errors import CheckpointError
from nesf.generation.prior import MIN_UPDATES, PriorConfig, default_epochs, fit_prior, load_prior
from nesf.io.writers import write_extxyz
from nesf.metrics.generation import composition_valid, generation_metrics, structure_valid

CUBIC = ("NaCl-rocksalt", "CsCl", "Cu-fcc", "MgO-rocksalt", "Fe-bcc", "SrTiO3-perovskite")


@pytest.fixture(scope="module")
def vae_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("vae")
    data = root / "train.extxyz"
    write_extxyz(data, demo_crystals(CUBIC))
    args = ["train", "--train", str(data), "--val", str(data), "--out", str(root / "run"), "--epochs", "2"]
    args += ["--vae", "--kl-weight", "0.01", "--batch-size", "4", "--threads", "1", "--quiet", "--probe", "0"]
    assert main(args) == 0
    return root / "run" / "last.pt", data


def test_train_vae_from_the_cli(vae_model):
    ckpt, _ = vae_model
    model = NeSF.load(ckpt)
    assert model.model.cfg.vae
    assert torch.load(ckpt, weights_only=True)["train_config"]["w_kl"] == 0.01
    # a VAE samples from N(0, I) without a fitted prior
    crystals = model.sample_crystals(3, seed=1)
    assert len(crystals) == 3 and all(c.id.startswith("sample-") for c in crystals)


def test_fit_prior_then_sample_from_the_cli(vae_model, tmp_path, capsys):
    ckpt, data = vae_model
    prior = tmp_path / "prior.pt"
    assert main(["fit-prior", "--model", str(ckpt), str(data), "--out", str(prior), "--epochs", "5", "--quiet"]) == 0
    loaded, ck = load_prior(prior)
    assert ck["model_card"]["n_crystals"] == len(CUBIC) and len(ck["sha256"]) == 64
    out = tmp_path / "samples"
    args = ["sample", "--model", str(ckpt), "--prior", str(prior), "--n", "5", "--out", str(out), "--seed", "3"]
    assert main([*args, "--quiet", "--draws-per-crystal", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_requested"] == 5 and summary["n_decoded"] + summary["n_failed"] == 5
    assert 5 <= summary["n_codes_drawn"] <= 10  # at most 2 codes per crystal
    assert len(list(out.glob("*.cif"))) == summary["n_decoded"]
    assert "failed" in capsys.readouterr().out
    # the same seed gives the same codes
    assert torch.equal(loaded.sample(4, seed=9), loaded.sample(4, seed=9))
    assert ck["model_card"]["codes"] == "encoder"


def test_fit_prior_can_leave_out_crystals_that_are_not_charge_balanced(vae_model, tmp_path, capsys):
    """--charge-balanced fits the prior to the crystals SMACT balances and counts the rest on its card."""
    ckpt, _ = vae_model
    salt = demo_crystals(["NaCl-rocksalt"])[0]
    # rocksalt SrCl: Sr2+ and Cl- cannot balance one to one (SMACT), the six CUBIC crystals can
    srcl = Crystal(lattice=salt.lattice, cart=salt.cart, numbers=np.where(salt.numbers == 11, 38, salt.numbers))
    data = tmp_path / "mixed.extxyz"
    write_extxyz(data, [*demo_crystals(CUBIC), srcl])
    cards = {}
    for flag in ([], ["--charge-balanced"]):
        prior = tmp_path / f"prior{len(flag)}.pt"
        args = ["fit-prior", "--model", str(ckpt), str(data), "--out", str(prior), "--epochs", "1", "--quiet"]
        assert main([*args, *flag]) == 0
        cards[bool(flag)] = load_prior(prior)[1]["model_card"]
    assert cards[False]["n_crystals"] == 7 and cards[False]["left_out_not_charge_balanced"] == 0
    assert cards[True]["n_crystals"] == 6 and cards[True]["left_out_not_charge_balanced"] == 1
    assert cards[True]["charge_balanced_only"] and not cards[False]["charge_balanced_only"]
    assert "1 not charge-balanced left out" in capsys.readouterr().out


def test_samples_take_their_number_of_elements_from_the_prior_or_the_user(vae_model, tmp_path):
    """fit-prior records the training crystals' element counts; sample draws each crystal's count."""
    from nesf.generation.elements import n_elements

    ckpt, data = vae_model
    prior = tmp_path / "prior.pt"
    assert main(["fit-prior", "--model", str(ckpt), str(data), "--out", str(prior), "--epochs", "2", "--quiet"]) == 0
    loaded, _ = load_prior(prior)
    # CUBIC: Cu and Fe hold one element, NaCl, CsCl and MgO two, SrTiO3 three
    assert loaded.cfg.element_counts == pytest.approx([2 / 6, 3 / 6, 1 / 6])
    base = ["sample", "--model", str(ckpt), "--prior", str(prior), "--n", "6", "--seed", "4", "--quiet"]
    base += ["--draws-per-crystal", "4"]
    for value in ("1", "auto"):
        out = tmp_path / f"n{value}"
        chunks = ["--chunk-size", "4"] if value == "auto" else []  # two chunks, each drawing its own codes
        assert main([*base, "--out", str(out), "--n-elements", value, *chunks]) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["n_elements"] == value and summary["n_codes_drawn"] >= 6
        crystals = read_crystals(out / "all.extxyz")
        matched = len(crystals) - summary["n_elements_unmatched"]
        if value == "1":
            assert sum(n_elements(c) == 1 for c in crystals) >= matched
    # the API draws the same crystals as the command line (same chunks, same seeds)
    api = NeSF.load(ckpt).sample_crystals(6, seed=4, prior=prior, n_elements=1, max_draws=4)
    cli = {c.id: c for c in read_crystals(tmp_path / "n1" / "all.extxyz")}
    assert [c.id for c in api if c.n_atoms] == list(cli)
    assert all(np.array_equal(c.numbers, cli[c.id].numbers) for c in api if c.n_atoms)
    # "any": one code per crystal, as before
    out = tmp_path / "any"
    assert main([*base, "--out", str(out), "--n-elements", "any"]) == 0
    assert json.loads((out / "summary.json").read_text())["n_codes_drawn"] == 6


def test_samples_take_their_number_of_atoms_from_a_prior_that_records_the_table(vae_model, tmp_path):
    """fit-prior --atom-counts records (elements, atoms) of the training crystals; sample draws both."""
    from nesf.generation.elements import makeup

    ckpt, data = vae_model
    prior = tmp_path / "prior.pt"
    args = ["fit-prior", "--model", str(ckpt), str(data), "--out", str(prior), "--epochs", "2", "--quiet"]
    assert main([*args, "--atom-counts"]) == 0
    loaded, _ = load_prior(prior)
    model = NeSF.load(ckpt)
    expected = {makeup(c) for c in model.prepare(read_crystals(data))}
    assert {(int(k), int(a)) for k, a, _ in loaded.cfg.makeup_counts} == expected
    assert sum(r[2] for r in loaded.cfg.makeup_counts) == pytest.approx(1.0)
    base = ["sample", "--model", str(ckpt), "--prior", str(prior), "--n", "4", "--seed", "2", "--quiet"]
    base += ["--draws-per-crystal", "3"]
    out = tmp_path / "a2"
    assert main([*base, "--out", str(out), "--n-atoms", "2", "--n-elements", "any"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_atoms"] == "2" and 4 <= summary["n_codes_drawn"] <= 12
    crystals = read_crystals(out / "all.extxyz")
    assert sum(c.n_atoms == 2 for c in crystals) >= len(crystals) - summary["n_elements_unmatched"]
    api = model.sample_crystals(4, seed=2, prior=prior, n_elements="any", n_atoms=2, max_draws=3)
    assert [c.numbers.tolist() for c in api if c.n_atoms] == [c.numbers.tolist() for c in crystals]
    # the table is drawn by default; a prior without one samples as before
    out = tmp_path / "auto"
    assert main([*base, "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["n_codes_drawn"] >= 4


def test_fit_prior_on_refined_codes_models_other_codes(vae_model, tmp_path):
    ckpt, data = vae_model
    paths = {kind: tmp_path / f"{kind}.pt" for kind in ("encoder", "refined")}
    for kind, path in paths.items():
        args = ["fit-prior", "--model", str(ckpt), str(data), "--out", str(path), "--epochs", "1", "--quiet"]
        assert main([*args, "--codes", kind]) == 0
    (enc, enc_ck), (ref, ref_ck) = (load_prior(p) for p in paths.values())
    assert ref_ck["model_card"]["codes"] == "refined"
    model = NeSF.load(ckpt)
    crystals = model.prepare(read_crystals(data))
    expected = model.with_refinement(restarts=0).encode_crystals(crystals).mean(0)
    assert torch.allclose(ref.mean, expected, atol=1e-5)  # the prior's centre is that of the refined codes
    assert not torch.allclose(ref.mean, enc.mean, atol=1e-4)


def test_a_prior_of_another_model_or_a_missing_prior_is_refused(vae_model, tmp_path):
    from nesf.training.loop import Trainer
    from small_model import small_configs

    ckpt, data = vae_model
    m, t = small_configs()
    crystals = demo_crystals(CUBIC[:3])
    Trainer(crystals, crystals, tmp_path / "plain", m, t, seed=0, progress=False).run(epochs=1)
    plain = NeSF.load(tmp_path / "plain" / "last.pt")
    with pytest.raises(CheckpointError, match="no latent prior"):
        plain.sample(2)
    prior = tmp_path / "prior.pt"
    assert main(["fit-prior", "--model", str(ckpt), str(data), "--out", str(prior), "--epochs", "2", "--quiet"]) == 0
    with pytest.raises(CheckpointError, match="another model"):
        plain.sample(2, prior=prior)
    # the same architecture and vocabulary, other weights: refused by the checkpoint's SHA-256
    ck = torch.load(ckpt, weights_only=True)
    ck["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    from nesf.training.checkpoint import save_checkpoint

    ck.pop("sha256")
    save_checkpoint(tmp_path / "other.pt", ck)
    with pytest.raises(CheckpointError, match="another version"):
        NeSF.load(tmp_path / "other.pt").sample(2, prior=prior)
    assert len(NeSF.load(ckpt).sample_crystals(2, prior=prior)) == 2


def test_flow_matching_prior_learns_a_shifted_distribution():
    rng = np.random.default_rng(0)
    data = torch.tensor(rng.normal(3.0, 0.5, size=(512, 4)), dtype=torch.float32)
    prior, record = fit_prior(data, PriorConfig(latent_dim=4, hidden=64, layers=2, epochs=60), seed=0, progress=False)
    samples = prior.sample(2000, seed=1)
    assert torch.allclose(samples.mean(0), torch.full((4,), 3.0), atol=0.1)
    assert torch.allclose(samples.std(0), torch.full((4,), 0.5), atol=0.1)
    assert record["epochs"] == 60


def test_default_epochs_give_small_code_sets_enough_updates():
    assert default_epochs(1829) == 7500  # 8 batches of 256 per epoch
    assert default_epochs(67_613) == 400  # the floor: 265 batches per epoch, 106k updates
    for n in (10, 1000, 3408, 20_000):
        epochs = default_epochs(n)
        assert epochs >= 400 and epochs * -(-n // 256) >= MIN_UPDATES
        assert (epochs - 1) * -(-n // 256) < MIN_UPDATES or epochs == 400


def test_the_prior_models_the_principal_subspace_of_the_codes():
    """Codes on a 3-dimensional subspace of 24 numbers: samples stay on it (a flow over all directions drifts off)."""
    rng = np.random.default_rng(1)
    basis, _ = np.linalg.qr(rng.normal(size=(24, 3)))
    codes = rng.normal(size=(600, 3)) * [3.0, 1.0, 0.5] @ basis.T + 2.0
    codes = torch.tensor(codes, dtype=torch.float32)
    cfg = PriorConfig(latent_dim=24, hidden=64, layers=2, epochs=40)
    prior, record = fit_prior(codes, cfg, seed=0, progress=False)
    assert record["components"] == 3 and prior.cfg.components == 3
    samples = prior.sample(500, seed=2).double().numpy() - 2.0
    off = samples - samples @ basis @ basis.T
    assert np.abs(off).max() < 1e-4
    assert np.allclose(samples.std(0), (codes.numpy() - 2.0).std(0), atol=0.25)
    # every direction on request
    full, record = fit_prior(codes, PriorConfig(latent_dim=24, hidden=64, layers=2, epochs=2, variance_kept=1.0))
    assert record["components"] == 24
    with pytest.raises(ValueError, match="variance_kept"):
        fit_prior(codes, PriorConfig(latent_dim=24, variance_kept=0.0))


def hand_made():
    lattice = np.eye(3) * 4.0
    close = Crystal(lattice, [[0, 0, 0], [0.3, 0, 0]], [11, 17], "close")
    unbalanced = Crystal(lattice, [[0, 0, 0], [2, 2, 2], [0, 2, 2]], [11, 17, 17], "NaCl2")
    return close, unbalanced


def test_validity_on_hand_made_cases():
    close, unbalanced = hand_made()
    perovskite = demo_crystals(("SrTiO3-perovskite",))[0]
    assert structure_valid(perovskite) and composition_valid(perovskite)
    assert not structure_valid(close)
    assert not composition_valid(unbalanced)
    assert composition_valid(demo_crystals(("Cu-fcc",))[0])  # a single element
    alloy = Crystal(np.eye(3) * 3.0, [[0, 0, 0], [1.5, 1.5, 1.5]], [29, 30], "CuZn")
    assert composition_valid(alloy)  # all metals
    # an element without oxidation states in SMACT (helium) cannot be balanced: invalid, not an error
    helium_oxide = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [2, 2, 2]], [2, 8], "HeO")
    assert not composition_valid(helium_oxide)


def test_generation_metrics_keys_and_a_set_against_itself():
    crystals = demo_crystals(CUBIC)
    m = generation_metrics(crystals, crystals, "perov_5", progress=False)
    for key in (
        "n_generated",
        "n_reference",
        "struct_validity_pct",
        "comp_validity_pct",
        "cov_recall_pct",
        "cov_precision_pct",
        "density_emd",
        "n_elements_emd",
    ):
        assert key in m
    assert m["cov_recall_pct"] == 100.0 and m["cov_precision_pct"] == 100.0
    assert m["density_emd"] == pytest.approx(0.0) and m["struct_validity_pct"] == 100.0
    close, unbalanced = hand_made()
    m2 = generation_metrics([*crystals[:2], close, unbalanced], crystals, "perov_5", progress=False)
    assert m2["struct_validity_pct"] == 75.0 and m2["comp_validity_pct"] == 75.0
    assert m2["cov_recall_pct"] < 100.0
    carbon = [Crystal(np.eye(3) * 3.57, np.array([[0, 0, 0], [0.25, 0.25, 0.25]]) * 3.57, [6, 6], "C")]
    m3 = generation_metrics(carbon, carbon, "carbon_24", progress=False)
    assert m3["comp_validity_pct"] is None and m3["n_elements_emd"] is None


def test_generation_metrics_cli(tmp_path):
    data = tmp_path / "set.extxyz"
    write_extxyz(data, demo_crystals(CUBIC[:3]))
    out = tmp_path / "m.json"
    args = ["generation-metrics", str(data), str(data), "--preset", "perov_5", "--json", str(out), "--quiet"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["n_generated"] == 3 and result["cov_recall_pct"] == 100.0
    assert read_crystals(data)


def test_generation_metrics_cli_scores_samples_whose_atoms_overlap(tmp_path):
    """A decode may put two atoms on one spot: structural validity counts it, reading must not refuse it."""
    from nesf.data.crystal import LIMITS
    from nesf.errors import CrystalInputError

    good = demo_crystals(CUBIC[:3])
    collapsed = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.05, 0, 0], [2, 2, 2]], [11, 17, 17], "collapsed")
    generated = tmp_path / "gen.extxyz"
    write_extxyz(generated, [*good, collapsed])
    reference = tmp_path / "ref.extxyz"
    write_extxyz(reference, good)
    with pytest.raises(CrystalInputError, match="overlapping atoms"):
        read_crystals(generated)  # anywhere else such a file is refused
    out = tmp_path / "m.json"
    args = ["generation-metrics", str(generated), str(reference), "--preset", "perov_5", "--json", str(out), "--quiet"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["n_generated"] == 4 and result["struct_validity_pct"] == 75.0
    assert LIMITS.min_distance == 0.1  # restored
    with pytest.raises(CrystalInputError):
        read_crystals(generated)


def test_generation_metrics_cli_still_checks_the_reference(tmp_path, capsys):
    collapsed = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.05, 0, 0], [2, 2, 2]], [11, 17, 17], "collapsed")
    good = tmp_path / "good.extxyz"
    write_extxyz(good, demo_crystals(CUBIC[:2]))
    bad = tmp_path / "bad.extxyz"
    write_extxyz(bad, [collapsed])
    assert main(["generation-metrics", str(good), str(bad), "--quiet"]) == 2
    assert "overlapping atoms" in capsys.readouterr().err


def test_coverage_takes_the_nearest_crystal_by_structure_and_by_composition_separately():
    """The published definition: the structure-nearest and composition-nearest crystals may differ."""
    from nesf.metrics.generation import Fingerprints, _magpie_scaler, coverage, fingerprints

    nacl, mgo = demo_crystals(("NaCl-rocksalt", "MgO-rocksalt"))
    cscl_type = Crystal(np.eye(3) * 3.3, [[0, 0, 0], [1.65, 1.65, 1.65]], [11, 17], "NaCl-CsCl-type")
    ref = fingerprints([nacl], progress=False)
    gen = fingerprints([mgo, cscl_type], progress=False)
    mean, std = _magpie_scaler()
    assert mean.shape == std.shape == (132,)
    # preconditions: neither generated crystal is within both cut-offs on its own
    assert np.linalg.norm(gen.struct[0] - ref.struct[0]) < 1e-6  # same rocksalt environment
    assert np.linalg.norm((gen.comp[0] - ref.comp[0]) / std) > 4.0  # another composition
    assert np.linalg.norm(gen.struct[1] - ref.struct[0]) > 0.2  # another structure
    assert np.linalg.norm(np.nan_to_num((gen.comp[1] - ref.comp[0]) / std)) < 1e-6  # the same composition
    recall, precision = coverage(gen, ref, 0.2, 4.0)
    assert recall == 100.0
    assert precision == 0.0  # each generated crystal is near the reference in one respect only
    # a generated crystal without fingerprints counts in the denominator of COV-P
    with_failed = Fingerprints(
        np.vstack([ref.struct, np.full((1, 61), np.nan)]), np.vstack([ref.comp, np.full((1, 132), np.nan)])
    )
    assert coverage(with_failed, ref, 0.2, 4.0) == (100.0, 50.0)


def test_fingerprints_in_two_processes_are_the_same_as_in_one():
    from nesf.metrics.generation import fingerprints

    crystals = demo_crystals(CUBIC)
    one, two = fingerprints(crystals, progress=False), fingerprints(crystals, progress=False, jobs=2)
    assert np.array_equal(one.struct, two.struct, equal_nan=True)
    assert np.array_equal(one.comp, two.comp, equal_nan=True)


def test_a_prior_samples_at_its_recorded_temperature_unless_told_otherwise():
    import torch

    from nesf.generation.prior import PriorConfig, fit_prior

    z = torch.randn(64, 6, generator=torch.Generator().manual_seed(0))
    prior, _ = fit_prior(z, PriorConfig(latent_dim=6, epochs=2, hidden=16, layers=1, temperature=0.5), seed=0)
    assert prior.cfg.temperature == 0.5
    assert torch.equal(prior.sample(5, seed=1), prior.sample(5, seed=1, temperature=0.5))
    assert not torch.equal(prior.sample(5, seed=1), prior.sample(5, seed=1, temperature=1.0))


def test_fingerprint_cache_reuses_rows_resumes_and_ignores_damaged_shards(tmp_path, monkeypatch):
    """Cached rows equal computed ones; only new crystals are fingerprinted; a bad shard is skipped."""
    import nesf.metrics.generation as gen
    from nesf.metrics.fingerprint_cache import FingerprintCache, crystal_key

    crystals = demo_crystals(CUBIC[:4])
    plain = gen.fingerprints(crystals, progress=False)
    cache_dir = tmp_path / "fp"
    first = gen.fingerprints(crystals[:3], progress=False, cache=cache_dir)
    np.testing.assert_array_equal(first.struct, plain.struct[:3])
    assert len(FingerprintCache(cache_dir)) == 3
    calls = []
    real = gen._fingerprint
    monkeypatch.setattr(gen, "_fingerprint", lambda c: calls.append(c.id) or real(c))
    again = gen.fingerprints(crystals, progress=False, cache=cache_dir)
    assert calls == [crystals[3].id]  # the three cached crystals are read, not recomputed
    np.testing.assert_array_equal(again.struct, plain.struct)
    np.testing.assert_array_equal(again.comp, plain.comp)
    # the same crystal moved by a whole lattice vector has the same key; another crystal does not
    moved = Crystal(crystals[0].lattice, crystals[0].cart + crystals[0].lattice[0], crystals[0].numbers, "moved")
    assert crystal_key(moved) == crystal_key(crystals[0]) != crystal_key(crystals[1])
    shard = sorted(FingerprintCache(cache_dir).folder.glob("shard-*.npz"))[0]  # the first: three rows
    shard.write_bytes(b"not an npz")  # a damaged shard: its rows are computed again
    assert len(FingerprintCache(cache_dir)) == 1
    out = tmp_path / "m.json"
    data = tmp_path / "set.extxyz"
    write_extxyz(data, crystals)
    args = ["generation-metrics", str(data), str(data), "--json", str(out), "--quiet", "--jobs", "1"]
    assert main([*args, "--fingerprint-cache", str(cache_dir)]) == 0
    assert len(FingerprintCache(cache_dir)) == 4
    assert json.loads(out.read_text())["cov_recall_pct"] == 100.0
