"""Crystal heads: an ensemble of MLPs that read a crystal's site table, for prediction.

A latent head (:class:`~nesf.design.head.PropertyHead`) reads the autoencoder's code, which is
what gradient-based design needs. To predict a property of crystals at hand, though, the
crystal itself says more: on perov_5's heat of formation a head on the 192-number code of
3,408 training crystals misses by 0.23 eV/cell, while the same data read site by site (which
element on which site, and how each site is coordinated; :mod:`nesf.design.sites`) miss by
about a third of that. A :class:`CrystalHead` reads padded site tables: each site's atomic
number through a learned element embedding ``[100, E]`` beside its normalised element
properties and environment, all sites in their environment order flattened, plus the cell's
global columns. Members differ in initialisation and bootstrap sample, as in the latent head,
and run in one batched pass.

It has the same prediction contract as a latent head (``predict_crystals`` returns mean and
spread ``[N]``), records ``reads = "crystal"``, and cannot steer codes: ``nesf optimize`` and
conditional sampling refuse it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nesf.data.crystal import Crystal
from nesf.design.head import LOSSES, FitRecord, _EnsembleLinear, member_loss, regression_metrics
from nesf.design.sites import ELEMENT_PROPERTY_NAMES, ENVIRONMENT_NAMES, GLOBAL_NAMES, site_arrays
from nesf.errors import CheckpointError

#: The checkpoint ``kind`` of a crystal head.
KIND = "crystal_property_head"
#: Atomic numbers the element embedding has rows for (0 is padding).
N_ELEMENTS = 119


@dataclass
class CrystalHeadConfig:
    """Architecture and training of a crystal head.

    Attributes:
        max_sites: rows of the padded site table (0: the most atoms of a training crystal, set
            when the head is fitted).
        members: ensemble members.
        embed: size of the learned element embedding.
        hidden: width of each hidden layer.
        layers: hidden layers per member.
        dropout: dropout after each hidden layer while training.
        epochs: passes over the training crystals.
        batch_size: crystals per step.
        lr: AdamW peak learning rate (warm-up over the first 30 %, cosine decay after).
        weight_decay: AdamW weight decay.
        loss: ``"l1"``, ``"huber"`` or ``"mse"`` (see :class:`~nesf.design.head.HeadConfig`).
        bootstrap: each member trains on its own bootstrap sample.
    """

    max_sites: int
    members: int = 5
    embed: int = 16
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    epochs: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-3
    loss: str = "l1"
    bootstrap: bool = True


class CrystalHead(nn.Module):
    """An ensemble of MLPs from padded site tables to one property (in its units).

    Args:
        cfg: the configuration.
        card: plain-data description (target, units, data, metrics).
    """

    reads = "crystal"

    def __init__(self, cfg: CrystalHeadConfig, card: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.card: dict[str, Any] = dict(card or {})
        self.card["reads"] = self.reads
        m, p, g = cfg.members, len(ELEMENT_PROPERTY_NAMES) + len(ENVIRONMENT_NAMES), len(GLOBAL_NAMES)
        self.register_buffer("v_mean", torch.zeros(p))
        self.register_buffer("v_std", torch.ones(p))
        self.register_buffer("g_mean", torch.zeros(g))
        self.register_buffer("g_std", torch.ones(g))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        self.embedding = nn.Parameter(0.1 * torch.randn(m, N_ELEMENTS, cfg.embed))
        dims = [cfg.max_sites * (cfg.embed + p) + g, *([cfg.hidden] * cfg.layers)]
        self.hidden = nn.ModuleList(_EnsembleLinear(m, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = _EnsembleLinear(m, dims[-1], 1)
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def target(self) -> str:
        """Name of the property."""
        return str(self.card.get("target", "property"))

    def members_out(
        self, numbers: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, glob: torch.Tensor
    ) -> torch.Tensor:
        """Each member's prediction ``[M, B]`` (property units).

        Args:
            numbers: atomic numbers ``[B, S]`` (0: padding).
            values: element properties and environment ``[B, S, P]`` (NaN: unknown).
            mask: real sites ``[B, S]``.
            glob: global columns ``[B, G]``.
        """
        v = (values.float() - self.v_mean) / self.v_std
        v = torch.nan_to_num(v, nan=0.0) * mask[..., None]
        g = torch.nan_to_num((glob.float() - self.g_mean) / self.g_std, nan=0.0)
        m, b = self.cfg.members, numbers.shape[0]
        emb = self.embedding[:, numbers.long()] * mask[None, ..., None]  # [M, B, S, E]
        x = torch.cat([emb, v.unsqueeze(0).expand(m, -1, -1, -1)], dim=-1).reshape(m, b, -1)
        h = torch.cat([x, g.unsqueeze(0).expand(m, -1, -1)], dim=-1)
        for layer in self.hidden:
            h = self.drop(nn.functional.silu(layer(h)))
        return self.out(h).squeeze(-1) * self.y_std + self.y_mean

    def arrays(self, crystals: Sequence[Crystal]) -> tuple[torch.Tensor, ...]:
        """The padded site tables of crystals as tensors (see :func:`~nesf.design.sites.site_arrays`)."""
        numbers, values, mask, glob = site_arrays(list(crystals), self.cfg.max_sites)
        return (
            torch.as_tensor(numbers),
            torch.as_tensor(values, dtype=torch.float32),
            torch.as_tensor(mask),
            torch.as_tensor(glob, dtype=torch.float32),
        )

    @torch.no_grad()
    def predict_crystals(self, crystals: Sequence[Crystal]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread (standard deviation over members) ``[N]`` of crystals, property units.

        Crystals without atoms get NaN.

        Raises:
            ValueError: a crystal has more atoms than the head's site table holds.
        """
        crystals = list(crystals)
        mean, spread = np.full(len(crystals), np.nan), np.full(len(crystals), np.nan)
        ok = [i for i, c in enumerate(crystals) if c.n_atoms > 0]
        if not ok:
            return mean, spread
        was = self.training
        self.eval()
        out = self.members_out(*self.arrays([crystals[i] for i in ok]))
        self.train(was)
        mean[ok] = out.mean(0).numpy()
        spread[ok] = (out.std(0, unbiased=False) if out.shape[0] > 1 else torch.zeros_like(out[0])).numpy()
        return mean, spread


def fit_crystal_head(
    crystals: Sequence[Crystal],
    targets: np.ndarray | torch.Tensor,
    cfg: CrystalHeadConfig | None = None,
    seed: int = 0,
    val: tuple[Sequence[Crystal], np.ndarray] | None = None,
    card: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[CrystalHead, FitRecord]:
    """Train a :class:`CrystalHead` on crystals and their targets ``[N]`` (property units).

    Args:
        crystals: training crystals (each with at least one atom).
        targets: their property values ``[N]``.
        cfg: architecture and training (default: :class:`CrystalHeadConfig` with the largest
            training crystal's atom count as ``max_sites``).
        seed: seeds initialisation, bootstrap samples and batches.
        val: optional validation crystals and targets; MAE, RMSE and R^2 go into the card.
        card: description stored with the head.
        progress: show a progress bar over epochs.

    Raises:
        ValueError: targets and crystals disagree in number, fewer than 2 crystals, targets
            that are not finite, an unknown loss, or a crystal without atoms.
    """
    from tqdm.auto import tqdm

    crystals = list(crystals)
    y = torch.as_tensor(np.asarray(targets, dtype=float), dtype=torch.float32).reshape(-1)
    if len(crystals) != len(y) or len(y) < 2:
        raise ValueError(f"need crystals and targets of the same number (>= 2), got {len(crystals)} and {len(y)}")
    if not torch.isfinite(y).all():
        raise ValueError(f"{int((~torch.isfinite(y)).sum())} targets are not finite numbers")
    empty = [c.id for c in crystals if c.n_atoms == 0]
    if empty:
        raise ValueError(f"{len(empty)} training crystals have no atoms (first: {empty[0]!r})")
    cfg = cfg or CrystalHeadConfig(max_sites=0)
    if cfg.max_sites <= 0:
        cfg = replace(cfg, max_sites=max(c.n_atoms for c in crystals))
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    torch.manual_seed(seed)
    head = CrystalHead(cfg, card)
    numbers, values, mask, glob = head.arrays(crystals)
    real = values[mask]  # [sites, P]
    finite = torch.isfinite(real)
    counts = finite.sum(0).clamp(min=1)
    v_mean = torch.where(finite, real, 0.0).sum(0) / counts
    v_var = torch.where(finite, (real - v_mean) ** 2, 0.0).sum(0) / counts
    head.v_mean.copy_(v_mean)
    head.v_std.copy_(v_var.sqrt().clamp(min=1e-6))
    head.g_mean.copy_(glob.mean(0))
    head.g_std.copy_(glob.std(0).clamp(min=1e-6) if len(glob) > 1 else torch.ones_like(glob[0]))
    head.y_mean.copy_(y.mean())
    head.y_std.copy_(y.std().clamp(min=1e-6))
    yn = (y - head.y_mean) / head.y_std
    g = torch.Generator().manual_seed(seed)
    n, m = len(y), cfg.members
    samples = torch.randint(0, n, (m, n), generator=g) if cfg.bootstrap and m > 1 else torch.arange(n).repeat(m, 1)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total, step, start = cfg.epochs * steps_per_epoch, 0, time.monotonic()
    warm = max(1, int(0.3 * total))
    v_norm = torch.nan_to_num((values - head.v_mean) / head.v_std, nan=0.0) * mask[..., None]
    g_norm = torch.nan_to_num((glob - head.g_mean) / head.g_std, nan=0.0)
    member = torch.arange(m)[:, None, None]  # indexes each member's own embedding
    head.train()
    for _ in tqdm(range(cfg.epochs), desc="fit crystal head", unit="epoch", disable=not progress):
        order = samples[:, torch.randperm(n, generator=g)]  # [M, N]
        for s in range(steps_per_epoch):
            frac = step / warm if step < warm else (step - warm) / max(1, total - warm)
            scale = 0.04 + 0.96 * frac if step < warm else 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac))
            for group in opt.param_groups:
                group["lr"] = cfg.lr * scale
            idx = order[:, s * cfg.batch_size : (s + 1) * cfg.batch_size]  # [M, b]
            emb = head.embedding[member, numbers[idx]] * mask[idx][..., None]  # [M, b, S, E]
            x = torch.cat([emb, v_norm[idx]], dim=-1).reshape(m, idx.shape[1], -1)
            h = torch.cat([x, g_norm[idx]], dim=-1)
            for layer in head.hidden:
                h = head.drop(nn.functional.silu(layer(h)))
            out = head.out(h).squeeze(-1)  # [M, b], normalised units
            loss = member_loss(out, yn[idx], cfg.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    head.eval()
    record = FitRecord(n_train=n, seconds=time.monotonic() - start)
    if val is not None:
        pred, _ = head.predict_crystals(val[0])
        record.val = regression_metrics(pred, np.asarray(val[1], dtype=float))
    head.card.update({"n_train": n, "members": m, "seed": seed, "fit_seconds": round(record.seconds, 1)})
    if record.val:
        head.card.update({f"val_{k}": v for k, v in record.val.items()})
    return head, record


def save_crystal_head(path: str | Path, head: CrystalHead) -> Path:
    """Write a crystal head checkpoint atomically (SHA-256; loads with ``weights_only=True``)."""
    from nesf.training.checkpoint import save_checkpoint

    return save_checkpoint(
        path,
        {
            "kind": KIND,
            "model_config": asdict(head.cfg),
            "vocab": {},
            "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
            "model_card": dict(head.card),
        },
    )


def crystal_head_from_checkpoint(ck: dict[str, Any], source: str = "<checkpoint>") -> CrystalHead:
    """A crystal head from a loaded checkpoint dict.

    Raises:
        CheckpointError: another kind of checkpoint, or inconsistent.
    """
    if ck.get("kind") != KIND:
        raise CheckpointError(f"{source}: not a crystal property head (kind {ck.get('kind', 'nesf')!r})")
    try:
        head = CrystalHead(CrystalHeadConfig(**ck["model_config"]), ck.get("model_card") or {})
        head.load_state_dict(ck["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{source}: inconsistent crystal head: {str(exc).splitlines()[0][:200]}") from None
    head.card["head_sha256"] = ck.get("sha256")
    head.card["source"] = source
    return head.eval()


__all__ = [
    "KIND",
    "CrystalHead",
    "CrystalHeadConfig",
    "crystal_head_from_checkpoint",
    "fit_crystal_head",
    "save_crystal_head",
]
