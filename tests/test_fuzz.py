"""A seeded few-hundred-case subset of the reader fuzzing (benchmarks/fuzz_inputs.py runs >= 3,000)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_inputs.py"


@pytest.fixture(scope="module")
def fuzz():
    spec = importlib.util.spec_from_file_location("fuzz_inputs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_inputs"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fuzz runner forks a worker per case")
def test_seeded_fuzz_subset_finds_no_misbehaviour(fuzz, tmp_path):
    cases = fuzz.make_cases(80, seed=7)  # the full 3,000 cases: benchmarks/fuzz_inputs.py
    assert {c.kind for c in cases} == {"refuse", "keep", "any"}
    results = [fuzz.run_case(c, tmp_path, timeout=20.0, memory_gb=4.0) for c in cases]
    bad = [r for r in results if r["outcome"] in fuzz.BAD_OUTCOMES]
    assert not bad, bad[:5]
    outcomes = {r["outcome"] for r in results}
    assert {"exact", "refused"} <= outcomes


def test_the_classifier_flags_misbehaviour(fuzz):
    case = fuzz.Case("x.cif", b"data_a\n", "keep", "cif-bom", [(2, [11, 17])])
    assert fuzz.classify(case, "ok", [(2, [11, 17])], "/t/x.cif") == "exact"
    assert fuzz.classify(case, "ok", [(1, [11])], "/t/x.cif") == "changed"
    assert fuzz.classify(case, "error", ("NesfError", "/t/x.cif: bad"), "/t/x.cif") == "unexpected"
    refuse = fuzz.Case("x.cif", b"data_a\n", "refuse", "cif-angle")
    assert fuzz.classify(refuse, "ok", [(2, [11, 17])], "/t/x.cif") == "changed"
    assert fuzz.classify(refuse, "error", ("NesfError", "/t/x.cif: angle"), "/t/x.cif") == "refused"
    assert fuzz.classify(refuse, "error", ("KeyError", "/t/x.cif"), "/t/x.cif") == "unexpected"
    damaged = fuzz.Case("x.cif", b"data_a\ndata_b\n", "any", "damage-cif/flip")
    assert fuzz.classify(damaged, "ok", [(2, [11, 17])], "/t/x.cif") == "lost"
