"""The voxel baseline through the same CLI as NeSF: train --model voxel, evaluate, refusals."""

from __future__ import annotations

import json

from voxel_helpers import shipped_examples

from contract import REPORT_KEYS
from nesf.cli import main
from nesf.io.writers import write_extxyz


def test_train_voxel_then_evaluate_gives_full_json(tmp_path, capsys):
    small = [c for c in shipped_examples() if c.n_atoms <= 8 and "skewed" not in c.id and "triclinic" not in c.id]
    train, val = tmp_path / "train.extxyz", tmp_path / "val.extxyz"
    write_extxyz(train, small[:4])
    write_extxyz(val, small[4:6])
    out = tmp_path / "run"
    args = ["train", "--model", "voxel", "--train", str(train), "--val", str(val), "--out", str(out)]
    assert main([*args, "--voxel-d", "16", "--epochs", "1", "--batch-size", "2", "--quiet", "--augment", "cubic"]) == 0
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    report = tmp_path / "eval.json"
    code = main(
        ["evaluate", "--model", str(out / "best.pt"), str(val), "--json", str(report), "--quiet", "--jobs", "1"]
    )
    assert code == 0
    result = json.loads(report.read_text())
    assert all(key in result for key in (*REPORT_KEYS, "seconds_per_structure"))
    assert result["n_structures"] == 2
    capsys.readouterr()
    assert main([*args, "--init", str(out / "best.pt"), "--epochs", "1", "--quiet"]) == 2
    assert "--init applies to NeSF models" in capsys.readouterr().err
    assert main(["plot-field", "--model", str(out / "best.pt"), str(val), "--out", str(tmp_path / "f.png")]) == 2
    assert "voxel autoencoder" in capsys.readouterr().err
