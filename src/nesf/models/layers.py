"""Building blocks: query encodings and the query-conditioned MLP of the field decoders."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def activation(name: str) -> nn.Module:
    """``"relu"`` or ``"silu"`` -> module."""
    return nn.ReLU() if name == "relu" else nn.SiLU()


def mlp(dims: Sequence[int], act: str, last_act: bool = True) -> nn.Sequential:
    """Plain MLP ``dims[0] -> ... -> dims[-1]``."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2 or last_act:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class PositionalEncoding(nn.Module):
    """Paper-frame query encoding: ``sin, cos(pi 2^k x / scale)`` for k < levels, plus nothing else.

    Input ``[T, 3]`` Cartesian Angstrom -> ``[T, 6 * levels]``.
    """

    def __init__(self, levels: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(levels, dtype=torch.float32) / scale)
        self.out_dim = 6 * levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ang = (x.unsqueeze(-1) * self.freqs).flatten(-2)  # [T, 3 * L]
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class FourierCellEncoding(nn.Module):
    """Periodic-frame query encoding: ``sin, cos(2 pi k u)`` of fractional coordinates, k = 1..K.

    Exactly periodic in the lattice: ``u`` and ``u + n`` (n integer) give the same features.
    Input ``[T, 3]`` fractional -> ``[T, 6 * K]``.
    """

    def __init__(self, k_max: int) -> None:
        super().__init__()
        self.register_buffer("freqs", 2.0 * math.pi * torch.arange(1, k_max + 1, dtype=torch.float64))
        self.out_dim = 6 * k_max

    def forward(self, u: torch.Tensor) -> torch.Tensor:  # noqa: D102
        u = u - torch.floor(u)  # wrap first: periodic by construction, whatever the rounding of 2 pi k
        ang = (u.unsqueeze(-1) * self.freqs.to(u.dtype)).flatten(-2)
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


class QueryConditionedMLP(nn.Module):
    """Decoder MLP fed the query features at every hidden layer and a per-crystal latent.

    Layer ``l`` computes ``h_l = act(norm(W_l h_{l-1} + V_l q + b_l))`` (``+ h_{l-1}`` when
    residual and widths match), with ``h_0 = z``. This is the published "concatenate the query
    into every layer" design written without concatenations: ``V_l q + b_l`` is one small matmul
    and ``W_l h_{l-1}`` is accumulated into it in place, so neither the forward nor the backward
    pass copies activations; and ``W_1 z`` is computed once per crystal, not once per query.

    Shapes: ``latent_part`` ``[B, D] -> [B, H1]``; ``forward`` takes that, ``index`` ``[T]``
    (crystal of each query) and query features ``[T, F]`` and returns ``[T, out_dim]``.
    """

    def __init__(
        self,
        latent_dim: int,
        query_dim: int,
        dims: Sequence[int],
        out_dim: int,
        norm: str = "none",
        act: str = "relu",
        residual: bool = False,
        latent_every_layer: bool = False,
        tokens: int = 0,
        attention_dim: int = 32,
    ) -> None:
        super().__init__()
        self.dims = tuple(dims)
        self.latent_in = nn.Linear(latent_dim, self.dims[0], bias=False)
        #: Latent tokens: each query attends to its crystal's ``tokens`` slices of the code.
        self.tokens = tokens
        self.attention_dim = attention_dim
        if tokens:
            width = latent_dim // tokens
            self.token_kv = nn.Linear(width, 2 * attention_dim, bias=False)  # keys and values, once per crystal
            self.query_q = nn.Linear(query_dim, attention_dim, bias=False)
            self.token_out = nn.Linear(attention_dim, self.dims[0], bias=False)
        #: Per-layer latent shifts of hidden layers 2.. (zero at initialisation: the network
        #: starts as the published design and learns how much to use them).
        self.latent_shift: nn.Linear | None = None
        if latent_every_layer and len(self.dims) > 1:
            self.latent_shift = nn.Linear(latent_dim, sum(self.dims[1:]), bias=False)
            nn.init.zeros_(self.latent_shift.weight)
        self.query_in = nn.ModuleList(nn.Linear(query_dim, d) for d in self.dims)
        self.hidden = nn.ModuleList(
            nn.Linear(self.dims[i - 1], self.dims[i], bias=False) for i in range(1, len(self.dims))
        )
        self.norms = nn.ModuleList((nn.BatchNorm1d(d) if norm == "batch" else nn.Identity()) for d in self.dims)
        self.inplace_act = act == "relu"
        self.act = nn.ReLU(inplace=True) if act == "relu" else nn.SiLU()
        self.residual = residual
        self.out = nn.Linear(self.dims[-1], out_dim)

    def latent_part(self, z: torch.Tensor) -> torch.Tensor:
        """Per-crystal contribution to the layers: ``[B, D] -> [B, H1]``, or longer.

        ``[B, H1 + ... + HL]`` when the latent reaches every layer; with latent tokens the
        ``M`` tokens' keys and values ``[B, 2 M A]`` follow.
        """
        parts = [self.latent_in(z)]
        if self.latent_shift is not None:
            parts.append(self.latent_shift(z))
        if self.tokens:
            parts.append(self.token_kv(z.view(z.shape[0], self.tokens, -1)).flatten(1))  # [B, M * 2A]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def _attend(self, kv: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Each query's attention over its crystal's tokens.

        ``kv`` ``[T, M * 2A]`` (keys and values of the query's crystal), ``query`` ``[T, F]`` -> ``[T, H1]``.
        """
        kv = kv.view(kv.shape[0], self.tokens, 2 * self.attention_dim)
        keys, values = kv[..., : self.attention_dim], kv[..., self.attention_dim :]
        q = self.query_q(query).unsqueeze(-1)  # [T, A, 1]
        weights = torch.softmax(torch.bmm(keys, q).squeeze(-1) / math.sqrt(self.attention_dim), dim=-1)  # [T, M]
        return self.token_out(torch.bmm(weights.unsqueeze(1), values).squeeze(1))

    def forward(self, latent_part: torch.Tensor, index: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Field values ``[T, out_dim]`` at queries ``[T, F]`` of crystals ``index`` ``[T]``."""
        per_query = latent_part.index_select(0, index)  # [T, H1], [T, H1 + ... + HL], + [T, M * 2A]
        offsets = [0]
        for d in self.dims:
            offsets.append(offsets[-1] + d)
        pre = self.query_in[0](query).add_(per_query[:, : self.dims[0]])
        if self.tokens:
            pre = pre.add_(
                self._attend(per_query[:, per_query.shape[1] - 2 * self.tokens * self.attention_dim :], query)
            )
        h = self.act(self.norms[0](pre))
        for i, layer in enumerate(self.hidden):
            pre = self.query_in[i + 1](query).addmm_(h, layer.weight.t())
            if self.latent_shift is not None:
                pre = pre.add_(per_query[:, offsets[i + 1] : offsets[i + 2]])
            new = self.act(self.norms[i + 1](pre))
            h = h + new if (self.residual and new.shape[-1] == h.shape[-1]) else new
        return self.out(h)
