"""The ``nesf`` command line: bad input gives one clear error line and exit code 2; a good run works."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

import nesf
from contract import REPORT_KEYS
from nesf.cli import main

EXAMPLES = Path(nesf.__file__).parent / "examples" / "classic_crystals.extxyz"

_CIF_TEMPLATE = """data_test
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   {a}
_cell_length_b   3.00000000
_cell_length_c   3.00000000
_cell_angle_alpha   90.00000000
_cell_angle_beta   90.00000000
_cell_angle_gamma   {gamma}
_symmetry_Int_Tables_number   1
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
  1  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_symmetry_multiplicity
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Cu  Cu0  1  0.00000000  0.00000000  0.00000000  {occupancy}
  Au  Au1  1  0.50000000  0.50000000  0.50000000  1
"""

_FRAME = '1\nLattice="{lattice}" Properties=species:S:1:pos:R:3 material_id={mid} pbc="T T T"\nCu {x} 0.0 0.0\n'
_CUBIC = "3.0 0.0 0.0 0.0 3.0 0.0 0.0 0.0 3.0"


def _cif(a: float = 3.0, gamma: float = 90.0, occupancy: float = 1.0) -> str:
    return _CIF_TEMPLATE.format(a=a, gamma=gamma, occupancy=occupancy)


def _good_cif_text() -> str:
    return str(CifWriter(Structure(Lattice.cubic(3.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])))


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# Each maker builds the bad input in tmp_path and returns (path, substrings the error line must hold).
def _garbage_cif(tmp: Path):
    p = tmp / "garbage.cif"
    p.write_text("this is not a CIF file\n### at all ###\n1 2 3\n")
    return p, ["could not parse CIF"]


def _empty_cif(tmp: Path):
    p = tmp / "empty.cif"
    p.write_text("")
    return p, ["empty"]


def _empty_extxyz(tmp: Path):
    p = tmp / "empty.extxyz"
    p.write_text("")
    return p, ["empty"]


def _blank_extxyz(tmp: Path):
    p = tmp / "blank.extxyz"
    p.write_text("\n   \n\n")
    return p, ["no structures"]


def _garbage_extxyz(tmp: Path):
    p = tmp / "garbage.extxyz"
    p.write_text("hello world\nnot an xyz file\n")
    return p, ["could not parse extxyz"]


def _csv_without_cif(tmp: Path):
    p = _write_csv(tmp / "nocif.csv", ["material_id", "structure"], [["mp-1", "whatever"]])
    return p, ["'cif'", "column"]


def _csv_header_only(tmp: Path):
    p = _write_csv(tmp / "header.csv", ["material_id", "cif"], [])
    return p, ["no rows"]


def _csv_bad_row(tmp: Path):
    p = _write_csv(tmp / "badrow.csv", ["material_id", "cif"], [["ok", _good_cif_text()], ["bad", "garbage"]])
    return p, ["row 2", "could not parse CIF"]


def _csv_partial_row(tmp: Path):
    rows = [["ok", _good_cif_text()], ["half", _cif(occupancy=0.5)]]
    p = _write_csv(tmp / "partial.csv", ["material_id", "cif"], rows)
    return p, ["row 2", "partial occupanc"]


def _partial_cif(tmp: Path):
    p = tmp / "partial.cif"
    p.write_text(_cif(occupancy=0.5))
    return p, ["partial occupanc"]


def _mixed_site_cif(tmp: Path):
    s = Structure(Lattice.cubic(3.0), [{"Cu": 0.5, "Au": 0.5}], [[0, 0, 0]])
    p = tmp / "mixed.cif"
    p.write_text(str(CifWriter(s)))
    return p, ["partial occupanc"]


def _nan_extxyz(tmp: Path):
    p = tmp / "nan.extxyz"
    p.write_text(_FRAME.format(lattice=_CUBIC, mid="good", x="0.0") + _FRAME.format(lattice=_CUBIC, mid="bad", x="nan"))
    return p, ["NaN", "frame 1", "bad"]


def _zero_volume_extxyz(tmp: Path):
    p = tmp / "flat.extxyz"
    p.write_text(_FRAME.format(lattice="3.0 0.0 0.0 3.0 0.0 0.0 0.0 0.0 3.0", mid="flat", x="0.0"))
    return p, ["volume", "frame 0"]


def _no_cell_extxyz(tmp: Path):
    p = tmp / "nocell.extxyz"
    p.write_text("1\nProperties=species:S:1:pos:R:3\nCu 0.0 0.0 0.0\n")
    return p, ["frame 0", "periodic cell"]


def _missing(tmp: Path):
    return tmp / "does-not-exist.cif", ["no such file"]


def _unknown_suffix(tmp: Path):
    p = tmp / "crystal.pdb"
    p.write_text("ATOM      1  CU  CU A   1       0.000   0.000   0.000\n")
    return p, ["unknown file type", "'.pdb'"]


def _binary_cif(tmp: Path):
    p = tmp / "binary.cif"
    p.write_bytes(b"\xff\xfe\x00\x01\x80\x81 binary junk")
    return p, ["not text"]


def _empty_folder(tmp: Path):
    p = tmp / "no_cifs"
    p.mkdir()
    (p / "readme.txt").write_text("nothing here")
    return p, ["no crystal files"]


def _folder_with_empty_cif(tmp: Path):
    p = tmp / "cifs"
    p.mkdir()
    (p / "a.cif").write_text(_good_cif_text())
    (p / "b.cif").write_text("")
    return p / "b.cif", ["empty"]  # the error names the empty file, which is inside the folder


BAD_INPUTS = {
    "garbage-cif": _garbage_cif,
    "empty-cif": _empty_cif,
    "empty-extxyz": _empty_extxyz,
    "blank-extxyz": _blank_extxyz,
    "garbage-extxyz": _garbage_extxyz,
    "csv-without-cif-column": _csv_without_cif,
    "csv-header-only": _csv_header_only,
    "csv-bad-row": _csv_bad_row,
    "csv-partial-row": _csv_partial_row,
    "partial-occupancy-cif": _partial_cif,
    "mixed-site-cif": _mixed_site_cif,
    "nan-extxyz": _nan_extxyz,
    "zero-volume-extxyz": _zero_volume_extxyz,
    "no-cell-extxyz": _no_cell_extxyz,
    "missing-path": _missing,
    "unknown-suffix": _unknown_suffix,
    "binary-cif": _binary_cif,
    "folder-without-cifs": _empty_folder,
}


def _check_error(stderr: str, named: Path, needles: list[str]) -> None:
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    line = lines[0]
    assert line.startswith("nesf: error: ")
    assert str(named) in line, f"the file is not named: {line!r}"
    rest = line.replace(str(named), "")  # tmp_path names hold the test name: look for the needles elsewhere
    for needle in needles:
        assert needle in rest, f"{needle!r} missing from {line!r}"


def _run_in_process(capsys, data: Path, out: Path) -> tuple[int, str]:
    rc = main(["check-fields", str(data), "--json", str(out), "--quiet", "--no-match", "--jobs", "1"])
    captured = capsys.readouterr()
    return rc, captured.err


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_in_process(case, tmp_path, capsys):
    data, needles = BAD_INPUTS[case](tmp_path)
    out = tmp_path / "out" / "OUT.json"
    rc, err = _run_in_process(capsys, data if case != "folder-with-empty-cif" else data.parent, out)
    assert rc == 2
    _check_error(err, data, needles)
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_empty_cif_inside_folder(tmp_path, capsys):
    named, needles = _folder_with_empty_cif(tmp_path)
    out = tmp_path / "OUT.json"
    rc, err = _run_in_process(capsys, named.parent, out)
    assert rc == 2
    _check_error(err, named, needles)
    assert not out.exists()


def _run_subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "nesf", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_bad_input_subprocess_exit_code(tmp_path):
    """The real process exit code (one case only: each interpreter start costs seconds)."""
    data, needles = _nan_extxyz(tmp_path)
    out = tmp_path / "OUT.json"
    proc = _run_subprocess(["check-fields", str(data), "--json", str(out), "--quiet"], tmp_path)
    assert proc.returncode == 2, proc.stderr
    _check_error(proc.stderr, data, needles)
    assert not out.exists()


# ---------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("a, gamma", [(3.0, 0.0), (0.0, 90.0)])
def test_zero_volume_cif(tmp_path, capsys, a, gamma):
    data = tmp_path / "flat.cif"
    data.write_text(_cif(a=a, gamma=gamma))
    out = tmp_path / "OUT.json"
    rc, err = _run_in_process(capsys, data, out)
    assert rc == 2
    assert not out.exists()
    _check_error(err, data, ["volume"])


def test_binary_csv_names_the_file(tmp_path, capsys):
    data = tmp_path / "binary.csv"
    data.write_bytes(b"\xff\xfe\x00\x01\x80\x81 binary junk")
    out = tmp_path / "OUT.json"
    rc, err = _run_in_process(capsys, data, out)
    assert rc == 2
    assert not out.exists()
    _check_error(err, data, [])


def test_folder_with_cif_named_subfolder(tmp_path, capsys):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "a.cif").write_text(_good_cif_text())
    (folder / "old.cif").mkdir()
    out = tmp_path / "OUT.json"
    try:
        rc, err = _run_in_process(capsys, folder, out)
    except OSError:
        pytest.fail("IsADirectoryError escaped nesf.cli.main")
    # either the sub-folder is skipped (success) or refused with one clear line
    assert rc in (0, 2)
    if rc == 2:
        _check_error(err, folder / "old.cif", [])


def test_csv_with_utf8_bom(tmp_path):
    data = tmp_path / "bom.csv"
    with open(data, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh)
        writer.writerow(["cif", "material_id"])
        writer.writerow([_good_cif_text(), "mp-22862"])
    (crystal,) = nesf.read_crystals(data)
    assert crystal.id == "mp-22862"


# ---------------------------------------------------------------------------- good runs
EXPECTED_KEYS = set(REPORT_KEYS)


def test_check_fields_on_shipped_examples(tmp_path, capsys):
    out = tmp_path / "out.json"
    rc = main(["check-fields", str(EXAMPLES), "--frame", "periodic", "--json", str(out), "--quiet", "--jobs", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    assert "match rate" in captured.out
    result = json.loads(out.read_text())
    assert EXPECTED_KEYS <= set(result)
    assert result["n_structures"] == len(nesf.read_crystals(EXAMPLES))
    assert result["frame"] == "periodic"
    assert result["atom_count_error_pct"] == 0
    assert result["position_error_actual"] < 1e-3
    assert result["position_error_detected"] < 1e-3
    assert result["species_error_actual_pct"] == 0
    assert result["species_error_detected_pct"] == 0
    assert result["match_rate_pct"] == 100
    assert np.isfinite(result["seconds"]) and result["seconds"] > 0
    assert result["unrepresentable"] == []
    assert not [p for p in tmp_path.iterdir() if p.name != "out.json"]  # no temporary files left


def test_help_in_process(capsys):
    for argv in (["--help"], ["check-fields", "--help"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0
    assert "check-fields" in capsys.readouterr().out


def test_no_command_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    assert "check-fields" in capsys.readouterr().out


def test_bad_option_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check-fields", str(EXAMPLES), "--frame", "sideways"])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_subprocess(tmp_path):
    for args in (["--help"], ["check-fields", "--help"]):
        proc = _run_subprocess(args, tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "usage: nesf" in proc.stdout
    proc = _run_subprocess(["--version"], tmp_path)
    assert proc.returncode == 0
    assert nesf.__version__ in proc.stdout


@pytest.mark.parametrize(
    ("argv", "code", "stream", "text"),
    [
        (["--version"], 0, "stdout", "nesf "),
        (["split", "/no/such/file.extxyz", "--out", "x"], 2, "stderr", "nesf: error:"),
        (["--no-such-option"], 2, "stderr", "unknown option --no-such-option"),
    ],
)
def test_executable_exits_quickly_with_the_exit_code(argv: list[str], code: int, stream: str, text: str) -> None:
    """``python -m nesf`` skips the interpreter's teardown but keeps exit codes, output and exit handlers."""
    script = "import atexit, runpy, sys; atexit.register(lambda: print('handler ran', flush=True)); "
    script += f"sys.argv = ['nesf', *{argv!r}]; runpy.run_module('nesf', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert text in getattr(proc, stream)
    assert proc.stdout.rstrip().endswith("handler ran")  # registered exit handlers still run, output flushed
