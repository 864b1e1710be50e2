"""All-or-nothing output folders, checked before any work."""

from __future__ import annotations

import os

import pytest

from nesf.cli import main
from nesf.data.examples import demo_crystals
from nesf.errors import OutputError
from nesf.io.writers import check_output_folder, staged_folder, write_extxyz
from nesf.training.loop import Trainer
from small_model import small_configs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    crystals = demo_crystals(("NaCl-rocksalt", "CsCl", "Cu-fcc", "MgO-rocksalt"))
    m, t = small_configs(setting="canonical")
    Trainer(crystals, crystals[:2], root / "model", m, t, seed=0, progress=False).run(epochs=1)
    four, two = root / "four.extxyz", root / "two.extxyz"
    write_extxyz(four, crystals)
    write_extxyz(two, crystals[:2])
    return root / "model" / "last.pt", four, two


def run(model, data, out, *extra):
    # the encoder's own codes: these tests are about the folders, not the codes
    argv = ["reconstruct", "--model", str(model), str(data), "--out", str(out), "--quiet", "--no-match"]
    return main([*argv, "--refine-steps", "0", *extra])


def test_a_second_run_never_mixes_with_the_first(setup, tmp_path, capsys):
    model, four, two = setup
    out = tmp_path / "rec"
    assert run(model, four, out) == 0
    assert len(list(out.glob("*.cif"))) == 4
    assert run(model, two, out) == 2
    assert "not empty" in capsys.readouterr().err
    assert len(list(out.glob("*.cif"))) == 4  # untouched
    assert run(model, two, out, "--overwrite") == 0
    assert sorted(p.name for p in out.glob("*.cif")) == ["CsCl.cif", "NaCl-rocksalt.cif"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_bad_output_paths_are_refused_before_any_work(setup, tmp_path, capsys):
    model, four, _ = setup
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert run(model, four, a_file) == 2
    assert "is a file" in capsys.readouterr().err
    assert run(model, four, a_file / "sub") == 2
    assert "under" in capsys.readouterr().err
    folder = tmp_path / "somefolder"
    folder.mkdir()
    assert run(model, four, tmp_path / "o", "--json", str(folder)) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_read_only_folder_is_refused_at_once(setup, tmp_path, monkeypatch, capsys):
    model, four, _ = setup
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # root may write anywhere, so the folder's lack of permission is simulated where it is asked
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if os.path.abspath(p) == str(locked) else real_access(p, mode)
    )
    with pytest.raises(OutputError, match="permission"):
        check_output_folder(locked / "out")
    assert run(model, four, locked / "out") == 2
    assert "permission denied" in capsys.readouterr().err


def test_a_failure_mid_write_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_folder(out) as tmp:
            (tmp / "a.cif").write_text("half")
            raise RuntimeError("disk full")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_cif_files_keep_every_site_and_name_their_block(tmp_path):
    """CIFs (ASE's writer) read back to the same species, cell and fractional positions; no atoms: still a CIF."""
    import numpy as np

    from nesf.data.crystal import Crystal, lattice_to_params
    from nesf.data.readers import read_crystals
    from nesf.io.writers import write_cif

    for crystal in demo_crystals():
        path = write_cif(tmp_path / f"{crystal.id}.cif", crystal)
        assert path.read_text().splitlines()[0] == f"data_{crystal.id}"
        (back,) = read_crystals(path)
        assert sorted(back.numbers.tolist()) == sorted(crystal.numbers.tolist()), crystal.id
        assert np.allclose(lattice_to_params(back.lattice), lattice_to_params(crystal.lattice), atol=1e-6)
        for z, frac in zip(crystal.numbers, crystal.frac):  # every site is there, up to a lattice vector
            shift = back.frac[back.numbers == z] - frac
            assert np.abs(shift - np.round(shift)).sum(axis=1).min() < 1e-6, crystal.id
    empty = write_cif(tmp_path / "empty.cif", Crystal(np.eye(3) * 3.0, np.zeros((0, 3)), np.zeros(0, int), "empty"))
    assert "_cell_length_a" in empty.read_text()
