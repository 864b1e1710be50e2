"""The commands' reports: --html of evaluate, reconstruct and sample; sample's table; models; defaults."""

from __future__ import annotations

import json
import re

import pytest

from nesf import DEFAULT_MODEL
from nesf.cli import build_parser, main
from nesf.data.examples import demo_crystals
from nesf.io.writers import write_cif


@pytest.fixture(scope="module")
def two_cifs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    crystals = {c.id: c for c in demo_crystals()}
    paths = []
    for name in ("CsCl", "Fe-bcc"):
        write_cif(root / f"{name}.cif", crystals[name])
        paths.append(str(root / f"{name}.cif"))
    return paths


FAST = ["--refine-steps", "0", "--threads", "1", "--jobs", "1", "--quiet"]


def test_evaluate_reads_several_paths_and_writes_an_html_report(two_cifs, tmp_path, capsys):
    report, js = tmp_path / "report.html", tmp_path / "eval.json"
    assert main(["evaluate", *two_cifs, *FAST, "--html", str(report), "--json", str(js)]) == 0
    text = report.read_text()
    assert 'id="crystals"' in text and "CsCl" in text and "Fe-bcc" in text and text.count('class="view"') == 2
    result = json.loads(js.read_text())
    assert result["n_structures"] == 2 and result["data"] == ", ".join(two_cifs)
    assert "2 of 2 matched" in capsys.readouterr().out


def test_reconstruct_writes_an_html_report(two_cifs, tmp_path):
    report = tmp_path / "r.html"
    assert main(["reconstruct", *two_cifs, "--out", str(tmp_path / "out"), *FAST, "--html", str(report)]) == 0
    assert "Fe-bcc" in report.read_text() and (tmp_path / "out" / "all.extxyz").exists()


def test_an_html_report_in_a_folder_that_cannot_hold_it_is_refused_first(two_cifs, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["evaluate", *two_cifs, *FAST, "--html", str(tmp_path / "afile" / "r.html")]) == 2
    assert "--html" in capsys.readouterr().err


def test_sample_uses_the_default_model_and_records_what_it_made(tmp_path, capsys):
    out, report = tmp_path / "s", tmp_path / "s.html"
    assert (
        main(
            ["sample", "--n", "3", "--out", str(out), "--grid", "2", "--threads", "1", "--quiet", "--html", str(report)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == DEFAULT_MODEL
    records = summary["samples"]
    assert len(records) == summary["n_decoded"] > 0
    for r in records:
        assert set(r) == {"id", "formula", "n_atoms", "spacegroup", "spacegroup_symprec", "valid"}
        assert r["spacegroup_symprec"] == 0.1 and isinstance(r["valid"], bool)
        line = next(x for x in printed.splitlines() if x.startswith(r["id"]))
        assert r["formula"] in line and ("yes" if r["valid"] else "NO") in line
    assert "space group (0.1 A)" in printed and (out / "samples.png").exists()
    assert records[0]["id"] in report.read_text()


@pytest.mark.parametrize("command", ["decode", "sample"])
def test_decode_and_sample_default_to_the_general_model_without_reading_options(command, capsys):
    needed = {"decode": ["z.npz", "--out", "o"], "sample": ["--n", "1", "--out", "o"]}[command]
    assert build_parser().parse_args([command, *needed]).model == DEFAULT_MODEL
    for option in (["--conventional"], ["--max-atoms", "5"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, *needed, *option])
    capsys.readouterr()


def test_models_names_the_default_and_prints_no_empty_ranges(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert f"{DEFAULT_MODEL} (the default):" in text and f"default: {DEFAULT_MODEL}" in text
    mp = text[text.index(f"{DEFAULT_MODEL} (the default):") :].splitlines()[1]
    assert "primitive cell" in mp
    assert not re.search(r"(?<![\d.])(\d+(?:\.\d+)?)-\1(?![\d.])", text)  # no "5-5", no "90.0-90.0"
    assert "5 atoms per cell" in text  # perov_5
