"""Property heads: an ensemble of small MLPs on a model's latent codes, and how to fit, save and load them.

A head maps latent codes ``[B, D]`` of one autoencoder to a scalar property. Its members share
the input normalisation (the training codes' mean and deviation per dimension) and the target
normalisation, and differ in their initialisation and in the bootstrap sample they were
trained on, so the spread of their predictions (standard deviation over members) says how far
a code lies from what the head has seen. All members run in one batched forward pass
(weights ``[M, in, out]``), which keeps gradient steps on many codes cheap.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nesf.errors import CheckpointError

#: The checkpoint ``kind`` of a property head.
KIND = "property_head"
#: Training losses a head can be fitted with.
LOSSES = ("l1", "huber", "mse")


@dataclass
class HeadConfig:
    """Architecture and training of a property head.

    Attributes:
        latent_dim: size of the codes it reads.
        members: ensemble members.
        hidden: width of each hidden layer.
        layers: hidden layers per member.
        dropout: dropout after each hidden layer while training.
        epochs: passes over the training codes.
        batch_size: codes per step.
        lr: AdamW learning rate (cosine decay to 1 % over the run).
        weight_decay: AdamW weight decay.
        loss: ``"l1"`` (the median: lowest MAE, but on a target that is mostly one value, such
            as a band gap that is mostly zero, it predicts that value everywhere), ``"huber"``
            (smooth L1 on the normalised target, ``beta`` 0.1) or ``"mse"`` (the mean: ranks
            such a target best).
        bootstrap: each member trains on its own bootstrap sample of the codes.
        noise: standard deviation of Gaussian noise added to the normalised codes while
            training (smooths the head around the codes it saw).
    """

    latent_dim: int
    members: int = 5
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.1
    epochs: int = 300
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    loss: str = "l1"
    bootstrap: bool = True
    noise: float = 0.05


class _EnsembleLinear(nn.Module):
    """``M`` independent linear maps applied at once: ``[M, B, in] -> [M, B, out]``."""

    def __init__(self, members: int, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(members, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[M, B, in]`` -> ``[M, B, out]``."""
        return torch.baddbmm(self.bias, x, self.weight)


class PropertyHead(nn.Module):
    """An ensemble of MLPs from latent codes ``[B, D]`` to one property (in its units).

    Args:
        cfg: the configuration.
        card: plain-data description (target, units, model and its SHA-256, data, metrics).
    """

    #: What the head reads (a crystal head reads ``"crystal"``).
    reads = "latent"

    def __init__(self, cfg: HeadConfig, card: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.card: dict[str, Any] = dict(card or {})
        d, m = cfg.latent_dim, cfg.members
        self.register_buffer("z_mean", torch.zeros(d))
        self.register_buffer("z_std", torch.ones(d))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))
        dims = [d, *([cfg.hidden] * cfg.layers)]
        self.hidden = nn.ModuleList(_EnsembleLinear(m, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = _EnsembleLinear(m, dims[-1], 1)
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def target(self) -> str:
        """Name of the property (the data's column or ``info`` key)."""
        return str(self.card.get("target", "property"))

    def members_out(self, latents: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Each member's prediction ``[M, B]`` (property units) of codes ``[B, D]``; differentiable."""
        x = (latents.float() - self.z_mean) / self.z_std
        if noise:
            x = x + noise * torch.randn_like(x)
        h = x.unsqueeze(0).expand(self.cfg.members, -1, -1)
        for layer in self.hidden:
            h = self.drop(nn.functional.silu(layer(h)))
        return self.out(h).squeeze(-1) * self.y_std + self.y_mean

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and spread (standard deviation over members) ``[B]`` each, property units; differentiable."""
        out = self.members_out(latents)
        spread = out.std(dim=0, unbiased=False) if out.shape[0] > 1 else torch.zeros_like(out[0])
        return out.mean(dim=0), spread

    @torch.no_grad()
    def predict(self, latents: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread ``[B]`` (property units) of latent codes ``[B, D]``.

        Raises:
            ValueError: the codes are not ``[B, D]`` with this head's D.
        """
        z = torch.as_tensor(np.asarray(latents) if not isinstance(latents, torch.Tensor) else latents)
        if z.ndim != 2 or z.shape[1] != self.cfg.latent_dim:
            raise ValueError(f"latent codes must have shape [B, {self.cfg.latent_dim}], got {list(z.shape)}")
        was = self.training
        self.eval()
        mean, spread = self(z.to(self.z_mean.device))
        self.train(was)
        return mean.cpu().numpy().astype(float), spread.cpu().numpy().astype(float)


@dataclass
class FitRecord:
    """What fitting a head measured: sizes, seconds, and the metrics on the validation codes (if any)."""

    n_train: int
    seconds: float
    val: dict[str, float] = field(default_factory=dict)


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R^2 of predictions ``[N]`` against targets ``[N]`` (``n`` = N)."""
    pred, true = np.asarray(pred, dtype=float), np.asarray(true, dtype=float)
    err = pred - true
    ss_tot = float(((true - true.mean()) ** 2).sum()) if len(true) else 0.0
    r2 = 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    return {
        "n": len(true),
        "mae": float(np.abs(err).mean()) if len(true) else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())) if len(true) else float("nan"),
        "r2": r2,
    }


def member_loss(out: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """The training loss of ensemble outputs ``[M, b]`` against normalised targets ``[M, b]`` (see ``LOSSES``)."""
    if loss == "l1":
        return (out - target).abs().mean()
    if loss == "mse":
        return (out - target).pow(2).mean()
    return nn.functional.smooth_l1_loss(out, target, beta=0.1)


def fit_head(
    latents: torch.Tensor,
    targets: torch.Tensor,
    cfg: HeadConfig | None = None,
    seed: int = 0,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
    card: dict[str, Any] | None = None,
) -> tuple[PropertyHead, FitRecord]:
    """Train a :class:`PropertyHead` on codes ``[N, D]`` and targets ``[N]`` (property units).

    Args:
        latents: training codes ``[N, D]``.
        targets: their property values ``[N]``.
        cfg: architecture and training (default: :class:`HeadConfig` for this D).
        seed: seeds initialisation, bootstrap samples and batches.
        val: optional validation codes and targets; their MAE, RMSE and R^2 go into the record
            and the card.
        card: description stored with the head (target, units, model, data, ...).

    Raises:
        ValueError: shapes disagree, fewer than 2 codes, or targets that are not finite.
    """
    z = latents.detach().float().cpu()
    y = torch.as_tensor(targets, dtype=torch.float32).reshape(-1)
    cfg = cfg or HeadConfig(latent_dim=z.shape[1] if z.ndim == 2 else 0)
    if z.ndim != 2 or z.shape[1] != cfg.latent_dim or z.shape[0] != y.shape[0] or z.shape[0] < 2:
        raise ValueError(f"need codes [N >= 2, {cfg.latent_dim}] and targets [N], got {list(z.shape)}, {list(y.shape)}")
    if not torch.isfinite(y).all():
        raise ValueError(f"{int((~torch.isfinite(y)).sum())} targets are not finite numbers")
    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    torch.manual_seed(seed)
    head = PropertyHead(cfg, card)
    head.z_mean.copy_(z.mean(0))
    head.z_std.copy_(z.std(0).clamp(min=1e-6))
    head.y_mean.copy_(y.mean())
    head.y_std.copy_(y.std().clamp(min=1e-6))
    g = torch.Generator().manual_seed(seed)
    n, m = z.shape[0], cfg.members
    # each member's sample of the codes: a bootstrap draw, or all of them in its own order
    samples = torch.randint(0, n, (m, n), generator=g) if cfg.bootstrap and m > 1 else torch.arange(n).repeat(m, 1)
    yn = (y - head.y_mean) / head.y_std
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total, step, start = cfg.epochs * steps_per_epoch, 0, time.monotonic()
    head.train()
    for _ in range(cfg.epochs):
        order = samples[:, torch.randperm(n, generator=g)]  # [M, N]
        for s in range(steps_per_epoch):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / total)))
            idx = order[:, s * cfg.batch_size : (s + 1) * cfg.batch_size]  # [M, b]
            x = (z[idx] - head.z_mean) / head.z_std  # [M, b, D]
            if cfg.noise:
                x = x + cfg.noise * torch.randn(x.shape, generator=g)
            h = x
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
        pred, _ = head.predict(val[0])
        record.val = regression_metrics(pred, np.asarray(val[1], dtype=float))
    head.card.update({"n_train": n, "members": m, "seed": seed})
    if record.val:
        head.card.update({f"val_{k}": v for k, v in record.val.items()})
    return head, record


def head_payload(head: PropertyHead, vocab: dict | None = None) -> dict[str, Any]:
    """Checkpoint content of a head (``save_checkpoint`` adds the format tags and the SHA-256)."""
    return {
        "kind": KIND,
        "model_config": asdict(head.cfg),
        "vocab": vocab or {},
        "state_dict": {k: v.detach().cpu() for k, v in head.state_dict().items()},
        "model_card": dict(head.card),
    }


def save_head(path: str | Path, head: PropertyHead, vocab: dict | None = None) -> Path:
    """Write a head checkpoint atomically (SHA-256; loads with ``weights_only=True``)."""
    from nesf.training.checkpoint import save_checkpoint

    return save_checkpoint(path, head_payload(head, vocab))


def load_head(path: str | Path) -> PropertyHead:
    """A head from its checkpoint file (``weights_only=True``; refused if corrupted or of another kind).

    Raises:
        CheckpointError: missing, corrupted, another kind of checkpoint, or inconsistent.
    """
    from nesf.training.checkpoint import load_checkpoint

    return head_from_checkpoint(load_checkpoint(path), source=str(path))


def head_from_checkpoint(ck: dict[str, Any], source: str = "<checkpoint>") -> PropertyHead:
    """A head from a loaded checkpoint dict (``source`` names it in errors and in ``card["source"]``).

    Raises:
        CheckpointError: another kind of checkpoint, or inconsistent.
    """
    if ck.get("kind") != KIND:
        raise CheckpointError(
            f"{source}: not a property head (kind {ck.get('kind', 'nesf')!r}); make one with 'nesf fit-property'"
        )
    try:
        head = PropertyHead(HeadConfig(**ck["model_config"]), ck.get("model_card") or {})
        head.load_state_dict(ck["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{source}: inconsistent property head: {str(exc).splitlines()[0][:200]}") from None
    head.card["head_sha256"] = ck.get("sha256")
    head.card["source"] = source
    return head.eval()


__all__ = [
    "KIND",
    "FitRecord",
    "HeadConfig",
    "PropertyHead",
    "fit_head",
    "head_from_checkpoint",
    "head_payload",
    "load_head",
    "regression_metrics",
    "save_head",
]
