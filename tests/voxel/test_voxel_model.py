"""Voxel networks: shapes at d = 16 and 32, configuration checks, parameter counts."""

from __future__ import annotations

import pytest
import torch
from voxel_helpers import tiny_config

from nesf.models.config import config_from_dict, config_to_dict
from nesf.voxel.model import SpeciesUNet, VoxelConfig, VoxelModel, count_parameters


@pytest.mark.parametrize("d", [16, 32])
def test_forward_shapes(d):
    cfg = tiny_config(d=d)
    torch.manual_seed(0)
    model = VoxelModel(cfg, n_species=5).eval()
    density = torch.rand(2, d, d, d)
    with torch.no_grad():
        out = model(density)
        decoded, lattice, mu, logvar = model.vae(density, generator=torch.Generator().manual_seed(0))
    assert out["density"].shape == decoded.shape == (2, d, d, d)
    assert out["logits"].shape == (2, 6, d, d, d)
    assert out["lattice"].shape == lattice.shape == (2, 6)
    assert out["z"].shape == mu.shape == logvar.shape == (2, cfg.latent_dim)
    assert torch.all(out["lattice"][:, :3] >= 0.5)
    assert torch.all((out["lattice"][:, 3:] >= 0.35) & (out["lattice"][:, 3:] <= 2.8))


def test_default_architecture_is_icsg3d_like():
    cfg = VoxelConfig()
    assert cfg.d == 32 and cfg.latent_dim == 256 and len(cfg.channels) == 4
    model = VoxelModel(cfg, n_species=3)
    convs = [m for m in model.vae.encoder if isinstance(m, torch.nn.Conv3d)]
    assert len(convs) == 4
    assert model.vae.to_mu.out_features == model.vae.to_logvar.out_features == 256
    assert count_parameters(model) > count_parameters(model.unet) > 0
    assert isinstance(model.unet, SpeciesUNet)


def test_config_round_trip_and_errors():
    cfg = tiny_config(augment="cubic")
    back = config_from_dict(VoxelConfig, config_to_dict(cfg))
    assert back == cfg and isinstance(back.channels, tuple)
    with pytest.raises(ValueError, match="multiple of 16"):
        VoxelConfig(d=24)
    with pytest.raises(ValueError, match="augment"):
        VoxelConfig(augment="mirror")
    with pytest.raises(ValueError, match="U-Net"):
        VoxelConfig(d=16, channels=(4,), unet_channels=(4, 4, 4, 4, 4, 4))
