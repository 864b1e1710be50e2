"""The default search of a checkpoint: the one-pass probe at the end of training and its record."""

from __future__ import annotations

import json

import pytest

from nesf.api import NeSF
from nesf.cli import main
from nesf.encoding import calibrate
from nesf.errors import CheckpointError
from nesf.io.writers import write_extxyz
from nesf.training.checkpoint import load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def weak_run(tmp_path_factory, classic):
    """A model trained for one epoch on a few classic crystals (it matches none in one pass), probed on 3."""
    small = [c for c in classic if c.n_atoms <= 8]
    root = tmp_path_factory.mktemp("weak")
    write_extxyz(root / "train.extxyz", small[:6])
    write_extxyz(root / "val.extxyz", small[3:6])
    args = ["train", "--train", str(root / "train.extxyz"), "--val", str(root / "val.extxyz"), "--out", str(root)]
    assert main([*args, "--epochs", "1", "--batch-size", "3", "--threads", "1", "--quiet", "--probe", "3"]) == 0
    return root


def test_a_weak_model_whose_search_finds_nothing_gets_one_pass_recorded_in_both_checkpoints(weak_run, capsys):
    for name in ("best.pt", "last.pt"):
        ck = load_checkpoint(weak_run / name)
        assert ck["search_probe"]["crystals"] == 3
        assert ck["search_probe"]["matched"] == 0
        # the bounded search was probed too, on the same crystals, and matched none either
        assert ck["search_probe"]["search"] | {"seconds": 0} == {
            "crystals": 3, "matched": 0, "matched_one_pass": 0, "seconds": 0
        }  # fmt: skip
        assert ck["refinement"] == calibrate.HOPELESS_REFINEMENT
        model = NeSF.load(weak_run / name)
        assert model.refinement.max_cost == 1.0 and model.refinement.steps == 30  # only the bound is changed
        assert model.info["search_probe"]["match_pct"] == 0.0
        # what the user asks for still wins
        assert model.with_refinement(max_cost=0.0).refinement.max_cost == 0.0


def test_an_exported_model_keeps_its_search_default(weak_run, tmp_path):
    assert main(["export", str(weak_run / "best.pt"), "--out", str(tmp_path / "small.pt")]) == 0
    assert NeSF.load(tmp_path / "small.pt").refinement.max_cost == 1.0


def test_evaluate_uses_the_recorded_bound(weak_run, tmp_path, classic):
    one = tmp_path / "one.extxyz"
    write_extxyz(one, [c for c in classic if c.n_atoms <= 8][3:4])
    report = tmp_path / "r.json"
    base = ["evaluate", "--model", str(weak_run / "best.pt"), str(one), "--quiet", "--jobs", "1", "--threads", "1"]
    assert main([*base, "--json", str(report)]) == 0
    assert json.loads(report.read_text())["refinement"]["max_cost"] == 1.0  # --max-cost 0 lifts it (common.py)


def test_the_rule_and_the_probe_are_deterministic(classic):
    assert calibrate.refinement_default({"match_pct": 0.0}) == {"max_cost": 5.0}
    nothing_more = {"crystals": 12, "matched": 1, "matched_one_pass": 1}
    assert calibrate.refinement_default({"match_pct": 3.1, "search": nothing_more}) == {"max_cost": 1.0}
    more = nothing_more | {"matched": 2}
    assert calibrate.refinement_default({"match_pct": 3.1, "search": more}) == {"max_cost": 5.0}
    assert calibrate.refinement_default({"match_pct": calibrate.WEAK_MATCH_PCT}) == {}
    assert calibrate.refinement_default({"match_pct": None}) == {}  # nothing probed: the full search
    known = {int(z) for c in classic for z in c.numbers}
    picks = calibrate.probe_crystals(classic, known, n=4)
    assert len(picks) == 4 and picks == calibrate.probe_crystals(classic, known, n=4)
    assert picks[0] is classic[0] and picks[-1] is classic[-1]  # spread over the whole set
    assert calibrate.probe_crystals(classic, {8}, n=4) == []  # no crystal of oxygen alone


def test_a_bad_refinement_record_is_refused(weak_run, tmp_path):
    ck = load_checkpoint(weak_run / "best.pt")
    for record, words in (({"max_cost": -1.0}, "inconsistent refinement record"), ({"speed": 2}, "unknown settings")):
        save_checkpoint(tmp_path / "bad.pt", ck | {"refinement": record})
        with pytest.raises(CheckpointError, match=words):
            NeSF.load(tmp_path / "bad.pt")
