"""check-fields says why a crystal cannot be represented instead of returning wrong atoms."""

from __future__ import annotations

import json

import numpy as np

from nesf.cli import main
from nesf.data.crystal import Crystal
from nesf.io.writers import write_extxyz


def test_unrepresentable_crystal_is_named_with_reason(tmp_path, capsys):
    good = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [2, 2, 2]], [11, 17], id="NaCl-like")
    close = Crystal(np.eye(3) * 4.0, [[0, 0, 0], [0.3, 0, 0], [2, 2, 2]], [11, 11, 17], id="too-close")
    data = tmp_path / "set.extxyz"
    write_extxyz(data, [good, close])
    out = tmp_path / "r.json"
    for frame in ("paper", "periodic"):
        rc = main(["check-fields", str(data), "--frame", frame, "--json", str(out), "--quiet", "--jobs", "1"])
        captured = capsys.readouterr()
        assert rc == 1
        assert "too-close" in captured.err and "clustering radius" in captured.err
        result = json.loads(out.read_text())
        assert [p["id"] for p in result["unrepresentable"]] == ["too-close"]
        assert result["n_structures"] == 2
