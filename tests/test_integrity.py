"""Checkpoint integrity: a SHA-256 of weights and configuration, checked at every load."""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest
import torch

from nesf.cli import main
from nesf.errors import CheckpointError
from nesf.training.checkpoint import content_hash, load_checkpoint, remove_stale_temporaries, save_checkpoint


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    payload = {
        "model_config": {"frame": "periodic", "latent_dim": 4},
        "vocab": {"numbers": [8, 14]},
        "state_dict": {"a.weight": torch.randn(16, 8), "a.bias": torch.randn(16)},
    }
    path = tmp_path / "m.pt"
    save_checkpoint(path, payload)
    return path


def tensor_data_ranges(path) -> list[tuple[int, int]]:
    """(start, end) byte ranges of the tensors' raw data inside a torch zip archive."""
    raw = path.read_bytes()
    out = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if "/data/" not in info.filename:
                continue
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
            start = info.header_offset + 30 + name_len + extra_len
            out.append((start, start + info.compress_size))
    return out


def test_a_checkpoint_carries_a_hash_that_load_checks(saved):
    ck = load_checkpoint(saved)
    assert len(ck["sha256"]) == 64 and ck["sha256"] == content_hash(ck)


def test_one_flipped_bit_anywhere_in_the_weights_is_refused(saved, tmp_path):
    raw = bytearray(saved.read_bytes())
    ranges = tensor_data_ranges(saved)
    assert ranges
    rng = np.random.default_rng(0)
    for trial in range(40):
        start, end = ranges[trial % len(ranges)]
        pos = int(rng.integers(start, end))
        bad = bytearray(raw)
        bad[pos] ^= 1 << int(rng.integers(8))
        path = tmp_path / f"bad{trial}.pt"
        path.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError, match="bad"):
            load_checkpoint(path)


def test_export_refuses_a_corrupted_source(saved, tmp_path, capsys):
    raw = bytearray(saved.read_bytes())
    start, _ = tensor_data_ranges(saved)[0]
    raw[start + 3] ^= 0x10
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(raw))
    assert main(["export", str(bad), "--out", str(tmp_path / "x.pt")]) == 2
    assert "bad.pt" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_stale_temporary_checkpoints_are_removed(tmp_path):
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"partial")
    keep = tmp_path / "notes.tmp"
    keep.write_text("not ours")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and keep.exists()


def test_the_registry_names_each_kind_as_its_module_does():
    import importlib

    from nesf.design import crystal_head, evaluator, head
    from nesf.generation import prior
    from nesf.registry import ARTEFACT_LOADERS, VOXEL_KIND
    from nesf.voxel import train

    assert VOXEL_KIND == train.KIND
    assert set(ARTEFACT_LOADERS) == {prior.KIND, head.KIND, crystal_head.KIND, evaluator.KIND}
    for target in ARTEFACT_LOADERS.values():
        module, name = target.split(":")
        assert callable(getattr(importlib.import_module(module), name))


def test_a_checkpoints_decoding_record_sets_its_defaults_and_not_its_identity(tmp_path):
    from nesf.api import NeSF
    from nesf.registry import resolve_model_path

    ck = load_checkpoint(resolve_model_path("perov_5"))
    drop = ("sha256", "file_sha256", "format", "format_version", "sampling")  # no record of its own samples here
    payload = {k: v for k, v in ck.items() if k not in drop}
    plain = NeSF.load("perov_5")
    assert plain.settings.symmetrize is False
    save_checkpoint(tmp_path / "sym.pt", {**payload, "decoding": {"symmetrize": True, "polish_steps": 1}})
    model = NeSF.load(tmp_path / "sym.pt")
    assert model.settings.symmetrize is True and model.settings.polish_steps == 1
    assert model.info["sha256"] == plain.info["sha256"]  # priors and heads still belong to it
    assert model.with_settings(symmetrize=False).settings.symmetrize is False
    # polishing and the record are for round trips: samples get them only when asked explicitly
    assert model.for_sampling().settings.symmetrize is False
    assert model.for_sampling().settings.polish_steps == 0
    chosen = model.with_settings(symmetrize=True, polish_steps=1).for_sampling().settings
    assert chosen.symmetrize is True and chosen.polish_steps == 1
    save_checkpoint(tmp_path / "bad.pt", {**payload, "decoding": {"symmetrise": True}})
    with pytest.raises(CheckpointError, match="unknown settings: symmetrise"):
        NeSF.load(tmp_path / "bad.pt")


def test_a_checkpoints_sampling_record_sets_what_samples_get(tmp_path):
    from nesf.api import NeSF
    from nesf.registry import resolve_model_path

    ck = load_checkpoint(resolve_model_path("perov_5"))
    payload = {k: v for k, v in ck.items() if k not in ("sha256", "file_sha256", "format", "format_version")}
    save_checkpoint(tmp_path / "s.pt", {**payload, "sampling": {"species_min_atoms": 0.4}})
    model = NeSF.load(tmp_path / "s.pt")
    assert model.info["sha256"] == NeSF.load("perov_5").info["sha256"]
    assert model.settings.species_min_atoms == 0  # round trips keep every atom's own vote
    assert model.for_sampling().settings.species_min_atoms == 0.4
    assert model.for_sampling().settings.symmetrize is False  # the record is replaced whole
    shipped = NeSF.load("perov_5")  # its own record: samples symmetrised, round trips not
    assert shipped.for_sampling().settings.symmetrize is True and shipped.settings.symmetrize is False
    assert model.with_settings(species_min_atoms=0.0).for_sampling().settings.species_min_atoms == 0
    save_checkpoint(tmp_path / "bad.pt", {**payload, "sampling": {"species_min_atom": 1}})
    with pytest.raises(CheckpointError, match="unknown settings: species_min_atom"):
        NeSF.load(tmp_path / "bad.pt")
