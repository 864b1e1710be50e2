"""At the user's edge: per-crystal verdicts, the training domain, any crystal file, training messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nesf.cli import main
from nesf.data.crystal import Crystal
from nesf.data.domain import Domain, crystal_system
from nesf.data.examples import demo_crystals
from nesf.data.readers import read_crystals
from nesf.io.writers import write_cif, write_extxyz
from nesf.metrics.verdicts import VERDICT_KEYS
from nesf.training.loop import Trainer, overfitting_warning
from small_model import small_configs

CUBIC = ("NaCl-rocksalt", "CsCl", "Cu-fcc", "MgO-rocksalt", "Fe-bcc", "SrTiO3-perovskite")


@pytest.fixture(scope="module")
def cubic_model(tmp_path_factory):
    """A tiny model trained on a few cubic crystals (its domain: cubic, <= 8 atoms, a <= 5.7 A)."""
    out = tmp_path_factory.mktemp("cubic")
    crystals = demo_crystals(CUBIC)
    m, t = small_configs(setting="canonical")
    Trainer(crystals, crystals[:2], out, m, t, seed=0, progress=False, vocab="all").run(epochs=1)
    return out / "last.pt"


def kcl() -> Crystal:
    from pymatgen.core import Lattice, Structure

    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(6.29), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    return Crystal.from_pymatgen(s, id="KCl")


def test_domain_names_every_reason():
    domain = Domain.from_crystals(demo_crystals(CUBIC))
    assert domain.systems == {"cubic": len(CUBIC)}
    assert domain.check(demo_crystals(("MgO-rocksalt",))[0]) == []
    wurtzite = demo_crystals(("ZnO-wurtzite",))[0]
    assert crystal_system(wurtzite) == "hexagonal"
    reasons = " | ".join(domain.check(wurtzite))
    assert "hexagonal crystal system never seen" in reasons and "Zn never seen" in reasons
    assert any("cell lengths" in r for r in domain.check(kcl()))
    big = demo_crystals(("NaCl-rocksalt",))[0].to_pymatgen()
    big.make_supercell([5, 5, 5])
    assert any("1000 atoms per cell" in r for r in domain.check(Crystal.from_pymatgen(big)))
    assert Domain.from_dict(json.loads(json.dumps(domain.to_dict()))) == domain
    rare = Domain.from_dict({**domain.to_dict(), "systems": {"cubic": 5000, "hexagonal": 4}, "n_crystals": 5004})
    assert any("rarely seen in training (4 of 5004" in r for r in rare.check(wurtzite))
    assert "cubic" in domain.describe()


def test_domain_merge_counts_each_training_set_once():
    cubic = Domain.from_crystals(demo_crystals(CUBIC))
    other = Domain.from_crystals(demo_crystals(("ZnO-wurtzite", "Si-diamond")))
    both = other.merged(cubic)  # fine-tuned on other data: both sets counted
    assert both.n_crystals == len(CUBIC) + 2 and both.systems["cubic"] == len(CUBIC) + 1
    assert set(both.sources) == set(cubic.sources) | set(other.sources)
    # continuing on the same data, from a model with its own or a merged record: nothing counted twice
    assert cubic.merged(cubic) == cubic
    assert cubic.merged(both) == both and other.merged(both) == both
    # a record written before fingerprints: recognised by its identical counts
    legacy = Domain.from_dict({k: v for k, v in cubic.to_dict().items() if k != "sources"})
    assert cubic.merged(legacy).n_crystals == len(CUBIC)
    assert Domain.from_crystals(demo_crystals(CUBIC[::-1])).sources == cubic.sources  # order-independent
    assert other.merged(legacy).n_crystals == len(CUBIC) + 2
    # the same set seen in another setting (a continuation on primitive cells): counts kept once,
    # ranges widened to what the continued model sees
    conventional = Domain.from_dict({**legacy.to_dict(), "lengths": [2 * x for x in cubic.lengths], "atoms": [4, 8]})
    widened = cubic.merged(conventional)
    assert widened.n_crystals == len(CUBIC) and widened.systems == cubic.systems
    assert widened.lengths == (cubic.lengths[0], 2 * cubic.lengths[1]) and widened.atoms == (cubic.atoms[0], 8)


def test_reconstruct_prints_verdicts_and_warns_outside_the_domain(cubic_model, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    write_cif(inp / "KCl.cif", kcl())
    write_cif(inp / "MgO.cif", demo_crystals(("MgO-rocksalt",))[0])
    out, js, csv = tmp_path / "rec", tmp_path / "r.json", tmp_path / "r.csv"
    # the encoder's own codes throughout: these tests are about verdicts and outputs, and a tiny model's codes
    # fail every check (each restart decodes)
    args = ["reconstruct", "--model", str(cubic_model), str(inp), "--out", str(out), "--quiet", "--jobs", "1"]
    args += ["--refine-steps", "0"]
    assert main([*args, "--json", str(js), "--csv", str(csv)]) == 0
    text = capsys.readouterr()
    assert "of 2 matched" in text.out
    assert "warning: KCl: outside the model's domain" in text.err and "cell lengths" in text.err
    records = json.loads(js.read_text())["structures"]
    assert [r["id"] for r in records] == ["KCl", "MgO"]
    assert all(set(VERDICT_KEYS) <= set(r) for r in records)
    assert records[0]["in_domain"] is False and records[0]["warnings"]
    assert records[1]["in_domain"] is True
    assert csv.read_text().splitlines()[0] == ",".join(VERDICT_KEYS)
    # --strict: exit 2 and nothing written
    strict = tmp_path / "strict"
    assert main([*args[:4], "--out", str(strict), "--quiet", "--strict"]) == 2
    assert "--strict" in capsys.readouterr().err
    assert not strict.exists()


def test_evaluate_json_has_one_record_per_crystal(cubic_model, tmp_path):
    data = tmp_path / "d.extxyz"
    write_extxyz(data, demo_crystals(CUBIC[:3]))
    js = tmp_path / "e.json"
    argv = ["evaluate", "--model", str(cubic_model), str(data), "--json", str(js), "--quiet", "--jobs", "1"]
    assert main([*argv, "--refine-steps", "0"]) == 0
    result = json.loads(js.read_text())
    assert len(result["structures"]) == 3
    assert [r["id"] for r in result["structures"]] == list(CUBIC[:3])


def test_skip_invalid_goes_past_a_bad_file(cubic_model, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    write_cif(inp / "a.cif", demo_crystals(("NaCl-rocksalt",))[0])
    write_cif(inp / "b.cif", demo_crystals(("Cu-fcc",))[0])
    (inp / "broken.cif").write_text("data_x\n_cell_length_a 4\nloop_\n_atom_site_label\n")
    args = ["reconstruct", "--model", str(cubic_model), str(inp), "--out", str(tmp_path / "o"), "--quiet"]
    args += ["--refine-steps", "0"]
    assert main(args) == 2
    assert "broken.cif" in capsys.readouterr().err
    assert main([*args, "--skip-invalid", "--no-match"]) == 0
    out = capsys.readouterr().out
    assert "skipped:" in out and "broken.cif" in out
    assert len(list((tmp_path / "o").glob("*.cif"))) == 2


def test_any_crystal_file_is_read(tmp_path):
    import ase.io
    from pymatgen.io.vasp import Poscar

    crystal = demo_crystals(("TiO2-rutile",))[0]
    s = crystal.to_pymatgen()
    Poscar(s).write_file(tmp_path / "POSCAR")
    Poscar(s).write_file(tmp_path / "rutile.vasp")
    (tmp_path / "rutile.json").write_text(json.dumps(s.as_dict()))
    ase.io.write(tmp_path / "rutile.traj", crystal.to_ase())
    (tmp_path / "noext").write_text(Poscar(s).get_str())
    for name in ("POSCAR", "rutile.vasp", "rutile.json", "rutile.traj", "noext"):
        got = read_crystals(tmp_path / name)
        assert len(got) == 1 and got[0].formula == "TiO2" and got[0].n_atoms == 6, name
        assert np.allclose(got[0].lattice_params, crystal.lattice_params, atol=1e-5), name
    (tmp_path / "junk.dat").write_text("hello\n")
    with pytest.raises(ValueError, match="junk.dat.*content not recognised"):
        read_crystals(tmp_path / "junk.dat")


def test_api_takes_paths_and_returns_verdicts(cubic_model, tmp_path):
    from nesf import NeSF

    path = tmp_path / "nacl.cif"
    write_cif(path, demo_crystals(("NaCl-rocksalt",))[0])
    model = NeSF.load(cubic_model).with_refinement(steps=0)
    assert model.domain is not None
    out, verdicts = model.reconstruct(str(path), verdicts=True)
    assert len(out) == 1 and verdicts[0].id == "nacl" and verdicts[0].n_atoms_in == 8
    assert isinstance(verdicts[0].matched, bool)


def test_training_reports_budget_and_drops_validation_only_elements(tmp_path, capsys):
    train = demo_crystals(("NaCl-rocksalt", "Cu-fcc", "CsCl"))
    val = demo_crystals(("NaCl-rocksalt", "MgO-rocksalt"))
    m, t = small_configs(setting="canonical")
    trainer = Trainer(train, val, tmp_path / "r", m, t, seed=0, progress=False)
    assert "dropped 1 of 2" in capsys.readouterr().out
    assert 12 not in trainer.vocab.numbers and len(trainer.val_data) == 1
    trainer.run(epochs=1, minutes=5)
    assert "up to epoch 1 or 5 minutes, whichever ends first" in capsys.readouterr().out


def test_overfitting_warning():
    rising = [{"val_loss": v, "train_loss": t} for v, t in ((1.0, 2.0), (1.1, 1.8), (1.2, 1.6), (1.3, 1.4))]
    assert "overfitting" in overfitting_warning(rising)
    assert overfitting_warning(rising[:3]) is None
    falling = [{"val_loss": v, "train_loss": v} for v in (1.3, 1.2, 1.1, 1.0)]
    assert overfitting_warning(falling) is None


def test_small_things_at_the_command_line(cubic_model, tmp_path, capsys):
    from nesf.cli import build_parser
    from nesf.registry import resolve_model_path

    cif = tmp_path / "cu.cif"
    write_cif(cif, demo_crystals(("Cu-fcc",))[0])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--modle", "x", str(cif)])
    assert "did you mean --model" in capsys.readouterr().err
    assert resolve_model_path("LIM_L6") == resolve_model_path("lim_l6")
    assert main(["encode", "--model", str(cubic_model), str(cif), "--out", str(tmp_path / "z.txt")]) == 2
    assert ".npz" in capsys.readouterr().err
    assert main(["decode", "--model", str(cubic_model), str(cif), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "not a latents file" in err and "pickle" not in err
    assert main(["plot-field", "--model", str(cubic_model), str(cif), "--out", str(tmp_path / "f.bmp")]) == 2
    assert "extension" in capsys.readouterr().err
    assert main(["plot-field", "--model", str(cubic_model), str(cif), "--out", str(tmp_path / "f.svg")]) == 0
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")
    encode_help = build_parser()._subparsers._group_actions[0].choices["encode"].format_help()
    assert "--grid-spacing" not in encode_help and "--threads" in encode_help


def test_output_piped_into_a_closed_reader_still_writes_the_files(cubic_model, tmp_path, monkeypatch):
    import sys

    class Closed:
        def write(self, text):
            raise BrokenPipeError

        def flush(self):
            raise BrokenPipeError

    data = tmp_path / "d.extxyz"
    write_extxyz(data, demo_crystals(CUBIC[:2]))
    monkeypatch.setattr(sys, "stdout", Closed())
    out = tmp_path / "e.json"
    argv = ["evaluate", "--model", str(cubic_model), str(data), "--json", str(out), "--quiet", "--no-match"]
    assert main([*argv, "--refine-steps", "0"]) == 0
    assert json.loads(out.read_text())["n_structures"] == 2
