"""PointNet-style crystal encoder."""

from __future__ import annotations

import torch
from torch import nn

from nesf.models.config import ModelConfig
from nesf.models.layers import FourierCellEncoding, mlp


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
        self.head = mlp((cfg.encoder_shared_dims[-1] + 6, *cfg.encoder_head_dims, out), cfg.activation, last_act=False)

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
        out = self.head(torch.cat([h, lattice], dim=-1))
        if self.cfg.vae:
            mu, raw = out.chunk(2, dim=-1)
            logvar = torch.log(nn.functional.softplus(raw) + 1e-6)
            return mu, logvar
        return out, None
