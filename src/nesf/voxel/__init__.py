"""ICSG3D-style voxel autoencoder: the baseline NeSF was published against.

After Court et al., J. Chem. Inf. Model. 60, 4518 (2020): crystals become Gaussian density
grids over their cell plus a 25 % margin (:mod:`nesf.voxel.grid`), a 3D-convolutional VAE
compresses and restores the grid and predicts the lattice, a 3D U-Net labels voxels with
species (:mod:`nesf.voxel.model`), and atoms are read off the density's peaks
(:mod:`nesf.voxel.extract`). :class:`VoxelAutoencoder` has the interface of
:class:`nesf.api.NeSF`; :func:`load_any` opens either kind of checkpoint (:func:`nesf.registry.load_model`
opens every kind).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nesf.registry import checkpoint_kind, load_model
from nesf.voxel.api import VoxelAutoencoder
from nesf.voxel.extract import ExtractionSettings, extract_crystals
from nesf.voxel.grid import random_rotations, voxelize
from nesf.voxel.model import VoxelConfig, VoxelModel
from nesf.voxel.train import train_voxel


def load_any(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Load a checkpoint (path or shipped model name) as :class:`nesf.api.NeSF` or :class:`VoxelAutoencoder`.

    :func:`nesf.registry.load_model` without latent priors: dispatches on the checkpoint's
    ``"kind"`` key (absent in NeSF checkpoints); the file is read once, with ``weights_only=True``.

    Raises:
        CheckpointError: missing, corrupted or foreign file.
    """
    return load_model(path, device=device, priors=False)


__all__ = [
    "ExtractionSettings",
    "VoxelAutoencoder",
    "VoxelConfig",
    "VoxelModel",
    "checkpoint_kind",
    "extract_crystals",
    "load_any",
    "random_rotations",
    "train_voxel",
    "voxelize",
]
