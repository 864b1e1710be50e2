"""Small configurations and crystals shared by the voxel tests."""

from __future__ import annotations

from nesf.voxel.model import VoxelConfig

#: A tiny voxel autoencoder: trains a step in a fraction of a second on one CPU thread.
TINY = dict(d=16, latent_dim=16, channels=(4, 8, 8, 8), unet_channels=(4, 8), lattice_hidden=16, batch_size=4, epochs=2)


def tiny_config(**changes) -> VoxelConfig:
    return VoxelConfig(**{**TINY, **changes})


def shipped_examples() -> list:
    """The example crystals shipped with nesf (read from the package, fast)."""
    from importlib import resources

    from nesf.data.readers import read_crystals

    return read_crystals(str(resources.files("nesf") / "examples" / "classic_crystals.extxyz"))
