"""Voxel training: checkpoints, loading through the NeSF-like API, determinism, dispatch."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from voxel_helpers import shipped_examples, tiny_config

from nesf.api import NeSF
from nesf.data.crystal import Crystal
from nesf.errors import CheckpointError, UnknownElementError
from nesf.metrics.report import evaluate_reconstruction
from nesf.training.checkpoint import load_checkpoint
from nesf.voxel import VoxelAutoencoder, checkpoint_kind, load_any, train_voxel
from nesf.voxel.train import VoxelTrainer


@pytest.fixture(scope="module")
def tiny_sets():
    small = [c for c in shipped_examples() if c.n_atoms <= 10 and "skewed" not in c.id and "triclinic" not in c.id]
    return small[:6], small[6:8]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_sets):
    out = tmp_path_factory.mktemp("voxel")
    result = train_voxel(*tiny_sets, out, tiny_config(), epochs=2, seed=1, progress=False)
    return out, result


def test_training_writes_checkpoints_that_load(trained, tiny_sets):
    out, result = trained
    assert result.epochs == 2 and len(result.history) == 2 and result.steps == 4
    for name in ("last.pt", "best.pt", "history.csv", "learning_curve.png"):
        assert (out / name).is_file(), name
    ck = load_checkpoint(out / "last.pt")
    assert ck["kind"] == "voxel" and ck["model_config"]["d"] == 16 and "training" in ck
    assert checkpoint_kind(out / "best.pt") == "voxel"
    with open(out / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"train_density", "val_species", "val_lattice", "val_kl"} <= rows[0].keys()

    model = VoxelAutoencoder.load(out / "best.pt")
    assert model.frame == "periodic" and model.latent_dim == 16
    assert set(model.settings.to_dict()) >= {"threshold", "batch_size"}
    crystals = model.prepare([c.to_pymatgen() for c in tiny_sets[1]])
    z = model.encode_crystals(crystals)
    assert z.shape == (2, 16)
    pred = model.with_settings(threshold=0.05).reconstruct_crystals(crystals)
    assert len(pred) == 2 and all(isinstance(p, Crystal) for p in pred)
    assert [p.id for p in pred] == [c.id for c in crystals]
    assert all(p.lattice.shape == (3, 3) and np.all(np.isfinite(p.lattice)) for p in pred)
    metrics = evaluate_reconstruction(crystals, pred, model.frame, match=False)
    assert metrics["n_structures"] == 2
    assert len(model.decode(z.numpy())) == 2


def test_with_settings_maps_and_ignores():
    from nesf.data.vocab import SpeciesVocab
    from nesf.voxel.model import VoxelModel

    model = VoxelAutoencoder(VoxelModel(tiny_config(), 1), SpeciesVocab((8,)))
    other = model.with_settings(batch_size=3, grid_spacing=0.25, n_steps=10)
    assert other.settings.batch_size == 3 and other.model is model.model
    assert model.settings.batch_size != 3
    with pytest.raises(ValueError, match="unknown voxel decoding setting"):
        model.with_settings(nms_radius=0.1)
    with pytest.raises(UnknownElementError):
        model.encode_crystals([Crystal(np.eye(3) * 3, [[0, 0, 0]], [11])])


def test_same_seed_same_losses(tmp_path, tiny_sets):
    train, val = tiny_sets
    runs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        trainer = VoxelTrainer(train, val, tmp_path / name, tiny_config(), seed=seed, progress=False)
        runs.append([trainer.train_step(torch.arange(4)) for _ in range(2)])
    assert runs[0] == runs[1]
    assert runs[0][0]["loss"] != runs[2][0]["loss"]


def test_dispatch_and_refusals(trained, tmp_path):
    out, _ = trained
    assert isinstance(load_any(out / "best.pt"), VoxelAutoencoder)
    with pytest.raises(CheckpointError):
        NeSF.load(out / "best.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        VoxelAutoencoder.load(bad)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        VoxelAutoencoder.load(tmp_path / "missing.pt")


def test_nesf_checkpoint_is_refused_by_the_voxel_loader(tmp_path, tiny_sets):
    from nesf.training.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "nesf.pt", {"model_config": {}, "vocab": {"numbers": [8]}, "state_dict": {}})
    with pytest.raises(CheckpointError, match="not a voxel-autoencoder checkpoint"):
        VoxelAutoencoder.load(path)
    assert checkpoint_kind(path) == "nesf"


def test_resume_and_minutes_budget(tmp_path, tiny_sets):
    train, val = tiny_sets
    full = train_voxel(train, val, tmp_path / "full", tiny_config(), epochs=2, seed=2, progress=False)
    half = train_voxel(train, val, tmp_path / "half", tiny_config(), epochs=1, seed=2, progress=False)
    assert half.epochs == 1
    resumed = train_voxel(train, val, tmp_path / "half", tiny_config(), epochs=2, seed=2, progress=False, resume=True)
    assert resumed.history[-1]["train_loss"] == full.history[-1]["train_loss"]
    short = train_voxel(train, val, tmp_path / "short", tiny_config(), epochs=50, minutes=1e-6, progress=False)
    assert short.steps == 1 and (tmp_path / "short" / "best.pt").is_file()
