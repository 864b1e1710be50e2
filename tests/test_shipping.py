"""Learning-rate schedules, fine-tuning (--init), data splits, exported models and the demo."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from nesf.api import NeSF
from nesf.cli import main
from nesf.data.examples import demo_crystals
from nesf.data.readers import read_crystals
from nesf.io.writers import write_extxyz
from nesf.models.config import ModelConfig, TrainConfig, config_from_dict, get_preset
from nesf.training.checkpoint import load_checkpoint
from nesf.training.loop import Trainer, make_vocab
from small_model import small_configs


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, classic):
    out = tmp_path_factory.mktemp("pre")
    small = [c for c in classic if c.n_atoms <= 12]
    m, t = small_configs()
    Trainer(small[:8], small[5:8], out, m, t, seed=0, progress=False).run(epochs=1)
    return out / "last.pt", small


def test_cosine_schedule_runs_from_lr_to_floor():
    cfg = TrainConfig(lr=1e-3, lr_schedule="cosine", lr_min_factor=0.1)
    assert cfg.learning_rate(0.0, 0) == pytest.approx(1e-3)
    assert cfg.learning_rate(0.5, 3) == pytest.approx(1e-4 + 0.5 * 9e-4)
    assert cfg.learning_rate(1.0, 9) == pytest.approx(1e-4)
    assert cfg.learning_rate(2.0, 9) == pytest.approx(1e-4)  # clamped past the end
    rates = [cfg.learning_rate(p / 10, 0) for p in range(11)]
    assert all(a > b for a, b in zip(rates, rates[1:]))


def test_step_schedule_is_the_published_one():
    cfg = TrainConfig(lr=1e-3, lr_schedule="step", lr_step_epochs=640, lr_gamma=0.5)
    assert cfg.learning_rate(0.9, 639) == pytest.approx(1e-3)
    assert cfg.learning_rate(0.0, 640) == pytest.approx(5e-4)
    assert cfg.learning_rate(0.0, 1300) == pytest.approx(2.5e-4)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="linear")


def test_default_preset_decays_over_its_epochs():
    _, t = get_preset("default")
    assert t.lr_schedule == "cosine" and t.epochs > 0


def test_cosine_training_ends_at_the_floor(tmp_path, classic):
    small = [c for c in classic if c.n_atoms <= 12]
    m, t = small_configs()
    t = replace(t, lr_schedule="cosine", lr_min_factor=0.05)
    trainer = Trainer(small[:8], small[6:8], tmp_path, m, t, seed=0, progress=False)
    trainer.run(epochs=2)
    steps = trainer.global_step
    lrs = [row["lr"] for row in trainer.history]
    assert lrs[0] < t.lr  # decayed within the first epoch
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(t.learning_rate((steps - 1) / steps, 1), rel=1e-9)


def test_vocab_all_accepts_unseen_elements(classic):
    vocab = make_vocab(classic[:2], "all")
    assert len(vocab) >= 94 and 92 in vocab.numbers  # uranium, in no example crystal
    with pytest.raises(ValueError, match="vocabulary"):
        make_vocab(classic[:2], "everything")


def test_init_copies_weights_and_keeps_a_covering_vocab(pretrained, tmp_path):
    ckpt, small = pretrained
    src = load_checkpoint(ckpt)
    m, t = small_configs()
    m_other = replace(m, latent_dim=8)  # ignored: the initial model's architecture is used
    subset = [c for c in small if set(c.numbers) <= set(src["vocab"]["numbers"])][:4]
    trainer = Trainer(subset[:3], subset[2:3], tmp_path, m_other, t, seed=1, progress=False, init=ckpt)
    assert trainer.model_cfg.latent_dim == m.latent_dim
    assert list(trainer.vocab.numbers) == list(src["vocab"]["numbers"])
    own = trainer.model.state_dict()
    for key, value in src["state_dict"].items():
        if key not in ("lattice_mean", "lattice_std"):
            assert torch.equal(own[key], value), key
    assert trainer.init_from["loaded"] == len(own) - 2


def test_init_with_a_larger_vocab_remaps_species_layers(pretrained, tmp_path):
    ckpt, small = pretrained
    src = load_checkpoint(ckpt)
    m, t = small_configs()
    trainer = Trainer(small[:3], small[2:3], tmp_path, m, t, seed=1, progress=False, init=ckpt, vocab="all")
    assert len(trainer.vocab) >= 94
    assert trainer.init_from["loaded"] == trainer.init_from["of"] - 2  # all but the lattice statistics
    old = src["vocab"]["numbers"]
    new_idx = [trainer.vocab.numbers.index(z) for z in old]
    own = trainer.model.state_dict()
    assert torch.equal(own["species_decoder.out.weight"][new_idx], src["state_dict"]["species_decoder.out.weight"])
    assert torch.equal(own["encoder.spec_mlp.0.weight"][:, new_idx], src["state_dict"]["encoder.spec_mlp.0.weight"])
    unseen = trainer.vocab.numbers.index(92)
    assert own["species_decoder.out.bias"][unseen] < src["state_dict"]["species_decoder.out.bias"].min()
    # the remapped model predicts the same species as the original on the old elements' crystals
    # the encoder's own codes: a refinement's cross-entropy runs over the larger vocabulary
    before = NeSF.load(ckpt).with_refinement(steps=0)
    after = NeSF.from_checkpoint(trainer.payload(with_training=False)).with_refinement(steps=0)
    for name in ("lattice_mean", "lattice_std"):  # the new run's lattice statistics differ; align them
        getattr(after.model, name).copy_(src["state_dict"][name])
    before.model.unseen_species = after.model.unseen_species = None  # the layers alone, not the element filter
    crystals = before.prepare(small[:2])
    z = before.encode_crystals(crystals)
    assert torch.allclose(z, after.encode_crystals(crystals), atol=1e-5)
    lat = torch.as_tensor(np.stack([c.lattice for c in crystals]), dtype=torch.float32)
    q = torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(0)) @ lat
    sym_before = np.array(before.vocab.numbers)[before.model.bind(z, lat).species_labels(q).numpy()]
    sym_after = np.array(after.vocab.numbers)[after.model.bind(z, lat).species_labels(q).numpy()]
    assert np.array_equal(sym_before, sym_after)


def test_split_is_seeded_and_complete(tmp_path, classic):
    data = tmp_path / "all.extxyz"
    write_extxyz(data, classic)
    for run in ("a", "b"):
        assert main(["split", str(data), "--out", str(tmp_path / run), "--fraction", "0.8", "--seed", "3"]) == 0
    a_train = [c.id for c in read_crystals(tmp_path / "a" / "train.extxyz")]
    a_held = [c.id for c in read_crystals(tmp_path / "a" / "heldout.extxyz")]
    assert a_train == [c.id for c in read_crystals(tmp_path / "b" / "train.extxyz")]
    assert sorted(a_train + a_held) == sorted(c.id for c in classic)
    assert len(a_held) == round(0.2 * len(classic)) and not set(a_train) & set(a_held)
    assert main(["split", str(data), "--out", str(tmp_path / "c"), "--fraction", "1.5"]) == 2


def test_train_exclude_drops_ids(tmp_path, classic, capsys):
    small = [c for c in classic if c.n_atoms <= 12]
    train, val = tmp_path / "train.extxyz", tmp_path / "val.extxyz"
    write_extxyz(train, small[:6])
    write_extxyz(val, small[4:6])
    code = main(
        [
            "train",
            "--train",
            str(train),
            "--val",
            str(val),
            "--exclude",
            str(val),
            "--exclude",
            str(train),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--quiet",
        ]
    )
    assert code == 2  # everything excluded: a clear error, no traceback
    assert "at least one training" in capsys.readouterr().err


def test_export_strips_training_state_and_keeps_the_card(pretrained, tmp_path):
    ckpt, small = pretrained
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"summary": "tiny test model", "data": "classic"}))
    out = tmp_path / "tiny.pt"
    assert main(["export", str(ckpt), "--out", str(out), "--card", str(card)]) == 0
    ck = load_checkpoint(out)
    assert "training" not in ck and "history" not in ck
    assert out.stat().st_size < ckpt.stat().st_size
    model = NeSF.load(out)
    assert model.card["summary"] == "tiny test model" and model.card["training_steps"] > 0
    full = NeSF.load(ckpt)
    crystals = model.prepare(small[5:7])
    # refined codes (no restarts: each would decode) from the same weights are the same codes
    assert torch.equal(
        model.with_refinement(restarts=0).encode_crystals(crystals),
        full.with_refinement(restarts=0).encode_crystals(crystals),
    )
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["export", str(ckpt), "--out", str(tmp_path / "x.pt"), "--card", str(bad)]) == 2


def test_demo_crystals_are_conventional_and_small():
    crystals = demo_crystals()
    assert len(crystals) >= 10
    for c in crystals:
        assert c.lattice_params[:3].max() <= 6.0, c.id
        assert abs(c.volume - abs(torch.det(torch.tensor(c.lattice)).item())) < 1e-6
    nacl = next(c for c in crystals if c.id == "NaCl-rocksalt")
    assert nacl.n_atoms == 8 and math.isclose(nacl.lattice_params[0], 5.64)
    with pytest.raises(ValueError, match="unknown demo crystal"):
        demo_crystals(("Unobtainium",))


def test_named_minerals_have_their_formula_and_no_overlapping_atoms():
    """A wrong Wyckoff origin changes a crystal's stoichiometry or stacks atoms; both would show here."""
    from pymatgen.core import Composition

    from nesf.data.examples import MINERAL_NAMES

    crystals = demo_crystals(MINERAL_NAMES)
    assert len(crystals) == len(set(MINERAL_NAMES)) >= 50
    for c in crystals:
        s = c.to_pymatgen()
        name = c.id.split("-")[0]
        assert Composition(name).reduced_formula == s.composition.reduced_formula, c.id
        shortest = min(s.lattice.abc) if len(s) == 1 else (s.distance_matrix + 99 * np.eye(len(s))).min()
        assert shortest > 0.9, c.id  # the O-H bond of brucite is the shortest, 0.92 A


def test_demo_writes_cifs_metrics_and_png(pretrained, tmp_path, capsys):
    ckpt, _ = pretrained
    out = tmp_path / "demo"
    # the encoder's own codes (the docs' examples run the demo with checked codes and the shipped mp)
    assert main(["demo", "--model", str(ckpt), "--out", str(out), "--plot", "2", "--refine-steps", "0", "--quiet"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    n = result["n_structures"]
    assert n == len(result["crystals"]) and n > 0
    assert len(list((out / "inputs").glob("*.cif"))) == n
    assert len(list((out / "reconstructions").glob("*.cif"))) == n
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "StructureMatcher" in capsys.readouterr().out
    for row in result["crystals"]:  # largest move after the best overlay, and as written
        if row["atoms_out"]:
            assert 0.0 <= row["max_move"] and 0.0 <= row["max_move_pinned"]
        else:
            assert row["max_move"] is None and row["max_move_pinned"] is None


def test_decoding_never_predicts_elements_absent_from_training(pretrained, tmp_path):
    ckpt, small = pretrained
    m, t = small_configs()
    trainer = Trainer(small[:3], small[2:3], tmp_path, m, t, seed=1, progress=False, init=ckpt, vocab="all")
    trainer.run(epochs=1)
    payload = load_checkpoint(tmp_path / "last.pt")
    seen = set(payload["trained_numbers"])
    # this run's elements and those its initial model was trained on
    assert seen == {int(z) for c in small[:8] for z in c.numbers}
    model = NeSF.load(tmp_path / "last.pt")
    model.model.species_decoder.out.bias.data[model.vocab.numbers.index(92)] = 1e6  # make uranium win everywhere
    crystals = model.prepare(small[3:4])
    z = model.encode_crystals(crystals)
    lat = torch.as_tensor(crystals[0].lattice, dtype=torch.float32).unsqueeze(0)
    q = torch.rand(1, 64, 3, generator=torch.Generator().manual_seed(0)) @ lat
    labels = model.model.bind(z, lat).species_labels(q)
    assert set(np.asarray(model.vocab.numbers)[labels.numpy().ravel()].tolist()) <= seen


def test_fine_tuned_model_keeps_its_initial_models_elements_and_domain_through_resume(pretrained, tmp_path):
    from nesf.data.domain import Domain

    ckpt, small = pretrained
    src = load_checkpoint(ckpt)
    m, t = small_configs()
    train = small[:2]
    own = {int(z) for c in train for z in c.numbers}
    inherited = set(src["trained_numbers"]) - own
    assert inherited  # the initial model knows elements this training set lacks
    val = [c for c in small[:8] if {int(z) for z in c.numbers} & inherited][:2]
    trainer = Trainer(train, val, tmp_path, m, t, seed=1, progress=False, init=ckpt, vocab="all")
    assert set(trainer.trained_numbers) == own | set(src["trained_numbers"])
    assert len(trainer.val_data) == len(val)  # crystals of inherited elements still validate
    trainer.run(epochs=1)
    payload = load_checkpoint(tmp_path / "last.pt")
    domain = Domain.from_dict(payload["domain"])
    assert domain.n_crystals == len(train) + src["domain"]["n_crystals"]
    assert set(domain.elements) == set(payload["trained_numbers"])
    resumed = Trainer(train, val, tmp_path, m, t, seed=1, progress=False, vocab="all", resume=tmp_path / "last.pt")
    assert resumed.trained_numbers == payload["trained_numbers"] and len(resumed.val_data) == len(val)
    assert resumed.domain == domain and resumed.init_from == payload["init_from"]


def test_supercells_are_the_same_crystal_in_a_larger_cell(classic):
    from nesf.cli.train import supercells

    small = [c for c in classic if c.n_atoms <= 4]
    out = supercells(small + [c for c in classic if c.n_atoms > 5], max_atoms=32)
    assert [c.id for c in out] == [f"{c.id}-x2" for c in small]
    for c, big in zip(small, out):
        assert big.n_atoms == 8 * c.n_atoms
        assert big.volume == pytest.approx(8 * c.volume)
        assert sorted(big.numbers.tolist()) == sorted(np.repeat(c.numbers, 8).tolist())


def test_train_can_start_from_a_shipped_model_by_name(tmp_path, classic):
    small = [c for c in classic if c.n_atoms <= 6][:4]
    train, val = tmp_path / "train.extxyz", tmp_path / "val.extxyz"
    write_extxyz(train, small[:3])
    write_extxyz(val, small[2:3])
    out = tmp_path / "ft"
    args = ["train", "--train", str(train), "--val", str(val), "--out", str(out), "--batch-size", "3", "--probe", "0"]
    assert main([*args, "--init", "perov_5", "--vocab", "all", "--epochs", "1", "--quiet"]) == 0
    ck = load_checkpoint(out / "last.pt")
    assert ck["init_from"]["checkpoint"] == "perov_5.pt"
    shipped = load_checkpoint(NeSF.load("perov_5").info["source"])["model_config"]
    assert config_from_dict(ModelConfig, ck["model_config"]) == config_from_dict(ModelConfig, shipped)


def test_train_shift_origins_needs_the_periodic_frame(tmp_path, classic, capsys):
    small = [c for c in classic if c.n_atoms <= 12]
    train, val = tmp_path / "train.extxyz", tmp_path / "val.extxyz"
    write_extxyz(train, small[:6])
    write_extxyz(val, small[4:6])
    args = ["train", "--train", str(train), "--val", str(val), "--epochs", "1", "--quiet", "--shift-origins"]
    args += ["--probe", "0"]
    assert main([*args, "--out", str(tmp_path / "paper"), "--frame", "paper"]) == 2
    assert "periodic frame" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "both"), "--setting", "canonical"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "ok"), "--threads", "1"]) == 0
    ck = load_checkpoint(tmp_path / "ok" / "last.pt")
    assert ck["train_config"]["origin_shift"] is True and ck["model_config"]["setting"] == "as_given"


def test_init_can_extend_with_latent_every_layer_and_refuses_other_changes(pretrained, tmp_path, capsys):
    ckpt, small = pretrained
    m, t = small_configs()
    crystals = small[:3]
    ext = Trainer(
        crystals,
        crystals[:1],
        tmp_path / "e",
        m,
        t,
        seed=1,
        progress=False,
        init=ckpt,
        extend={"latent_every_layer": True},
    )
    assert ext.model_cfg.latent_every_layer
    before = NeSF.load(ckpt)
    after = NeSF(ext.model, before.vocab)
    prepared = before.prepare(crystals[:1])
    z = before.encode_crystals(prepared)  # the same code: the extended decoders give the same field
    lattice = torch.as_tensor(prepared[0].lattice, dtype=torch.float32).unsqueeze(0)
    pts = torch.rand(1, 20, 3) @ lattice
    assert torch.allclose(before.model.bind(z, lattice).position(pts), after.model.bind(z, lattice).position(pts))
    train = tmp_path / "t.extxyz"
    write_extxyz(train, crystals)
    args = ["train", "--train", str(train), "--val", str(train), "--out", str(tmp_path / "x"), "--init", str(ckpt)]
    assert main([*args, "--structure-factors", "--epochs", "1"]) == 2
    assert "cannot change it" in capsys.readouterr().err
