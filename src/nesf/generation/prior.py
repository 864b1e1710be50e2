"""A generative model of a trained autoencoder's latent codes: flow matching over latent vectors.

New crystals come from the latent space: draw a latent code from a model of the encoded
training crystals' codes, decode it with the usual reconstruction. :class:`LatentPrior` is that
model: a small MLP velocity field ``v(x, t)`` trained by (rectified) flow matching to carry
standard normal noise (t = 0) to the whitened latent codes (t = 1) along straight paths,
sampled by integrating ``dx/dt = v(x, t)`` with Heun steps. It trains in minutes on a CPU and
works for any trained model, VAE or not.

The flow lives in the principal subspace of the codes: a trained autoencoder's codes fill only
a few directions of the latent space (the 3408 perov_5 training codes of 192 numbers keep
99.9 % of their variance in about 50 principal components), and a flow over all directions
leaves its samples slightly off that thin set, where the decoder gives distorted crystals. The
prior therefore whitens the codes with their leading principal components (``variance_kept``)
and models those; the remaining directions are set to the codes' mean.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from nesf.errors import CheckpointError

#: The checkpoint ``kind`` of a latent prior.
KIND = "latent-prior"


@dataclass
class PriorConfig:
    """Architecture and training of a latent prior.

    Attributes:
        latent_dim: size of the latent codes it models.
        hidden: width of the velocity MLP.
        layers: hidden layers of the velocity MLP.
        time_features: sinusoidal features of the time t.
        epochs: passes over the latent codes (at most; ``minutes`` may stop earlier).
        batch_size: codes per step.
        lr: AdamW learning rate (cosine decay to 1 % over the run).
        steps: integration steps when sampling.
        variance_kept: share of the codes' variance the modelled principal components keep
            (1.0: every direction).
        components: number of modelled principal components (set by :func:`fit_prior`).
        temperature: the scale of the starting noise when a sampler is not given one (1: the
            fitted flow; a shipped prior may carry the value chosen on validation data).
        element_counts: shares of the training crystals with 1, 2, ... elements (``nesf
            fit-prior`` records them); where set, samplers draw each crystal's number of
            elements from them (:mod:`nesf.generation.elements`).
        makeup_counts: joint shares of the training crystals' (number of elements, number of
            atoms), rows ``[elements, atoms, share]`` (``nesf fit-prior --atom-counts`` records
            them); where set, samplers also draw each crystal's number of atoms.
    """

    latent_dim: int
    hidden: int = 512
    layers: int = 4
    time_features: int = 32
    epochs: int = 400
    batch_size: int = 256
    lr: float = 1e-3
    steps: int = 64
    variance_kept: float = 0.999
    components: int | None = None
    temperature: float = 1.0
    element_counts: list[float] | None = None
    makeup_counts: list[list[float]] | None = None


#: Optimizer updates a prior fit gets at least by default (:func:`default_epochs`): on 1,646
#: carbon_24 codes, 34.7, 41.5 and 48.8 % of the samples of flows fitted for 14k, 28k and 70k updates lay
#: near one of 183 crystals left out of the fit (COV-P), 16.3 % after 400 epochs (2.8k updates; RESULTS.md).
MIN_UPDATES = 60_000


def default_epochs(
    n_codes: int, batch_size: int | None = None, min_updates: int = MIN_UPDATES, floor: int | None = None
) -> int:
    """Epochs over ``n_codes`` codes that give at least ``min_updates`` optimizer updates, and at least ``floor``.

    ``batch_size`` and ``floor`` default to :class:`PriorConfig`'s ``batch_size`` and ``epochs``.
    Small code sets need many passes: 1,829 codes in batches of 256 take 7,500 epochs, 67,613
    codes the floor of 400 (106k updates).
    """
    per_epoch = max(1, math.ceil(n_codes / (batch_size or PriorConfig.batch_size)))
    return max(floor or PriorConfig.epochs, math.ceil(min_updates / per_epoch))


class LatentPrior(nn.Module):
    """Velocity field ``v(x, t)`` over whitened principal coordinates ``[B, K]`` of latent codes, and its sampler.

    Codes ``z`` ``[B, D]`` and coordinates ``x`` ``[B, K]`` are related by
    ``x = (z - mean) @ basis / scale`` and ``z = mean + (x * scale) @ basis.T``.

    Args:
        cfg: the configuration (``cfg.components`` = K; ``None``: K = D).
        mean: ``[D]`` mean of the training codes.
        basis: ``[D, K]`` orthonormal principal directions (default: the identity).
        scale: ``[K]`` standard deviation of the codes along them.
    """

    def __init__(
        self,
        cfg: PriorConfig,
        mean: torch.Tensor | None = None,
        basis: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.latent_dim
        k = cfg.components or d
        self.register_buffer("mean", torch.zeros(d) if mean is None else mean.detach().float().clone())
        self.register_buffer("basis", torch.eye(d, k) if basis is None else basis.detach().float().clone())
        self.register_buffer("scale", torch.ones(k) if scale is None else scale.detach().float().clone())
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(1000.0), cfg.time_features // 2)))
        dims = [k + cfg.time_features, *([cfg.hidden] * cfg.layers)]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(dims[-1], k))
        self.net = nn.Sequential(*layers)
        if cfg.layers == 0:  # the standard normal prior of a VAE: no velocity, codes are the noise
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)

    def to_coords(self, z: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, D]`` -> whitened principal coordinates ``[B, K]``."""
        return (z - self.mean) @ self.basis / self.scale

    def to_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Whitened principal coordinates ``[B, K]`` -> codes ``[B, D]``."""
        return self.mean + (x * self.scale) @ self.basis.T

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``v(x, t)``: ``x`` ``[B, K]`` whitened coordinates, ``t`` ``[B]`` in [0, 1] -> ``[B, K]``."""
        ang = t[:, None] * self.freqs[None, :]
        return self.net(torch.cat([x, torch.sin(ang), torch.cos(ang)], dim=-1))

    def loss(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Flow-matching loss of latent codes ``z`` ``[B, D]`` (noise and times from ``generator``)."""
        x1 = self.to_coords(z)
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype)
        t = torch.rand(x1.shape[0], generator=generator, dtype=x1.dtype)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        return ((self.velocity(xt, t) - (x1 - x0)) ** 2).mean()

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, steps: int | None = None, temperature: float | None = None) -> torch.Tensor:
        """``n`` latent codes ``[n, D]`` (Heun integration of the flow from seeded noise).

        Args:
            n: number of codes.
            seed: seed of the noise.
            steps: integration steps (default: the configuration's).
            temperature: scale of the starting noise; below 1 trades diversity for codes
                closer to the well-populated parts of the latent space (1: the fitted flow;
                default: the prior's own, :attr:`PriorConfig.temperature`).
        """
        temperature = self.cfg.temperature if temperature is None else temperature
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        steps = steps or self.cfg.steps
        g = torch.Generator().manual_seed(seed)
        x = temperature * torch.randn(n, self.basis.shape[1], generator=g)
        dt = 1.0 / steps
        for k in range(steps):
            t = torch.full((n,), k * dt)
            v0 = self.velocity(x, t)
            x1 = x + dt * v0
            v1 = self.velocity(x1, t + dt)
            x = x + 0.5 * dt * (v0 + v1)
        return self.to_codes(x)


def fit_prior(
    latents: torch.Tensor,
    cfg: PriorConfig | None = None,
    seed: int = 0,
    minutes: float | None = None,
    progress: bool = True,
) -> tuple[LatentPrior, dict]:
    """Train a :class:`LatentPrior` on latent codes ``[N, D]``; returns it and a training record."""
    latents = latents.detach().float().cpu()
    cfg = cfg or PriorConfig(latent_dim=latents.shape[1])
    if latents.ndim != 2 or latents.shape[1] != cfg.latent_dim or latents.shape[0] < 2:
        raise ValueError(f"need latent codes [N >= 2, {cfg.latent_dim}], got {list(latents.shape)}")
    if not 0.0 < cfg.variance_kept <= 1.0:
        raise ValueError(f"variance_kept must be in (0, 1], got {cfg.variance_kept}")
    torch.manual_seed(seed)
    mean = latents.mean(dim=0)
    _, s, vh = torch.linalg.svd(latents.double() - mean.double(), full_matrices=False)
    var = s**2 / max(1, latents.shape[0] - 1)
    kept = torch.cumsum(var, 0) / var.sum().clamp(min=1e-30)
    k = int(torch.searchsorted(kept, torch.tensor(cfg.variance_kept, dtype=kept.dtype) - 1e-12)) + 1
    k = len(var) if cfg.variance_kept >= 1.0 else max(1, min(k, len(var)))
    cfg = replace(cfg, components=k)
    prior = LatentPrior(cfg, mean, vh[:k].T.float(), var[:k].sqrt().clamp(min=1e-6).float())
    opt = torch.optim.AdamW(prior.parameters(), lr=cfg.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    n = latents.shape[0]
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    deadline = time.monotonic() + 60.0 * minutes if minutes else math.inf
    start, step, losses = time.monotonic(), 0, []
    with tqdm(total=cfg.epochs, desc="fit prior", unit="epoch", disable=not progress) as bar:
        for _ in range(cfg.epochs):
            perm = torch.randperm(n, generator=g)
            epoch_loss = 0.0
            for s in range(steps_per_epoch):
                progress_frac = max(step / total, (time.monotonic() - start) / (60.0 * minutes) if minutes else 0.0)
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac))))
                batch = latents[perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]]
                loss = prior.loss(batch, g)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                epoch_loss += float(loss.detach()) / steps_per_epoch
                step += 1
            losses.append(epoch_loss)
            bar.set_postfix(loss=f"{epoch_loss:.4f}")
            bar.update(1)
            if time.monotonic() > deadline:
                break
    prior.eval()
    record = {
        "epochs": len(losses),
        "steps": step,
        "final_loss": losses[-1],
        "seconds": time.monotonic() - start,
        "components": k,
        "variance_kept": float(kept[k - 1]),
    }
    return prior, record


def prior_payload(prior: LatentPrior, vocab: dict, card: dict, seed: int) -> dict:
    """Checkpoint content of a prior (``nesf.training.checkpoint.save_checkpoint`` adds format and SHA-256)."""
    return {
        "kind": KIND,
        "model_config": asdict(prior.cfg),
        "vocab": vocab,
        "state_dict": prior.state_dict(),
        "seed": seed,
        "model_card": card,
    }


def save_prior(path: str | Path, prior: LatentPrior, vocab: dict, card: dict, seed: int) -> Path:
    """Write a prior checkpoint (atomically, with a SHA-256), loadable with ``weights_only=True``."""
    from nesf.training.checkpoint import save_checkpoint

    return save_checkpoint(path, prior_payload(prior, vocab, card, seed))


def load_prior(path: str | Path) -> tuple[LatentPrior, dict]:
    """A prior and its checkpoint dict (``weights_only=True``; refused if corrupted or of another kind)."""
    from nesf.training.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    return prior_from_checkpoint(ck, str(path)), ck


def prior_from_checkpoint(ck: dict, source: str = "<checkpoint>") -> LatentPrior:
    """A prior built from a loaded checkpoint dict (refused if of another kind or inconsistent)."""
    if ck.get("kind") != KIND:
        kind = ck.get("kind", "nesf")
        raise CheckpointError(f"{source}: not a latent prior (kind {kind!r}); make one with fit-prior")
    try:
        cfg = PriorConfig(**ck["model_config"])
        prior = LatentPrior(cfg)
        prior.load_state_dict(ck["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{source}: inconsistent latent prior: {str(exc).splitlines()[0][:200]}") from None
    return prior.eval()


__all__ = [
    "KIND",
    "LatentPrior",
    "PriorConfig",
    "default_epochs",
    "fit_prior",
    "load_prior",
    "prior_from_checkpoint",
    "prior_payload",
    "save_prior",
]
