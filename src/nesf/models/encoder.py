"""PointNet-style crystal encoder."""

from __future__ import annotations

import math

import torch
from torch import nn

from nesf.models.config import ModelConfig
from nesf.models.layers import FourierCellEncoding, mlp


def half_miller_indices(h_max: int) -> torch.Tensor:
    """Integer vectors ``[K, 3]`` with ``|h_i| <= h_max``: one of each pair ``h, -h``, and ``0``."""
    r = torch.arange(-h_max, h_max + 1)
    grid = torch.cartesian_prod(r, r, r)
    key = grid[:, 0] * (2 * h_max + 1) ** 2 + grid[:, 1] * (2 * h_max + 1) + grid[:, 2]
    return grid[key >= 0].to(torch.float64)


class StructureFactorPool(nn.Module):
    """Species-weighted structure factors of a crystal, a permutation-invariant set summary.

    ``F_c(h) = sum_j e_c(s_j) exp(2 pi i h . u_j) / sqrt(N)`` for Miller indices ``h`` (half of
    them: real species weights make ``F(-h)`` the conjugate of ``F(h)``) and learned species
    weightings ``e_c``. Exactly periodic and, unlike max-pooled per-atom features, a lossless
    summary of the atom positions at the resolution of ``h``.

    Shapes: ``frac`` ``[B, N, 3]``, ``species`` ``[B, N]``, ``mask`` ``[B, N]`` -> ``[B, 2 C K]``.
    """

    def __init__(self, n_species: int, h_max: int, channels: int) -> None:
        super().__init__()
        self.register_buffer("miller", 2.0 * math.pi * half_miller_indices(h_max))
        self.weights = nn.Embedding(n_species, channels)
        nn.init.normal_(self.weights.weight, 0.0, 1.0)
        self.out_dim = 2 * channels * self.miller.shape[0]

    def forward(self, frac: torch.Tensor, species: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # noqa: D102
        u = frac - torch.floor(frac)
        phase = (u.double() @ self.miller.t()).to(frac.dtype)  # [B, N, K]
        w = self.weights(species.clamp(min=0)) * mask.unsqueeze(-1).to(frac.dtype)  # [B, N, C]
        n = mask.sum(dim=1).clamp(min=1).to(frac.dtype).sqrt().view(-1, 1, 1)
        re = torch.einsum("bnc,bnk->bck", w, torch.cos(phase)) / n
        im = torch.einsum("bnc,bnk->bck", w, torch.sin(phase)) / n
        return torch.cat([re, im], dim=1).flatten(1)


class PointNetEncoder(nn.Module):
    """Crystal -> latent code.

    Per-atom MLPs on the position (paper frame: Cartesian / ``pe_scale``; periodic frame:
    sin/cos of 2 pi k u, k = 1, 2, which does not depend on how atoms are wrapped) and on the
    one-hot species; concatenation; a shared per-atom MLP; masked max-pool over atoms; the six
    (normalised) lattice parameters appended; an MLP to the latent (mean and log-variance when
    ``vae``).

    Shapes: ``cart`` ``[B, N, 3]`` (Angstrom), ``frac`` ``[B, N, 3]``, ``species`` ``[B, N]``,
    ``mask`` ``[B, N]``, ``lattice`` ``[B, 6]`` normalised -> ``[B, D]`` (and ``[B, D]`` log-variance).
    """

    def __init__(self, cfg: ModelConfig, n_species: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_species = n_species
        if cfg.frame == "periodic":
            self.pos_enc: nn.Module | None = FourierCellEncoding(2)
            pos_in = self.pos_enc.out_dim  # type: ignore[union-attr]
        else:
            self.pos_enc = None
            pos_in = 3
        a = cfg.encoder_atom_dims
        self.pos_mlp = mlp((pos_in, *a), cfg.activation)
        self.spec_mlp = mlp((n_species, *a), cfg.activation)
        self.shared = mlp((2 * a[-1], *cfg.encoder_shared_dims), cfg.activation)
        out = 2 * cfg.latent_dim if cfg.vae else cfg.latent_dim
        self.sf: StructureFactorPool | None = None
        extra = 0
        if cfg.structure_factors and cfg.frame == "periodic":
            self.sf = StructureFactorPool(n_species, cfg.structure_factor_h, cfg.structure_factor_channels)
            extra = self.sf.out_dim
        head_in = cfg.encoder_shared_dims[-1] + 6 + extra
        self.head = mlp((head_in, *cfg.encoder_head_dims, out), cfg.activation, last_act=False)

    def forward(
        self,
        cart: torch.Tensor,
        frac: torch.Tensor,
        species: torch.Tensor,
        mask: torch.Tensor,
        lattice: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latent mean ``[B, D]`` and log-variance ``[B, D]`` (None without VAE)."""
        if self.pos_enc is not None:
            pos = self.pos_enc(frac)
        else:
            pos = cart / self.cfg.pe_scale
        onehot = nn.functional.one_hot(species.clamp(min=0), self.n_species).to(cart.dtype)
        h = torch.cat([self.pos_mlp(pos), self.spec_mlp(onehot)], dim=-1)
        h = self.shared(h)  # [B, N, F]
        h = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        parts = [h, lattice] if self.sf is None else [h, lattice, self.sf(frac, species, mask)]
        out = self.head(torch.cat(parts, dim=-1))
        if self.cfg.vae:
            mu, raw = out.chunk(2, dim=-1)
            logvar = torch.log(nn.functional.softplus(raw) + 1e-6)
            return mu, logvar
        return out, None
