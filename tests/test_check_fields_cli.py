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


def test_check_fields_streams_in_chunks_and_resumes(tmp_path, monkeypatch, capsys):
    """Chunks of one crystal give the one-pass figures; a run killed after its first chunk resumes."""
    import pytest

    import nesf.cli.evaluate as evaluate
    from nesf.data.examples import demo_crystals

    data = tmp_path / "set.extxyz"
    write_extxyz(data, demo_crystals(("NaCl-rocksalt", "CsCl", "Cu-fcc", "ZnO-wurtzite")))
    whole, chunked = tmp_path / "whole.json", tmp_path / "chunked.json"
    base = ["check-fields", str(data), "--frame", "periodic", "--quiet", "--jobs", "1"]
    assert main([*base, "--json", str(whole)]) == 0
    real, calls = evaluate._exact_chunk, []

    def dies_on_the_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(evaluate, "_exact_chunk", dies_on_the_second)
    assert main([*base, "--json", str(chunked), "--chunk-size", "1"]) == 130
    assert "chunks are kept in OUT.partial; continue with --resume" in capsys.readouterr().err
    partial = tmp_path / "chunked.json.partial"
    assert len(list(partial.glob("chunk-*.npz"))) == 1 and not chunked.exists()
    assert main([*base, "--json", str(chunked), "--chunk-size", "1"]) == 2  # refused without --resume
    assert main([*base, "--json", str(chunked), "--chunk-size", "1", "--resume"]) == 0
    assert len(calls) == 5 and not partial.exists()  # 1 + the killed one + the 3 left
    a, b = json.loads(whole.read_text()), json.loads(chunked.read_text())
    for key in ("n_structures", "atom_count_error_pct", "position_error_actual", "match_rate_pct", "rmse"):
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key  # sums in another order
    assert a["n_structures"] == 4 and a["match_rate_pct"] == 100.0 and b["unrepresentable"] == []
    assert main(["check-fields", str(data), "--resume", "--quiet"]) == 2  # nothing to resume from without --json
