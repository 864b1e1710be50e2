"""Hostile inputs: nothing is silently lost or changed, nothing hangs, every refusal names the file."""

from __future__ import annotations

import time

import pytest
import torch

from nesf.api import NeSF
from nesf.data.crystal import LIMITS
from nesf.data.readers import read_crystals
from nesf.errors import CheckpointError, CrystalInputError
from nesf.training.checkpoint import save_checkpoint

NACL = """data_{name}
_symmetry_space_group_name_H-M   '{sg}'
_cell_length_a   {a}
_cell_length_b   5.64
_cell_length_c   5.64
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   {gamma}
{symloop}loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Na  Na1  0  0  0  {occ}
  Cl  Cl1  0.5  0.5  0.5  1
"""


def nacl(name="NaCl", sg="F m -3 m", a="5.64", gamma="90", symloop="", occ="1") -> str:
    return NACL.format(name=name, sg=sg, a=a, gamma=gamma, symloop=symloop, occ=occ)


def refused(tmp_path, name: str, text: str, *needles: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CrystalInputError) as info:
        read_crystals(path)
    message = str(info.value)
    assert name in message and "\n" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_a_good_cif_reads_whole(tmp_path):
    path = tmp_path / "ok.cif"
    path.write_text(nacl())
    assert read_crystals(path)[0].n_atoms == 8


@pytest.mark.parametrize("occ", ["-1", "0", "nan", "1.5"])
def test_occupancy_outside_0_1_is_refused(tmp_path, occ):
    refused(tmp_path, "occ.cif", nacl(occ=occ), "occupancy")


def test_unknown_space_group_without_operations_is_not_read_as_p1(tmp_path):
    refused(tmp_path, "sg.cif", nacl(sg="X q 9"), "space group")


def test_empty_symmetry_operation_is_refused(tmp_path):
    loop = "loop_\n _symmetry_equiv_pos_as_xyz\n 'x, y, z'\n ''\n"
    refused(tmp_path, "op.cif", nacl(sg="P 1", symloop=loop), "empty symmetry operation")


def test_an_enormous_symmetry_operation_is_refused_at_once(tmp_path):
    loop = "loop_\n _symmetry_equiv_pos_as_xyz\n 'x+" + "1" * 5000 + ", y, z'\n"
    t0 = time.perf_counter()
    refused(tmp_path, "long.cif", nacl(sg="P 1", symloop=loop), "characters")
    assert time.perf_counter() - t0 < 5


def test_duplicate_block_names_are_refused_and_distinct_blocks_all_read(tmp_path):
    refused(tmp_path, "dup.cif", nacl("X") + nacl("X"), "two data blocks")
    path = tmp_path / "two.cif"
    path.write_text("\ufeff" + nacl("A") + nacl("B"))  # a byte-order mark does not hide the first block
    assert [c.n_atoms for c in read_crystals(path)] == [8, 8]


def test_duplicate_blocks_inside_a_csv_row_are_refused(tmp_path):
    import csv

    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "cif"])
        w.writerow(["x", nacl("X") + nacl("X")])
    with pytest.raises(CrystalInputError, match="row 1.*two data blocks"):
        read_crystals(path)


@pytest.mark.parametrize(
    "a, gamma, needle",
    [("5.64", "400", "angle"), ("5.64", "1e308", "angle"), ("-5.64", "90", "length"), ("1e308", "90", "limit")],
)
def test_impossible_cells_are_refused(tmp_path, a, gamma, needle):
    refused(tmp_path, "cell.cif", nacl(a=a, gamma=gamma), needle)


def test_expansion_beyond_the_atom_limit_is_refused_before_it_happens(tmp_path):
    rows = [f"  C  C{k}  {0.013 * k % 1:.4f}  {0.031 * k % 1:.4f}  {0.047 * k % 1:.4f}  1" for k in range(200)]
    sites = "\n".join(rows)
    text = nacl().split(" Na  Na1")[0].replace("5.64", "50") + sites + "\n"
    t0 = time.perf_counter()
    refused(tmp_path, "big.cif", text, "symmetry expansion", "--max-atoms")
    assert time.perf_counter() - t0 < 10


def test_extxyz_without_positions_or_with_an_absurd_count_is_refused(tmp_path):
    lattice = 'Lattice="4 0 0 0 4 0 0 0 4" Properties=species:S:1 pbc="T T T"'
    refused(tmp_path, "nopos.extxyz", f"2\n{lattice}\nNa\nCl\n", "no positions")
    good = 'Lattice="4 0 0 0 4 0 0 0 4" Properties=species:S:1:pos:R:3 pbc="T T T"'
    t0 = time.perf_counter()
    refused(tmp_path, "count.extxyz", f"1000000000\n{good}\nNa 0 0 0\n", "declares 1000000000 atoms")
    assert time.perf_counter() - t0 < 5
    refused(tmp_path, "overlap.extxyz", f"2\n{good}\nNa 0 0 0\nCl 0 0 0\n", "overlapping atoms")
    big = 'Lattice="1e30 0 0 0 4 0 0 0 4" Properties=species:S:1:pos:R:3 pbc="T T T"'
    refused(tmp_path, "huge.extxyz", f"1\n{big}\nNa 0 0 0\n", "limit")
    path = tmp_path / "bom.extxyz"
    path.write_text(f"\ufeff2\n{good}\nNa 0 0 0\nCl 2 2 2\n")
    assert read_crystals(path)[0].n_atoms == 2


def test_max_atoms_is_configurable(tmp_path):
    path = tmp_path / "ok.cif"
    path.write_text(nacl())
    old = LIMITS.max_atoms
    try:
        LIMITS.max_atoms = 4
        with pytest.raises(CrystalInputError, match="limit of 4"):
            read_crystals(path)
    finally:
        LIMITS.max_atoms = old


def test_a_csv_without_header_gives_one_line(tmp_path):
    path = tmp_path / "nohead.csv"
    path.write_text('"' + nacl() + '"\n')
    with pytest.raises(CrystalInputError) as info:
        read_crystals(path)
    assert "no 'cif' column" in str(info.value) and "\n" not in str(info.value)


def test_cr_only_csv_line_endings_are_read(tmp_path):
    text = 'material_id,cif\r"x","' + nacl().replace("\n", "\r") + '"\r'
    path = tmp_path / "cr.csv"
    path.write_bytes(text.encode())
    assert read_crystals(path)[0].n_atoms == 8


def test_checkpoints_with_a_string_config_or_of_another_kind_are_refused_clearly(tmp_path):
    path = tmp_path / "str.pt"
    save_checkpoint(path, {"model_config": "nonsense", "vocab": {"numbers": [8]}, "state_dict": {}})
    with pytest.raises(CheckpointError, match="inconsistent"):
        NeSF.load(path)
    voxel = tmp_path / "vox.pt"
    save_checkpoint(voxel, {"kind": "voxel", "model_config": {}, "vocab": {"numbers": [8]}, "state_dict": {}})
    with pytest.raises(CheckpointError, match="a voxel checkpoint"):
        NeSF.load(voxel)
    assert torch.__version__  # torch imported: the checkpoints above were written with it


def test_a_checkpoint_with_nan_weights_is_refused_naming_it(tmp_path):
    from nesf.models.autoencoder import NeSFModel
    from nesf.models.config import ModelConfig, config_to_dict

    cfg = ModelConfig(
        latent_dim=8,
        encoder_atom_dims=(8, 8),
        encoder_shared_dims=(8,),
        encoder_head_dims=(8,),
        position_dims=(8,),
        species_dims=(8,),
    )
    state = NeSFModel(cfg, 2).state_dict()
    state["position_decoder.out.weight"][0, 0] = float("nan")
    path = tmp_path / "diverged.pt"
    save_checkpoint(path, {"model_config": config_to_dict(cfg), "vocab": {"numbers": [8, 14]}, "state_dict": state})
    with pytest.raises(CheckpointError, match="diverged.pt.*NaN"):
        NeSF.load(path)
