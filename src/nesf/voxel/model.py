"""ICSG3D-style networks: a 3D-convolutional VAE with a lattice head, and a species-segmenting 3D U-Net.

After Court et al., J. Chem. Inf. Model. 60, 4518 (2020): the VAE compresses the ``d^3`` density
of a crystal (see :mod:`nesf.voxel.grid`) to a latent vector, decodes it back to a density and
predicts the six lattice parameters from the latent; a separate U-Net labels each voxel of a
(decoded) density with a species class (0 = background).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class VoxelConfig:
    """Architecture, voxelisation and training settings of the voxel autoencoder.

    Attributes:
        d: voxels per axis of the density grid (a multiple of ``2 ** len(channels)``).
        latent_dim: size of the latent code.
        channels: output channels of the encoder's conv blocks (each halves the grid); the
            decoder mirrors them with transposed convolutions.
        unet_channels: channels of the U-Net levels (each level after the first halves the grid).
        lattice_hidden: hidden width of the lattice head.
        sigma_factor: Gaussian width of an atom as a fraction of its covalent radius.
        label_factor: radius of an atom's label sphere as a fraction of its covalent radius.
        w_density: weight of the density MSE.
        w_kl: weight of the KL divergence (mean over latent dimensions and crystals).
        w_lattice: weight of the MSE of the standardised lattice parameters.
        w_species: weight of the U-Net's voxel cross-entropy.
        unet_on_decoded: also train the U-Net on the VAE's decoded densities (detached), which
            are what it sees when decoding; the true labels are the target in both cases.
        augment: rotation augmentation of the training crystals: ``"none"``, ``"cubic"`` (one
            of the 24 rotations of the cube per crystal and step; exact for cubic cells) or
            ``"any"`` (uniform rotations of the crystal behind a fixed sampling box).
        lr: Adam learning rate.
        epochs: default number of epochs.
        batch_size: crystals per step.
        grad_clip: clip the gradient norm (0: off).
    """

    d: int = 32
    latent_dim: int = 256
    channels: tuple[int, ...] = (32, 64, 128, 256)
    unet_channels: tuple[int, ...] = (16, 32, 64)
    lattice_hidden: int = 128
    sigma_factor: float = 0.5
    label_factor: float = 1.0
    w_density: float = 10.0
    w_kl: float = 1e-3
    w_lattice: float = 1.0
    w_species: float = 1.0
    unet_on_decoded: bool = False
    augment: str = "none"
    lr: float = 1e-3
    epochs: int = 100
    batch_size: int = 16
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.unet_channels = tuple(int(c) for c in self.unet_channels)
        if not self.channels or not self.unet_channels:
            raise ValueError("channels and unet_channels need at least one entry")
        down = 2 ** len(self.channels)
        if self.d < down or self.d % down:
            raise ValueError(
                f"d={self.d} must be a positive multiple of {down} (the encoder halves it {len(self.channels)} times)"
            )
        unet_down = 2 ** (len(self.unet_channels) - 1)
        if self.d % unet_down:
            levels = len(self.unet_channels)
            raise ValueError(f"d={self.d} must be a multiple of {unet_down} for the U-Net's {levels} levels")
        if self.augment not in ("none", "cubic", "any"):
            raise ValueError(f"augment must be 'none', 'cubic' or 'any', got {self.augment!r}")
        if self.sigma_factor <= 0 or self.label_factor <= 0:
            raise ValueError("sigma_factor and label_factor must be positive")
        if self.latent_dim < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("latent_dim and batch_size must be at least 1 and lr positive")


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv3d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.ReLU(inplace=True)]


class VoxelVAE(nn.Module):
    """3D-convolutional VAE of density grids, with a lattice head on the latent.

    Encoder: per block Conv3d 3^3 -> BatchNorm3d -> ReLU -> MaxPool 2 (``d -> d / 2``); a linear
    layer maps the flattened features to the latent mean and log-variance. Decoder: a linear layer
    back to the coarsest grid, then per block ConvTranspose3d (kernel 4, stride 2) -> BatchNorm3d
    -> ReLU, and a final 3^3 convolution to one channel (the density, no activation). Lattice
    head: MLP from the latent to the six standardised lattice parameters.

    Args:
        cfg: the configuration.
        lattice_mean: ``[6]`` mean of (a, b, c in A; alpha, beta, gamma in rad) for standardising.
        lattice_std: ``[6]`` their standard deviations.
    """

    def __init__(
        self, cfg: VoxelConfig, lattice_mean: torch.Tensor | None = None, lattice_std: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        blocks: list[nn.Module] = []
        c_in = 1
        for c in ch:
            blocks += [*_conv_bn_relu(c_in, c), nn.MaxPool3d(2)]
            c_in = c
        self.encoder = nn.Sequential(*blocks)
        self.coarse = cfg.d // 2 ** len(ch)
        flat = ch[-1] * self.coarse**3
        self.to_mu = nn.Linear(flat, cfg.latent_dim)
        self.to_logvar = nn.Linear(flat, cfg.latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(cfg.latent_dim, flat), nn.ReLU(inplace=True))
        outs = [*reversed(ch[:-1]), ch[0]]
        up: list[nn.Module] = []
        c_in = ch[-1]
        for c in outs:
            up += [nn.ConvTranspose3d(c_in, c, 4, stride=2, padding=1, bias=False), nn.BatchNorm3d(c), nn.ReLU(True)]
            c_in = c
        up.append(nn.Conv3d(c_in, 1, 3, padding=1))
        self.decoder = nn.Sequential(*up)
        self.lattice_head = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.lattice_hidden), nn.ReLU(inplace=True), nn.Linear(cfg.lattice_hidden, 6)
        )
        mean = lattice_mean if lattice_mean is not None else torch.zeros(6)
        std = lattice_std if lattice_std is not None else torch.ones(6)
        self.register_buffer("lattice_mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("lattice_std", torch.as_tensor(std, dtype=torch.float32).clone())

    def encode(self, density: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent mean and log-variance ``[B, latent]`` of densities ``[B, d, d, d]``."""
        h = self.encoder(density.unsqueeze(1)).flatten(1)
        return self.to_mu(h), self.to_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Densities ``[B, d, d, d]`` from latents ``[B, latent]``."""
        h = self.from_latent(z).view(len(z), self.cfg.channels[-1], self.coarse, self.coarse, self.coarse)
        return self.decoder(h).squeeze(1)

    def normalize_lattice(self, params: torch.Tensor) -> torch.Tensor:
        """``[B, 6]`` lattice parameters (A, rad) -> standardised ones."""
        return (params - self.lattice_mean) / self.lattice_std

    def lattice_normalized(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised lattice prediction ``[B, 6]`` from latents ``[B, latent]``."""
        return self.lattice_head(z)

    def decode_lattice(self, z: torch.Tensor) -> torch.Tensor:
        """Lattice parameters ``[B, 6]``: a, b, c (A, at least 0.5) and alpha, beta, gamma (rad, 0.35-2.8)."""
        params = self.lattice_head(z) * self.lattice_std + self.lattice_mean
        return torch.cat([params[:, :3].clamp(min=0.5), params[:, 3:].clamp(min=0.35, max=2.8)], dim=-1)

    def forward(
        self, density: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction ``[B, d, d, d]``, standardised lattice ``[B, 6]``, mean and log-variance ``[B, latent]``.

        ``sample`` draws the latent from the posterior with noise from ``generator`` (CPU), else
        the latent is the mean.
        """
        mu, logvar = self.encode(density)
        z = mu
        if sample:
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
            z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode(z), self.lattice_normalized(z), mu, logvar


class SpeciesUNet(nn.Module):
    """3D U-Net mapping a density ``[B, d, d, d]`` to species logits ``[B, C, d, d, d]``.

    Each level has two Conv3d 3^3 -> BatchNorm3d -> ReLU layers; levels are joined by max-pooling
    on the way down and by ConvTranspose3d (kernel 2, stride 2) plus skip connections on the way up;
    a 1^3 convolution gives one logit per class (class 0 = background, ``1 + i`` = species ``i``).

    Args:
        channels: channels per level (``len(channels) - 1`` halvings of the grid).
        n_classes: number of classes, background included.
    """

    def __init__(self, channels: tuple[int, ...], n_classes: int) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c_in = 1
        for c in channels:
            self.down.append(nn.Sequential(*_conv_bn_relu(c_in, c), *_conv_bn_relu(c, c)))
            c_in = c
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.up.append(nn.ConvTranspose3d(c_in, c, 2, stride=2))
            self.merge.append(nn.Sequential(*_conv_bn_relu(2 * c, c), *_conv_bn_relu(c, c)))
            c_in = c
        self.head = nn.Conv3d(c_in, n_classes, 1)
        self.pool = nn.MaxPool3d(2)

    def forward(self, density: torch.Tensor) -> torch.Tensor:
        """Species logits ``[B, C, d, d, d]`` of densities ``[B, d, d, d]``."""
        h = density.unsqueeze(1)
        skips = []
        for k, block in enumerate(self.down):
            if k:
                h = self.pool(h)
            h = block(h)
            skips.append(h)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            h = merge(torch.cat([up(h), skip], dim=1))
        return self.head(h)


class VoxelModel(nn.Module):
    """The voxel autoencoder: :class:`VoxelVAE` (density and lattice) + :class:`SpeciesUNet` (species).

    Args:
        cfg: the configuration.
        n_species: species in the vocabulary (the U-Net has ``n_species + 1`` classes).
        lattice_mean: ``[6]`` lattice standardisation mean (A, rad).
        lattice_std: ``[6]`` lattice standardisation standard deviation.
    """

    def __init__(
        self,
        cfg: VoxelConfig,
        n_species: int,
        lattice_mean: torch.Tensor | None = None,
        lattice_std: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_species = n_species
        self.vae = VoxelVAE(cfg, lattice_mean, lattice_std)
        self.unet = SpeciesUNet(cfg.unet_channels, n_species + 1)

    def forward(self, density: torch.Tensor) -> dict[str, torch.Tensor]:
        """Deterministic round trip of densities ``[B, d, d, d]`` (latent = posterior mean).

        Returns:
            ``density`` ``[B, d, d, d]`` (decoded), ``lattice`` ``[B, 6]`` (A, rad),
            ``logits`` ``[B, C, d, d, d]`` (U-Net on the decoded density), ``z`` ``[B, latent]``.
        """
        mu, _ = self.vae.encode(density)
        decoded = self.vae.decode(mu)
        return {"density": decoded, "lattice": self.vae.decode_lattice(mu), "logits": self.unet(decoded), "z": mu}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["SpeciesUNet", "VoxelConfig", "VoxelModel", "VoxelVAE", "count_parameters"]
