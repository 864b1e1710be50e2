"""Training of the voxel autoencoder: seeded, budgeted, validated every epoch, resumable.

One optimiser trains both networks of :class:`~nesf.voxel.model.VoxelModel`:

* VAE: ``w_density * MSE(decoded, true density) + w_kl * KL + w_lattice * MSE(standardised lattice)``,
  the KL divergence of the diagonal Gaussian posterior from N(0, 1) averaged over latent
  dimensions and crystals;
* U-Net: ``w_species * cross-entropy(voxel labels)`` on the true density (and, with
  ``unet_on_decoded``, averaged with the same loss on the detached decoded density).

Checkpoints (``OUT/last.pt`` after every epoch, ``OUT/best.pt`` at the lowest validation loss)
are :func:`nesf.training.checkpoint.save_checkpoint` files with ``"kind": "voxel"``, the
configuration as a plain dict (``model_config``), the vocabulary and the weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nesf._memory import keep_freed_memory
from nesf.data.crystal import Crystal
from nesf.data.vocab import SpeciesVocab
from nesf.errors import CheckpointError
from nesf.models.config import config_to_dict
from nesf.training.checkpoint import load_checkpoint, save_checkpoint
from nesf.training.loop import TrainResult, lattice_normalization, make_vocab
from nesf.training.state import restore_training_state, training_state, write_history_csv
from nesf.viz.curves import plot_learning_curve
from nesf.voxel.grid import random_rotations, voxelize
from nesf.voxel.model import VoxelConfig, VoxelModel

#: Value of the ``kind`` key of voxel-autoencoder checkpoints.
KIND = "voxel"
#: Crystals voxelised at once when the grids are precomputed.
_VOXELIZE_CHUNK = 64


def prepare_voxel_crystals(crystals: Sequence[Crystal]) -> list[Crystal]:
    """Crystals as the voxel model sees them: pymatgen's standard orientation, atoms in the cell."""
    return [c.standardized() for c in crystals]


class VoxelTrainer:
    """Trains a :class:`VoxelModel`; see :func:`train_voxel` for the arguments."""

    def __init__(
        self,
        train: Sequence[Crystal],
        val: Sequence[Crystal],
        out_dir: str | Path,
        cfg: VoxelConfig | None = None,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = True,
        vocab: str | SpeciesVocab = "data",
    ) -> None:
        keep_freed_memory()
        self.cfg = cfg or VoxelConfig()
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.device = torch.device(device)
        self.progress = progress
        self.train_set = prepare_voxel_crystals(train)
        self.val_set = prepare_voxel_crystals(val)
        if not self.train_set or not self.val_set:
            raise ValueError("training needs at least one training and one validation crystal")
        if isinstance(vocab, SpeciesVocab):
            self.vocab = vocab
            for c in self.train_set + self.val_set:
                vocab.encode(c.numbers, c.id)  # every element must be known
        else:
            self.vocab = make_vocab(self.train_set + self.val_set, vocab)
        mean, std = lattice_normalization(self.train_set, True)
        torch.manual_seed(seed)
        self.model = VoxelModel(self.cfg, len(self.vocab), mean, std).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        self.train_lattice = self._lattice_targets(self.train_set)
        self.val_lattice = self._lattice_targets(self.val_set)
        self.train_grids = None if self.cfg.augment != "none" else self._voxelize_all(self.train_set, "training")
        self.val_grids = self._voxelize_all(self.val_set, "validation")
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best_val = math.inf
        self.elapsed = 0.0
        self.history: list[dict] = []

    # ------------------------------------------------------------------ data
    def _lattice_targets(self, crystals: Sequence[Crystal]) -> torch.Tensor:
        params = torch.as_tensor(np.stack([c.lattice_params for c in crystals]), dtype=torch.float32)
        return self.model.vae.normalize_lattice(params.to(self.device))

    def _voxelize(
        self, crystals: Sequence[Crystal], rotations: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        density, labels = voxelize(
            crystals, self.cfg.d, self.cfg.sigma_factor, self.cfg.label_factor, self.vocab, rotations, self.device
        )
        assert labels is not None
        return density, labels

    def _voxelize_all(self, crystals: Sequence[Crystal], what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Density ``[N, d, d, d]`` (float32) and labels ``[N, d, d, d]`` (uint8) of all crystals."""
        d = self.cfg.d
        density = torch.empty(len(crystals), d, d, d, device=self.device)
        labels = torch.empty(len(crystals), d, d, d, dtype=torch.uint8, device=self.device)
        with tqdm(total=len(crystals), desc=f"voxelise {what}", unit="crystal", disable=not self.progress) as bar:
            for start in range(0, len(crystals), _VOXELIZE_CHUNK):
                chunk = crystals[start : start + _VOXELIZE_CHUNK]
                dens, lab = self._voxelize(chunk)
                density[start : start + len(chunk)] = dens
                labels[start : start + len(chunk)] = lab.to(torch.uint8)
                bar.update(len(chunk))
        return density, labels

    def _batch(self, index: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.train_grids is not None:
            dev_index = index.to(self.device)
            return self.train_grids[0][dev_index], self.train_grids[1][dev_index].long()
        rotations = random_rotations(len(index), generator, self.cfg.augment)
        return self._voxelize([self.train_set[int(i)] for i in index], rotations)

    # ------------------------------------------------------------------ loss
    def losses(
        self,
        density: torch.Tensor,
        labels: torch.Tensor,
        lattice: torch.Tensor,
        sample: bool,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its unweighted terms.

        Args:
            density: ``[B, d, d, d]`` true densities (input and target).
            labels: ``[B, d, d, d]`` true voxel labels (0 = background).
            lattice: ``[B, 6]`` standardised lattice parameters.
            sample: draw the latent from the posterior (training) instead of taking its mean.
            generator: random stream of the posterior noise.
        """
        cfg = self.cfg
        decoded, lattice_pred, mu, logvar = self.model.vae(density, generator=generator, sample=sample)
        terms = {
            "density": F.mse_loss(decoded, density),
            "kl": (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp())).mean(),
            "lattice": F.mse_loss(lattice_pred, lattice),
            "species": F.cross_entropy(self.model.unet(density), labels),
        }
        if cfg.unet_on_decoded:
            on_decoded = F.cross_entropy(self.model.unet(decoded.detach()), labels)
            terms["species"] = 0.5 * (terms["species"] + on_decoded)
        loss = (
            cfg.w_density * terms["density"]
            + cfg.w_kl * terms["kl"]
            + cfg.w_lattice * terms["lattice"]
            + cfg.w_species * terms["species"]
        )
        return loss, terms

    def _step_generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 7_368_787 + 104_729 * step)

    def _epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * epoch)
        perm = torch.randperm(len(self.train_set), generator=g)
        return list(perm.split(self.cfg.batch_size))

    def train_step(self, index: torch.Tensor) -> dict[str, float]:
        """One optimisation step on training crystals ``index``; returns the loss terms."""
        self.model.train()
        gen = self._step_generator(self.global_step)
        density, labels = self._batch(index, gen)
        loss, terms = self.losses(density, labels, self.train_lattice[index.to(self.device)], True, gen)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["loss"] = float(loss.detach())
        return out

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss terms over the validation set (latent = posterior mean)."""
        self.model.eval()
        n = len(self.val_set)
        sums: dict[str, float] = {}
        for start in range(0, n, self.cfg.batch_size):
            index = torch.arange(start, min(start + self.cfg.batch_size, n), device=self.device)
            density, labels = self.val_grids[0][index], self.val_grids[1][index].long()
            loss, terms = self.losses(density, labels, self.val_lattice[index], False)
            w = len(index) / n
            for key, v in {"loss": loss, **terms}.items():
                sums[key] = sums.get(key, 0.0) + w * float(v)
        return sums

    # ------------------------------------------------------------------ state
    def payload(self, with_training: bool = True) -> dict:
        """Checkpoint content (plain data and tensors only)."""
        data = {
            "kind": KIND,
            "model_config": config_to_dict(self.cfg),
            "vocab": self.vocab.to_dict(),
            "frame": "periodic",
            "state_dict": self.model.state_dict(),
            "seed": self.seed,
            "epoch": self.epoch,
            "history": self.history,
        }
        if with_training:
            data["training"] = training_state(self)
        return data

    def resume_from(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped."""
        ck = load_checkpoint(path, map_location=self.device)
        if ck.get("kind") != KIND:
            raise CheckpointError(f"{path}: not a voxel-autoencoder checkpoint (kind {ck.get('kind')!r})")
        if "training" not in ck:
            raise ValueError(f"{path}: has no training state to resume from")
        if ck["model_config"] != config_to_dict(self.cfg):
            raise ValueError(f"{path}: was trained with another voxel configuration; cannot resume")
        if SpeciesVocab.from_dict(ck["vocab"]) != self.vocab:
            raise ValueError(f"{path}: was trained with another species vocabulary; cannot resume")
        restore_training_state(self, ck)

    # ------------------------------------------------------------------ the run
    def run(self, epochs: int | None = None, minutes: float | None = None) -> TrainResult:
        """Train until ``epochs`` (total, counting resumed ones) or ``minutes`` (this run) are used up.

        ``last.pt`` is also written when the run is interrupted (Ctrl-C, SIGTERM mapped to it).
        """
        try:
            return self._run(epochs, minutes)
        except KeyboardInterrupt:
            if self.global_step > 0:
                save_checkpoint(self.out_dir / "last.pt", self.payload())
            raise

    def _run(self, epochs: int | None, minutes: float | None) -> TrainResult:
        max_epochs = epochs if epochs is not None else self.cfg.epochs
        deadline = time.monotonic() + 60.0 * minutes if minutes else math.inf
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stop = False
        while self.epoch < max_epochs and not stop:
            batches = self._epoch_batches(self.epoch)
            sums: dict[str, float] = {}
            count = 0
            t_epoch = time.monotonic()
            bar = tqdm(
                total=len(batches),
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch + 1}/{max_epochs}",
                unit="step",
                disable=not self.progress,
                leave=False,
            )
            while self.step_in_epoch < len(batches):
                t0 = time.monotonic()
                index = batches[self.step_in_epoch]
                terms = self.train_step(index)
                self.elapsed += time.monotonic() - t0
                self.step_in_epoch += 1
                self.global_step += 1
                count += len(index)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v * len(index)
                bar.set_postfix(loss=f"{terms['loss']:.4f}")
                bar.update(1)
                if time.monotonic() > deadline:
                    stop = True
                    break
            bar.close()
            epoch_done = self.step_in_epoch >= len(batches)
            if epoch_done:
                self.epoch += 1
                self.step_in_epoch = 0
            if count:
                self._end_of_period(sums, count, time.monotonic() - t_epoch, epoch_done, len(batches))
        return TrainResult(self.out_dir, self.epoch, self.global_step, self.best_val, self.history)

    def _end_of_period(self, sums: dict[str, float], count: int, seconds: float, epoch_done: bool, n: int) -> None:
        """Validate, record, write checkpoints, history and learning curve."""
        val = self.validate()
        row = {"epoch": self.epoch if epoch_done else self.epoch + self.step_in_epoch / n, "step": self.global_step}
        row.update({f"train_{k}": sums[k] / count for k in ("loss", "density", "kl", "lattice", "species")})
        row.update({f"val_{k}": val[k] for k in ("loss", "density", "kl", "lattice", "species")})
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["seconds"] = self.elapsed
        row["crystals_per_s"] = count / max(seconds, 1e-9)
        self.history.append(row)
        improved = val["loss"] < self.best_val
        if improved:
            self.best_val = val["loss"]
        save_checkpoint(self.out_dir / "last.pt", self.payload())
        if improved:
            save_checkpoint(self.out_dir / "best.pt", self.payload(with_training=False))
        write_history_csv(self.out_dir / "history.csv", self.history)
        curve = [{**h, "val_position": h["val_density"]} for h in self.history]  # the plot's panel names
        title = "voxel autoencoder (position = density MSE)"
        plot_learning_curve(curve, self.out_dir / "learning_curve.png", title=title)
        if self.progress:
            tqdm.write(
                f"epoch {row['epoch']:.2f}: train {row['train_loss']:.4f}  val {row['val_loss']:.4f}"
                f"  (density {val['density']:.5f}, species {val['species']:.4f}, lattice {val['lattice']:.4f})"
                + ("  *best*" if improved else "")
            )


def train_voxel(
    train: Sequence[Crystal],
    val: Sequence[Crystal],
    out_dir: str | Path,
    cfg: VoxelConfig | None = None,
    epochs: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    resume: bool = False,
    vocab: str | SpeciesVocab = "data",
    **changes: object,
) -> TrainResult:
    """Train an ICSG3D-style voxel autoencoder.

    Args:
        train: training crystals.
        val: validation crystals (checkpoint selection by validation loss).
        out_dir: folder for ``last.pt``, ``best.pt``, ``history.csv`` and ``learning_curve.png``.
        cfg: configuration (default :class:`VoxelConfig`).
        epochs: total epochs (default ``cfg.epochs``).
        minutes: wall-clock budget of this run.
        seed: random seed (initialisation, shuffling, VAE noise, rotations).
        device: ``"cpu"`` or ``"cuda"``.
        progress: progress bars on stderr.
        resume: continue from ``out_dir/last.pt`` (same configuration and data required).
        vocab: ``"data"`` (elements of ``train`` + ``val``), ``"all"`` (H to Pu) or a
            :class:`SpeciesVocab` covering the data.
        **changes: fields of ``cfg`` to override (e.g. ``batch_size=8``, ``lr=3e-4``, ``d=16``).

    Returns:
        The run's summary (epochs, steps, best validation loss, history).
    """
    cfg = cfg or VoxelConfig()
    if changes:
        cfg = replace(cfg, **changes)  # type: ignore[arg-type]
    if resume and not (Path(out_dir) / "last.pt").is_file():
        raise ValueError(f"resume: {Path(out_dir) / 'last.pt'} does not exist")
    trainer = VoxelTrainer(train, val, out_dir, cfg, seed=seed, device=device, progress=progress, vocab=vocab)
    if resume:
        trainer.resume_from(Path(out_dir) / "last.pt")
    return trainer.run(epochs=epochs, minutes=minutes)


__all__ = ["KIND", "VoxelTrainer", "prepare_voxel_crystals", "train_voxel"]
