"""What is read is what the file says, or a clear refusal: one example of each class of silent change."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from nesf.data.crystal import Crystal
from nesf.data.readers import read_crystals
from nesf.errors import CheckpointError, CrystalInputError

CARBON = """data_C
_symmetry_space_group_name_H-M   'F d -3 m'
_cell_length_a   3.567
_cell_length_b   3.567
_cell_length_c   3.567
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   90
_chemical_formula_sum   'C8'
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
{ops}loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  C  C0  0.125  0.125  0.125  1
"""
#: Fd-3m needs 192 operations; a P1 list is enough to test the operations' grammar.
P1 = "  1  'x, y, z'\n"
PM = "  1  'x, y, z'\n  2  '-x, -y, -z'\n"

NACL = """data_NaCl
_cell_length_a   5.64
_cell_length_b   5.64
_cell_length_c   5.64
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   90
loop_
 _symmetry_equiv_pos_as_xyz
  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
  Na  Na1  {x}  0  0
  Na  Na2  0  0.5  0.5
  {sym}  Cl1  0.5  0.5  0.5
  Cl  Cl2  0.5  0  0
"""


def nacl(x: str = "0", sym: str = "Cl") -> str:
    return NACL.format(x=x, sym=sym)


def refused(tmp_path, text: str, *needles: str, name: str = "bad.cif") -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CrystalInputError) as info:
        read_crystals(path)
    message = str(info.value)
    assert name in message and "\n" not in message and len(message) < 400, message
    for needle in needles:
        assert needle in message, message
    return message


def test_the_base_files_read_whole(tmp_path):
    (tmp_path / "ok.cif").write_text(nacl())
    assert read_crystals(tmp_path / "ok.cif")[0].n_atoms == 4
    (tmp_path / "p1.cif").write_text(CARBON.format(ops=PM))
    assert read_crystals(tmp_path / "p1.cif")[0].n_atoms == 2


@pytest.mark.parametrize(
    "op",
    ["a, b, c", "x, y", "x, y, z, w", "x, x, x", "-y+inf/2, x, z", "x, y, z+0x10/3", "x, y, z++-2/2", "x, y\x00, z"],
)
def test_malformed_symmetry_operations_are_refused(tmp_path, op):
    text = CARBON.format(ops=f"  1  'x, y, z'\n  2  '{op}'\n")
    message = refused(tmp_path, text)
    assert "symmetry operation" in message or "NUL" in message


def test_operations_that_form_no_group_are_refused(tmp_path):
    refused(tmp_path, CARBON.format(ops="  1  'x, y, z'\n  2  'x+1/3, y, z'\n"), "do not form a group")


def test_symop_loops_with_swapped_or_repeated_headers_are_refused(tmp_path):
    swapped = CARBON.replace(
        "loop_\n _symmetry_equiv_pos_site_id\n _symmetry_equiv_pos_as_xyz\n{ops}",
        "loop_\n  1  'x, y, z'\n _symmetry_equiv_pos_site_id\n _symmetry_equiv_pos_as_xyz\n",
    )
    refused(tmp_path, swapped, "loop_ names no columns")
    repeated = CARBON.replace(
        " _symmetry_equiv_pos_as_xyz\n", " _symmetry_equiv_pos_as_xyz\n _symmetry_equiv_pos_as_xyz\n"
    )
    refused(tmp_path, repeated.format(ops="  1  'x, y, z'  'x, y, z'\n"), "twice")


@pytest.mark.parametrize("sym", ["119", "12", "?", "Xx", "cl"])
def test_sites_whose_type_symbol_is_no_element_are_refused(tmp_path, sym):
    refused(tmp_path, nacl(sym=sym), "names no element")


@pytest.mark.parametrize("x", ["1e30", "1e308", "99999999999999999999999", ".", "?", "1_000", "inf", "nan", "0x10"])
def test_extreme_unknown_or_non_cif_coordinates_are_refused(tmp_path, x):
    message = refused(tmp_path, nacl(x=x), "coordinate")
    assert "site 1" in message


def test_a_hundred_thousand_digit_number_is_quoted_short(tmp_path):
    refused(tmp_path, nacl(x="1" * 100_000), "characters")


@pytest.mark.parametrize(
    "edit,needle",
    [
        (lambda t: t.replace("  Na  Na2", "_cell_volume 179.4\n  Na  Na2"), "belongs to no tag"),
        (lambda t: t.replace("  Na  Na2", "garbage\n  Na  Na2"), "whole number of rows"),
        (lambda t: t.replace("  'x, y, z'\n", "  'x, y, z'\n  garbage\n"), "symmetry operation"),
        (lambda t: t.replace("_cell_length_b   5.64\n", ""), None),
    ],
)
def test_junk_or_moved_lines_in_loops_are_refused(tmp_path, edit, needle):
    text = edit(nacl())
    if needle is None:  # a missing cell length is pymatgen's refusal
        refused(tmp_path, text)
    else:
        refused(tmp_path, text, needle)


def test_a_lost_row_is_caught_by_the_stated_formula(tmp_path):
    text = nacl().replace("_cell_angle_gamma   90\n", "_cell_angle_gamma   90\n_chemical_formula_sum 'Na2 Cl2'\n")
    (tmp_path / "ok.cif").write_text(text)
    assert read_crystals(tmp_path / "ok.cif")[0].n_atoms == 4
    refused(tmp_path, text.replace("  Cl  Cl2  0.5  0  0\n", ""), "_chemical_formula_sum")


def test_files_cut_in_the_middle_of_a_line_are_refused(tmp_path, classic):
    from nesf.io.writers import write_extxyz

    write_extxyz(tmp_path / "ok.extxyz", classic[:3])
    text = (tmp_path / "ok.extxyz").read_text()
    cut = text[: text.rindex("\n", 0, len(text) - 1) + 12]
    refused(tmp_path, cut, "middle of a line", name="cut.extxyz")
    refused(tmp_path, nacl()[:-3], "middle of a line")


@pytest.mark.parametrize("bad", ["1_000", "inf", "0x10", "1.0.0"])
def test_extxyz_numbers_follow_their_grammar(tmp_path, classic, bad):
    from nesf.io.writers import write_extxyz

    write_extxyz(tmp_path / "ok.extxyz", classic[:1])
    lines = (tmp_path / "ok.extxyz").read_text().split("\n")
    parts = lines[2].split()
    lines[2] = " ".join([parts[0], bad, *parts[2:]])
    refused(tmp_path, "\n".join(lines), "line 3", name="bad.extxyz")
    lines = (tmp_path / "ok.extxyz").read_text().split("\n")
    lines[1] = lines[1].replace('Lattice="', f'Lattice="{bad} ', 1)
    refused(tmp_path, "\n".join(lines), "Lattice", name="lat.extxyz")


def test_a_huge_cell_length_is_refused_as_written_without_warnings(tmp_path, recwarn):
    message = refused(tmp_path, nacl().replace("_cell_length_a   5.64", "_cell_length_a   1e308"), "'1e308'")
    assert "inf" not in message and not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_megabyte_line_is_refused_before_parsing(tmp_path):
    start = time.perf_counter()
    refused(tmp_path, nacl().replace("_cell_length_b", "_note " + "1 " * 1_000_000 + "\n_cell_length_b"), "line")
    assert time.perf_counter() - start < 5


def test_valid_multi_block_cifs_of_different_compositions_read_every_block(tmp_path):
    kbr = nacl().replace("data_NaCl", "data_KBr").replace("Na", "K").replace("Cl", "Br")
    path = tmp_path / "two.cif"
    path.write_text(nacl() + kbr)
    crystals = read_crystals(path)
    assert [c.formula for c in crystals] == ["NaCl", "KBr"]


def test_a_folder_reads_every_crystal_file_and_names_what_it_cannot(tmp_path, classic):
    from pymatgen.io.vasp import Poscar

    from nesf.io.writers import write_cif

    folder = tmp_path / "mixed"
    folder.mkdir()
    write_cif(folder / "a.cif", classic[0])
    write_cif(folder / "b.cif", classic[1])
    (folder / "POSCAR").write_text(str(Poscar(classic[2].to_pymatgen())) + "\n")
    assert len(read_crystals(folder)) == 3
    (folder / "notes.txt").write_text("not a crystal\n")  # not a crystal file: not read
    assert len(read_crystals(folder)) == 3
    (folder / "c.cif").write_text("data_broken\n_cell_length_a 1_000\n")
    with pytest.raises(CrystalInputError, match="c.cif"):
        read_crystals(folder)


def test_read_crystals_takes_a_list_of_paths(tmp_path, classic):
    from nesf.io.writers import write_cif

    write_cif(tmp_path / "a.cif", classic[0])
    write_cif(tmp_path / "b.cif", classic[1])
    crystals = read_crystals([tmp_path / "a.cif", str(tmp_path / "b.cif"), classic[2]])
    assert [c.n_atoms for c in crystals] == [classic[0].n_atoms, classic[1].n_atoms, classic[2].n_atoms]


def test_primitive_reduction_never_erases_a_distortion():
    from pymatgen.core import Lattice, Structure

    from nesf.data.setting import PRIMITIVE_EXACTNESS, canonical_setting, primitive_cell

    rutile = Structure(
        Lattice.tetragonal(4.594, 2.959),
        ["Ti", "Ti", "O", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.305, 0.305, 0], [0.695, 0.695, 0], [0.805, 0.195, 0.5], [0.195, 0.805, 0.5]],
    )
    rutile.make_supercell([1, 1, 5])
    ideal = Crystal.from_pymatgen(rutile, id="rutile-30")
    prim, m = primitive_cell(ideal)
    assert prim.n_atoms == 6 and round(abs(np.linalg.det(m))) == 5
    rng = np.random.default_rng(0)
    step = rng.normal(size=ideal.cart.shape)
    distorted = Crystal(
        ideal.lattice, ideal.cart + 0.08 * step / np.linalg.norm(step, axis=1, keepdims=True), ideal.numbers
    )
    prim, m = primitive_cell(distorted)
    assert prim.n_atoms == 30 and np.array_equal(m, np.eye(3))
    canon, transform = canonical_setting(distorted, origin="roomiest", primitive=True)
    assert canon.n_atoms == 30 and transform.cells == 1
    tiny = Crystal(ideal.lattice, ideal.cart + 0.1 * PRIMITIVE_EXACTNESS * step / np.linalg.norm(step), ideal.numbers)
    assert primitive_cell(tiny)[0].n_atoms == 6  # rounding noise is still reduced


def test_properties_travel_with_crystals_through_csv_and_extxyz(tmp_path, classic):
    import csv

    from pymatgen.io.cif import CifWriter

    from nesf.io.writers import write_extxyz

    path = tmp_path / "props.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", "material_id", "cif", "heat_ref", "formula", "n"])
        for i, c in enumerate(classic[:2]):
            writer.writerow([i, f"m{i}", str(CifWriter(c.to_pymatgen())), 0.25 * (i + 1), c.formula, i])
    crystals = read_crystals(path)
    assert crystals[1].info["properties"] == {"heat_ref": 0.5, "formula": classic[1].formula, "n": 1}
    write_extxyz(tmp_path / "out.extxyz", crystals)
    back = read_crystals(tmp_path / "out.extxyz")
    assert [c.id for c in back] == ["m0", "m1"]
    assert back[1].info["properties"] == {"heat_ref": 0.5, "formula": classic[1].formula, "n": 1}


def test_checkpoints_without_hash_or_with_a_changed_card_are_refused(tmp_path):
    from nesf.api import resolve_model_path
    from nesf.training.checkpoint import load_checkpoint

    ck = torch.load(resolve_model_path("lim_l6"), weights_only=True)
    forged = dict(ck)
    forged.pop("sha256")
    forged.pop("file_sha256")
    forged["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    torch.save(forged, tmp_path / "forged.pt")
    with pytest.raises(CheckpointError, match="no SHA-256"):
        load_checkpoint(tmp_path / "forged.pt")
    flipped = dict(ck)
    card = dict(ck["model_card"])
    card["test_metrics"] = dict(card["test_metrics"], match_rate_pct=99.99)
    flipped["model_card"] = card
    torch.save(flipped, tmp_path / "card.pt")
    with pytest.raises(CheckpointError, match="model card"):
        load_checkpoint(tmp_path / "card.pt")
    older = dict(flipped)
    older.pop("file_sha256")
    older["format_version"] = 1
    torch.save(older, tmp_path / "older.pt")
    with pytest.raises(CheckpointError, match="model card is not covered"):
        load_checkpoint(tmp_path / "older.pt")


def test_decode_refuses_latents_written_by_another_model(tmp_path, capsys):
    from nesf.api import NeSF
    from nesf.cli import main

    sha = NeSF.load("perov_5").info["sha256"]
    np.savez(
        tmp_path / "z.npz",
        latents=np.zeros((1, 192), dtype=np.float32),
        ids=np.array(["a"]),
        model=np.array("perov_5"),
        model_sha256=np.array(sha),
    )
    assert main(["decode", "--model", "mp", str(tmp_path / "z.npz"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "perov_5" in err and "--model perov_5" in err
    assert not (tmp_path / "out").exists()


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path):
    from nesf.io.writers import staged_folder

    stale = tmp_path / ".out.abc123.tmp"
    stale.mkdir()
    (stale / "half.cif").write_text("x")
    dead = tmp_path / ".out.nesf-999999999-x.tmp"
    dead.mkdir()
    with staged_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    assert not stale.exists() and not dead.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_demo_refuses_a_non_empty_out_folder_before_any_work(tmp_path, capsys):
    from nesf.cli import main

    out = tmp_path / "demo"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    start = time.perf_counter()
    assert main(["demo", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me" and time.perf_counter() - start < 10


def test_a_block_without_any_symmetry_says_so(tmp_path):
    text = nacl().replace("loop_\n _symmetry_equiv_pos_as_xyz\n  'x, y, z'\n", "")
    refused(tmp_path, text, "names no space group")
