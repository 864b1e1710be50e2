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

    With ``latent_tokens`` = M, the code is M tokens of D / M numbers (flattened to ``[B, D]``):
    M learned queries attend over the atoms' shared features (masked softmax over atoms), and
    one head maps each token's pooled features, its query and the crystal's max-pooled
    features and lattice to the token.
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
        self.tokens = cfg.latent_tokens
        if self.tokens:
            # M learned queries pool the atoms by attention; one shared head per token maps its pooled
            # features, its query and the crystal's global features to its slice of the code
            a_dim = cfg.token_attention_dim
            self.token_queries = nn.Parameter(torch.randn(self.tokens, a_dim) / math.sqrt(a_dim))
            self.atom_kv = nn.Linear(cfg.encoder_shared_dims[-1], 2 * a_dim)
            head_in += 2 * a_dim
            out //= self.tokens
        self.head = mlp((head_in, *cfg.encoder_head_dims, out), cfg.activation, last_act=False)

    def _token_features(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Attention pooling of per-atom features ``[B, N, F]`` into ``[B, M, 2A]`` (pooled values, queries)."""
        a_dim = self.cfg.token_attention_dim
        keys, values = self.atom_kv(h).split(a_dim, dim=-1)  # [B, N, A] each
        logits = torch.einsum("ma,bna->bmn", self.token_queries, keys) / math.sqrt(a_dim)
        weights = torch.softmax(logits.masked_fill(~mask.unsqueeze(1), float("-inf")), dim=-1)  # over atoms
        pooled = torch.bmm(weights, values)  # [B, M, A]
        queries = self.token_queries.unsqueeze(0).expand(h.shape[0], -1, -1)
        return torch.cat([pooled, queries], dim=-1)

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
        atoms = self.shared(h)  # [B, N, F]
        h = atoms.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        parts = [h, lattice] if self.sf is None else [h, lattice, self.sf(frac, species, mask)]
        glob = torch.cat(parts, dim=-1)  # [B, G]
        if self.tokens:
            per_token = self._token_features(atoms, mask)  # [B, M, 2A]
            glob = torch.cat([per_token, glob.unsqueeze(1).expand(-1, self.tokens, -1)], dim=-1)
        out = self.head(glob)  # [B, D], or [B, M, D / M] with tokens (x 2 for a VAE)
        if self.cfg.vae:
            mu, raw = out.chunk(2, dim=-1)
            logvar = torch.log(nn.functional.softplus(raw) + 1e-6)
            return mu.flatten(1), logvar.flatten(1)  # tokens -> one code [B, D]
        return out.flatten(1), None
