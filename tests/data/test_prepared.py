"""Prepared crystal sets: written once by ``nesf prepare``, read anywhere crystals are read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nesf.cli import main
from nesf.data.domain import Domain, crystal_system
from nesf.data.prepared import prepare_crystals, prepare_set, read_prepared, save_prepared, setting_key
from nesf.data.readers import read_crystals
from nesf.data.setting import canonical_setting, resettle
from nesf.errors import CrystalInputError


def test_prepared_set_round_trips_the_canonical_crystals_and_their_systems(classic, tmp_path):
    prepared = prepare_set(classic, "periodic", "canonical", "roomiest")
    path = save_prepared(tmp_path / "set.pt", prepared)
    back = read_crystals(path)
    assert [c.id for c in back] == [c.id for c in classic]
    for original, p, b in zip(classic, prepared, back):
        direct = canonical_setting(original, "roomiest")[0]
        np.testing.assert_allclose(b.lattice, direct.lattice, atol=1e-12)
        np.testing.assert_allclose(b.cart, direct.cart, atol=1e-5)  # float32 positions
        np.testing.assert_array_equal(b.numbers, direct.numbers)
        assert b.info["prepared"] == "canonical/roomiest"
        assert b.info["crystal_system"] == crystal_system(direct) == p.info["crystal_system"]
    # the domain is the same as from the crystals themselves, without asking spglib again
    assert Domain.from_crystals(back).to_dict() == Domain.from_crystals(prepared).to_dict()


def test_parallel_preparation_gives_the_same_crystals(classic):
    one = prepare_set(classic * 3, jobs=1)
    two = prepare_set(classic * 3, jobs=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.cart, b.cart)
        assert a.info == b.info


def test_training_takes_prepared_crystals_as_they_are_and_prepares_the_others(classic, monkeypatch):
    prepared = prepare_set(classic, "periodic", "canonical", "roomiest")
    calls = []
    import nesf.data.setting as setting

    original = setting.canonical_setting
    monkeypatch.setattr(setting, "canonical_setting", lambda c, *a: calls.append(c.id) or original(c, *a))
    assert prepare_crystals(prepared, "periodic", "canonical", "roomiest") == prepared
    assert calls == []
    # another origin rule, or a re-set copy (which does not inherit the mark), is prepared again
    prepare_crystals(prepared, "periodic", "canonical", "rarest")
    assert len(calls) == len(prepared)
    copy = resettle(prepared[0], "origin", np.random.default_rng(0))
    assert "prepared" not in copy.info
    assert prepared[0].standardized().info.get("prepared") is None


def test_training_on_a_set_prepared_for_another_setting_says_so_and_prepares_it(classic, tmp_path, capsys):
    from dataclasses import replace

    from nesf.training.loop import Trainer
    from small_model import small_configs

    small = [c for c in classic if c.n_atoms <= 12][:4]
    path = save_prepared(tmp_path / "set.pt", prepare_set(small, "periodic", "canonical", "roomiest"))
    prepared = read_crystals(path)
    m, t = small_configs(setting="canonical")
    m = replace(m, primitive_cell=True, canonical_origin="roomiest")
    trainer = Trainer(prepared, prepared, tmp_path / "run", m, t, progress=False)
    out = capsys.readouterr().out
    assert "training: bringing 4 crystals (prepared in setting canonical/roomiest)" in out
    assert "canonical/roomiest/primitive" in out and "--primitive" in out
    assert trainer.domain.n_crystals == 4
    # a set prepared in the model's own setting is taken silently
    again = prepare_set(small, "periodic", "canonical", "roomiest", primitive=True)
    Trainer(again, again, tmp_path / "run2", m, t, progress=False)
    assert "bringing" not in capsys.readouterr().out


def test_setting_keys_name_the_frame_and_origin_rule():
    assert setting_key("periodic", "canonical", "rarest") == "canonical/rarest"
    assert setting_key("periodic", "as_given", "rarest") == "standard"
    assert setting_key("paper", "as_given", "roomiest") == "as_given"
    with pytest.raises(ValueError, match="periodic frame"):
        prepare_set([], "paper", "canonical")


def test_prepare_cli_writes_a_set_that_training_reads(classic, tmp_path, capsys):
    from nesf.io.writers import write_extxyz

    src = write_extxyz(tmp_path / "in.extxyz", classic)
    out = tmp_path / "prepared.pt"
    assert main(["prepare", str(src), "--out", str(out), "--quiet"]) == 0
    assert f"{len(classic)} crystals in setting canonical/roomiest" in capsys.readouterr().out
    assert len(read_crystals(out)) == len(classic)
    assert main(["prepare", str(src), "--out", str(tmp_path / "x.extxyz"), "--quiet"]) == 2
    assert "--out must end in .pt" in capsys.readouterr().err
    # the setting of a model to fine-tune, taken from the model itself
    assert main(["prepare", str(src), "--out", str(tmp_path / "mp.pt"), "--model", "mp", "--quiet"]) == 0
    assert "in setting canonical/roomiest/primitive" in capsys.readouterr().out
    assert all(c.info["prepared"] == "canonical/roomiest/primitive" for c in read_crystals(tmp_path / "mp.pt"))
    assert main(["prepare", str(src), "--out", str(tmp_path / "y.pt"), "--model", "mp", "--origin", "rarest"]) == 2
    assert "leave out --origin" in capsys.readouterr().err


def test_a_model_checkpoint_or_junk_is_refused_with_a_clear_message(tmp_path):
    ck = tmp_path / "model.pt"
    torch.save({"state_dict": {}, "model_config": {}}, ck)
    with pytest.raises(CrystalInputError, match="a model checkpoint"):
        read_prepared(ck)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(CrystalInputError, match="not a readable prepared crystal set"):
        read_crystals(junk)


def test_unprepared_or_mixed_crystals_cannot_be_saved_as_a_prepared_set(classic, tmp_path):
    with pytest.raises(ValueError, match="prepared in one setting"):
        save_prepared(tmp_path / "a.pt", classic)
    mixed = prepare_set(classic[:1], setting="canonical") + prepare_set(classic[1:2], setting="as_given")
    with pytest.raises(ValueError, match="prepared in one setting"):
        save_prepared(tmp_path / "b.pt", mixed)


def test_a_model_takes_a_set_prepared_in_its_setting_as_it_is(classic, monkeypatch):
    import nesf.api as api

    model = api.NeSF.load("mp").with_refinement(steps=0)
    small = [c for c in classic if c.n_atoms <= 8][:4]
    prepared = prepare_set(small, "periodic", "canonical", "roomiest", primitive=True)
    assert model.setting_key == "canonical/roomiest/primitive"
    expected = model.encode_crystals(model.prepare(small))
    calls = []
    original = api.canonical_setting
    monkeypatch.setattr(api, "canonical_setting", lambda c, *a: calls.append(c.id) or original(c, *a))
    assert model.prepare(prepared) == prepared
    inner, transforms = model.to_model_setting(prepared)
    assert inner == prepared and all(t.is_identity for t in transforms) and calls == []
    assert torch.allclose(model.encode_crystals(prepared), expected, atol=1e-5)
    # a set prepared in another setting is brought to the model's
    other = prepare_set(small, "periodic", "canonical", "rarest")
    model.to_model_setting(model.prepare(other))
    assert len(calls) == len(small)
