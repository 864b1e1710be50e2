"""CLI of the learned path on a tiny model: evaluate, reconstruct, encode, decode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from contract import REPORT_KEYS
from nesf.cli import main
from nesf.data.readers import read_crystals
from nesf.io.writers import write_extxyz
from nesf.training.loop import Trainer
from small_model import small_configs

KEYS = (*REPORT_KEYS, "seconds_per_structure")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, classic):
    out = tmp_path_factory.mktemp("model")
    small = [c for c in classic if c.n_atoms <= 12]
    m, t = small_configs(setting="canonical")
    Trainer(small[:8], small[8:11], out, m, t, seed=0, progress=False, vocab="all").run(epochs=1)
    data = out / "data.extxyz"
    write_extxyz(data, small[8:11])
    return out / "best.pt", data


def test_evaluate_writes_full_json(trained, tmp_path):
    model, data = trained
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(model), str(data), "--json", str(out), "--quiet", "--jobs", "1"]) == 0
    result = json.loads(out.read_text())
    for key in KEYS:
        assert key in result
    assert result["n_structures"] == 3 and result["seconds"] > 0
    assert result["frame"] == "periodic"
    assert result["refinement"]["steps"] == 30  # codes refined on their inputs' fields by default


def test_refine_steps_zero_gives_the_encoders_own_codes(trained, tmp_path):
    from nesf.api import NeSF

    model, data = trained
    out = tmp_path / "z.npz"
    args = ["encode", "--model", str(model), str(data), "--out", str(out), "--quiet", "--refine-steps", "0"]
    assert main(args) == 0
    plain = NeSF.load(model).with_refinement(steps=0)
    assert np.allclose(np.load(out)["latents"], plain.encode(str(data)), atol=1e-6)
    assert main(args[:-1] + ["3"]) == 0
    assert not np.allclose(np.load(out)["latents"], plain.encode(str(data)), atol=1e-5)
    js = tmp_path / "eval.json"
    ev = ["evaluate", "--model", str(model), str(data), "--json", str(js), "--quiet", "--jobs", "1"]
    assert main([*ev, "--refine-steps", "0"]) == 0
    assert json.loads(js.read_text())["refinement"]["steps"] == 0


def test_evaluate_resettle_reports_every_copy(trained, tmp_path):
    model, data = trained
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(model), str(data), "--json", str(out), "--quiet", "--jobs", "1", "--resettle"]
    assert main([*args, "--refine-steps", "0"]) == 0  # the encoder's codes: copies in one setting get one code
    result = json.loads(out.read_text())
    assert set(result["resettled"]) == {"origin", "axes", "niggli", "all"}
    assert result["setting"] == "canonical"
    for block in result["resettled"].values():
        for key in KEYS:
            assert key in block
        # the canonical setting makes the copies' figures those of the originals
        assert block["atom_count_error_pct"] == pytest.approx(result["atom_count_error_pct"])
        assert block["position_error_actual"] == pytest.approx(result["position_error_actual"], abs=1e-3)


def test_evaluate_breakdown_by_crystal_system_and_atom_count(trained, tmp_path, capsys):
    model, data = trained
    out = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(model), str(data), "--json", str(out), "--quiet", "--jobs", "1", "--breakdown"]
    assert main(args) == 0
    result = json.loads(out.read_text())
    for name in ("by_crystal_system", "by_atom_count"):
        assert sum(g["n_structures"] for g in result[name].values()) == result["n_structures"]
        assert all("match_rate_pct" in g for g in result[name].values())
    printed = capsys.readouterr().out
    assert "crystal system" in printed and "atoms per cell" in printed


def test_reconstruct_writes_cifs_and_extxyz(trained, tmp_path):
    model, data = trained
    out = tmp_path / "rec"
    js = tmp_path / "rec.json"
    argv = ["reconstruct", "--model", str(model), str(data), "--out", str(out), "--quiet", "--json", str(js)]
    assert main([*argv, "--max-cost", "4"]) == 0
    cifs = sorted(out.glob("*.cif"))
    assert len(cifs) == 3
    back = read_crystals(out / "all.extxyz")
    assert len(back) == 3
    assert cifs[0].read_text().startswith("# nesf setting: input")
    result = json.loads(js.read_text())  # the settings of the run, as evaluate writes them
    assert result["refinement"]["max_cost"] == 4.0 and "polish_steps" in result["settings"]


def test_reconstruct_writes_no_file_for_a_decode_that_found_no_atom(trained, tmp_path, monkeypatch, capsys):
    """A crystal decoded to no atom keeps its CSV row; no CIF or extxyz frame (which readers refuse) is written."""
    from dataclasses import replace

    from nesf.api import NeSF

    real = NeSF.reconstruct_crystals

    def first_empty(self, crystals, progress=False):  # noqa: ANN001, ANN202
        pred = real(self, crystals, progress)
        return [replace(pred[0], cart=np.zeros((0, 3)), numbers=np.zeros(0, dtype=int)), *pred[1:]]

    monkeypatch.setattr(NeSF, "reconstruct_crystals", first_empty)
    model, data = trained
    out, csv = tmp_path / "rec", tmp_path / "rec.csv"
    args = ["reconstruct", "--model", str(model), str(data), "--out", str(out), "--csv", str(csv), "--quiet"]
    assert main([*args, "--restarts", "0", "--refine-steps", "0"]) == 0
    first = read_crystals(data)[0].id
    assert f"1 reconstruction(s) found no atom ({first})" in capsys.readouterr().out
    assert len(list(out.glob("*.cif"))) == 2
    assert [c.id for c in read_crystals(out / "all.extxyz")] == [c.id for c in read_crystals(data)][1:]
    assert len(csv.read_text().splitlines()) == 4  # header and all three crystals


def test_decode_writes_no_file_for_a_code_that_decodes_to_no_atom(trained, tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from nesf.api import NeSF

    real = NeSF.decode_crystals

    def first_empty(self, z, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        pred = real(self, z, *args, **kwargs)
        return [replace(pred[0], cart=np.zeros((0, 3)), numbers=np.zeros(0, dtype=int)), *pred[1:]]

    model, data = trained
    npz, out = tmp_path / "z.npz", tmp_path / "dec"
    assert main(["encode", "--model", str(model), str(data), "--out", str(npz), "--refine-steps", "0", "--quiet"]) == 0
    monkeypatch.setattr(NeSF, "decode_crystals", first_empty)
    assert main(["decode", "--model", str(model), str(npz), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    first = read_crystals(data)[0].id
    assert f"1 decode(s) found no atom ({first})" in printed and "wrote 2 decoded crystal(s)" in printed
    assert len(list(out.glob("*.cif"))) == 2
    assert [c.id for c in read_crystals(out / "all.extxyz")] == [c.id for c in read_crystals(data)][1:]


def test_encode_then_decode(trained, tmp_path):
    model, data = trained
    npz = tmp_path / "z.npz"
    assert main(["encode", "--model", str(model), str(data), "--out", str(npz), "--quiet"]) == 0
    with np.load(npz, allow_pickle=False) as z:
        assert z["latents"].shape == (3, 16)
        ids = list(z["ids"])
    assert ids == [c.id for c in read_crystals(data)]
    out = tmp_path / "dec"
    assert main(["decode", "--model", str(model), str(npz), "--out", str(out), "--quiet"]) == 0
    assert len(list(out.glob("*.cif"))) == 3


def test_decode_refuses_a_bad_latents_file(trained, tmp_path, capsys):
    model, _ = trained
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"no")
    assert main(["decode", "--model", str(model), str(bad), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.npz" in err and "Traceback" not in err
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, latents=np.zeros((2, 5)))
    assert main(["decode", "--model", str(model), str(wrong), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    assert "shape" in capsys.readouterr().err


def test_plot_field_and_interpolate(trained, tmp_path):
    model, data = trained
    png = tmp_path / "field.png"
    assert main(["plot-field", "--model", str(model), str(data), "--plane", "c=0.25", "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    out = tmp_path / "path"
    assert (
        main(["interpolate", "--model", str(model), str(data), str(data), "--steps", "3", "--out", str(out), "--quiet"])
        == 0
    )
    assert len(list(out.glob("step*.cif"))) == 3
    assert (out / "interpolation.png").stat().st_size > 10_000


def test_plot_field_rejects_bad_plane(trained, tmp_path, capsys):
    model, data = trained
    assert (
        main(["plot-field", "--model", str(model), str(data), "--plane", "w=2", "--out", str(tmp_path / "f.png")]) == 2
    )
    assert "--plane" in capsys.readouterr().err


def test_evaluate_symmetrize_and_polish_options_reach_the_report(trained, tmp_path):
    model, data = trained
    js, csv = tmp_path / "eval.json", tmp_path / "eval.csv"
    args = [
        "evaluate",
        "--model",
        str(model),
        str(data),
        "--json",
        str(js),
        "--csv",
        str(csv),
        "--quiet",
        "--jobs",
        "1",
    ]
    assert main([*args, "--symmetrize", "--polish-steps", "1", "--refine-steps", "0"]) == 0
    result = json.loads(js.read_text())
    assert result["settings"]["symmetrize"] is True and result["settings"]["polish_steps"] == 1
    for key in ("rmse_matched", "rmse_all", "position_error_actual_matched", "spacegroup_kept_pct"):
        assert key in result
    record = result["structures"][0]
    assert record["spacegroup_in"] and record["spacegroup_symprec"] == 0.1 and "symmetrized_symprec" in record
    assert "spacegroup_in" in csv.read_text().splitlines()[0]
    # each crystal's own position error, in A, where it decoded atoms
    assert "position_error" in csv.read_text().splitlines()[0]
    decoded = [r for r in result["structures"] if r["n_atoms_out"]]
    assert decoded and all(r["position_error"] >= 0 for r in decoded)
    assert main([*args, "--no-symmetrize", "--no-pin-origin", "--refine-steps", "0"]) == 0
    result = json.loads(js.read_text())
    assert result["settings"]["symmetrize"] is False and result["settings"]["pin_origin"] is False
    assert result["refinement"]["lattice_fit"] == 5  # the default refinement ends on the input's cell
    assert result["refinement"]["max_cost"] == 0.0  # checked codes search without a budget by default
    assert main([*args, "--refine-steps", "0", "--max-cost", "3"]) == 0
    assert json.loads(js.read_text())["refinement"]["max_cost"] == 3.0
    assert result["refinement"]["check_encoder"] is False
    assert main([*args, "--refine-steps", "0", "--encoder-first"]) == 0
    assert json.loads(js.read_text())["refinement"]["check_encoder"] is True
    assert main([*args, "--fast", "--restarts", "2", "--polish-steps", "2"]) == 0  # the fast preset, flags on top
    fast = json.loads(js.read_text())["refinement"]
    decoding = json.loads(js.read_text())["settings"]
    assert decoding["merge_tol"] == 0.2 and decoding["polish_directions"] == 16 and decoding["polish_steps"] == 2
    assert decoding["grid_spacing"] == 0.8  # the small model's own grid is 0.5 A: the preset's floor
    assert fast["solver"] == "gauss_newton" and fast["restart_from"] == "last" and fast["check_encoder"] is True
    assert fast["restarts"] == 2 and fast["atom_fit"] is False and fast["check_symmetry"] is False
    search = json.loads(js.read_text())["search"]  # what the checked codes did, summed over the chunks
    assert search["crystals"] == result["n_structures"] and search["restarted"] >= search["recovered"]
    assert search["encoder_kept"] + search["restarted"] <= search["crystals"]
    assert search["cost_max_decodes"] >= search["cost_per_crystal_decodes"] >= 1.0
    assert "search" not in result  # one pass (--refine-steps 0): no search to report


def test_checked_code_counts_add_up_over_chunks():
    from nesf.cli.roundtrip import add_search_counts, search_summary

    total: dict[str, float] = {}
    add_search_counts(total, {"crystals": 3, "restarted": 1, "cost_per_crystal_x100": 200, "cost_max_x100": 400})
    add_search_counts(total, {"crystals": 1, "restarted": 1, "cost_per_crystal_x100": 600, "cost_max_x100": 600})
    add_search_counts(total, {})  # a shard written before the counts were kept
    summary = search_summary(total)
    assert summary == {"crystals": 4, "restarted": 2, "cost_per_crystal_decodes": 3.0, "cost_max_decodes": 6.0}
