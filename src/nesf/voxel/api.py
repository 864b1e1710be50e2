"""The user-facing voxel autoencoder, with the interface of :class:`nesf.api.NeSF`.

``VoxelAutoencoder.load(path)`` reads a checkpoint written by :func:`train_voxel`;
``prepare``, ``encode_crystals``, ``decode_crystals`` and ``reconstruct_crystals`` work as on
``NeSF``, so ``nesf evaluate`` and ``nesf reconstruct`` can use either model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nesf._memory import keep_freed_memory
from nesf.data.crystal import Crystal, make_valid_params, params_to_lattice
from nesf.data.readers import from_objects
from nesf.data.vocab import SpeciesVocab
from nesf.errors import CheckpointError
from nesf.models.config import config_from_dict
from nesf.registry import resolve_model_path
from nesf.training.checkpoint import load_checkpoint
from nesf.voxel.extract import ExtractionSettings, extract_crystals
from nesf.voxel.grid import voxelize
from nesf.voxel.model import VoxelConfig, VoxelModel
from nesf.voxel.train import KIND, prepare_voxel_crystals, train_voxel

#: Settings of the particle reconstruction that have no meaning for a voxel grid (accepted, ignored).
IGNORED_SETTINGS = ("grid_spacing", "n_steps", "steps")


class VoxelAutoencoder:
    """A trained ICSG3D-style voxel autoencoder.

    Args:
        model: the networks (VAE with lattice head, species U-Net).
        vocab: species vocabulary.
        settings: how decoded densities become atoms.
        device: where to compute.
    """

    def __init__(
        self,
        model: VoxelModel,
        vocab: SpeciesVocab,
        settings: ExtractionSettings | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        keep_freed_memory()
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.vocab = vocab
        self.settings = settings or ExtractionSettings()
        self.info: dict[str, Any] = {}

    @property
    def cfg(self) -> VoxelConfig:
        """The model's configuration."""
        return self.model.cfg

    @property
    def frame(self) -> str:
        """``"periodic"``: atoms come back inside the cell; metrics use minimum images in the true cell."""
        return "periodic"

    @property
    def latent_dim(self) -> int:
        """Size of the latent code."""
        return self.model.cfg.latent_dim

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> VoxelAutoencoder:
        """Load a voxel checkpoint file or a shipped model by name (``weights_only=True``).

        Raises:
            CheckpointError: missing, corrupted or foreign file, or an nesf checkpoint of another kind.
        """
        resolved = resolve_model_path(path)
        ck = load_checkpoint(resolved, map_location="cpu")
        return cls.from_checkpoint(ck, device=device, source=str(resolved))

    @classmethod
    def from_checkpoint(
        cls, ck: dict, device: str | torch.device = "cpu", source: str = "<checkpoint>"
    ) -> VoxelAutoencoder:
        """Build from a loaded checkpoint dict."""
        if ck.get("kind") != KIND:
            kind = ck.get("kind", "nesf")
            raise CheckpointError(f"{source}: not a voxel-autoencoder checkpoint (kind {kind!r}); use NeSF.load")
        try:
            cfg = config_from_dict(VoxelConfig, ck["model_config"])
            vocab = SpeciesVocab.from_dict(ck["vocab"])
            model = VoxelModel(cfg, len(vocab))
            model.load_state_dict(ck["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0][:200]
            raise CheckpointError(f"{source}: inconsistent voxel checkpoint: {reason}") from None
        out = cls(model, vocab, device=device)
        out.info = {"source": source, "epoch": ck.get("epoch"), "nesf_version": ck.get("nesf_version"), "kind": KIND}
        return out

    # ------------------------------------------------------------------ encode / decode
    def prepare(self, structures: Any) -> list[Crystal]:
        """Structures (pymatgen, ASE, :class:`Crystal`) as this model sees them (standard orientation)."""
        return prepare_voxel_crystals(from_objects(structures))

    def voxelize(self, crystals: Sequence[Crystal]) -> tuple[torch.Tensor, torch.Tensor]:
        """True density and label grids ``[B, d, d, d]`` of crystals, with this model's settings."""
        density, labels = voxelize(
            crystals, self.cfg.d, self.cfg.sigma_factor, self.cfg.label_factor, self.vocab, device=self.device
        )
        assert labels is not None
        return density, labels

    @torch.no_grad()
    def encode_crystals(self, crystals: Sequence[Crystal], batch_size: int | None = None) -> torch.Tensor:
        """Latent codes ``[B, latent]`` (posterior means) of crystals already prepared.

        Raises:
            UnknownElementError: a crystal holds an element outside the model's vocabulary.
        """
        step = batch_size or self.settings.batch_size
        out = []
        for start in range(0, len(crystals), step):
            density, _ = self.voxelize(crystals[start : start + step])
            out.append(self.model.vae.encode(density)[0])
        return torch.cat(out) if out else torch.zeros(0, self.latent_dim, device=self.device)

    def encode(self, structures: Any) -> np.ndarray:
        """Latent codes ``[B, latent]`` of pymatgen ``Structure`` / ASE ``Atoms`` objects."""
        return self.encode_crystals(self.prepare(structures)).cpu().numpy()

    @torch.no_grad()
    def decode_grids(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decoded grids of latents ``[B, latent]``.

        Returns:
            ``density`` ``[B, d, d, d]``, ``labels`` ``[B, d, d, d]`` (U-Net arg-max, 0 = background),
            ``foreground`` ``[B, d, d, d]`` (most likely non-background label) and ``lattice``
            ``[B, 6]`` (A, rad).
        """
        density = self.model.vae.decode(z)
        logits = self.model.unet(density)
        return {
            "density": density,
            "labels": logits.argmax(dim=1),
            "foreground": logits[:, 1:].argmax(dim=1) + 1,
            "lattice": self.model.vae.decode_lattice(z),
        }

    @torch.no_grad()
    def decode_crystals(
        self, latents: np.ndarray | torch.Tensor, ids: Sequence[str] | None = None, progress: bool = False
    ) -> list[Crystal]:
        """Crystals decoded from latents ``[B, latent]``: density peaks, U-Net species, predicted lattice."""
        z_all = latents if isinstance(latents, torch.Tensor) else torch.as_tensor(np.asarray(latents))
        z_all = z_all.to(self.device, torch.float32)
        if z_all.ndim != 2 or z_all.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape [B, {self.latent_dim}], got {list(z_all.shape)}")
        ids = list(ids) if ids is not None else [f"decoded-{i}" for i in range(len(z_all))]
        step = self.settings.batch_size
        out: list[Crystal] = []
        with tqdm(total=len(z_all), desc="decode", unit="crystal", disable=not progress) as bar:
            for start in range(0, len(z_all), step):
                grids = self.decode_grids(z_all[start : start + step])
                params = make_valid_params(grids["lattice"].double().cpu().numpy())
                out += extract_crystals(
                    grids["density"].cpu().numpy(),
                    params_to_lattice(params),
                    self.vocab,
                    grids["labels"].cpu().numpy(),
                    grids["foreground"].cpu().numpy(),
                    self.settings,
                    ids[start : start + step],
                )
                bar.update(len(grids["density"]))
        return out

    def decode(self, latents: np.ndarray | torch.Tensor) -> list:
        """Pymatgen ``Structure`` objects decoded from latents ``[B, latent]``."""
        return [c.to_pymatgen() for c in self.decode_crystals(latents)]

    def reconstruct_crystals(self, crystals: Sequence[Crystal], progress: bool = False) -> list[Crystal]:
        """Round trip of prepared crystals: voxelise, encode, decode, extract atoms (batch by batch)."""
        out: list[Crystal] = []
        step = self.settings.batch_size
        with tqdm(total=len(crystals), desc="reconstruct (voxel)", unit="crystal", disable=not progress) as bar:
            for start in range(0, len(crystals), step):
                chunk = crystals[start : start + step]
                z = self.encode_crystals(chunk, batch_size=step)
                out += self.decode_crystals(z, ids=[c.id for c in chunk])
                bar.update(len(chunk))
        return out

    def reconstruct(self, structures: Any) -> list:
        """Round trip of pymatgen / ASE structures; returns pymatgen ``Structure`` objects."""
        return [c.to_pymatgen() for c in self.reconstruct_crystals(self.prepare(structures))]

    def with_settings(self, **changes: Any) -> VoxelAutoencoder:
        """A copy sharing the networks, with other extraction settings.

        Accepts the fields of :class:`~nesf.voxel.extract.ExtractionSettings` (``batch_size``,
        ``threshold``, ``merge_tol``, ``margin_voxels``, ``vote_radius``); the particle settings
        ``grid_spacing`` and ``n_steps`` / ``steps`` of NeSF are accepted and ignored (the voxel
        grid is fixed by the model). A ``None`` value leaves a setting unchanged.
        """
        known = {f.name for f in fields(ExtractionSettings)}
        unknown = sorted(k for k in changes if k not in known and k not in IGNORED_SETTINGS)
        if unknown:
            raise ValueError(
                f"unknown voxel decoding setting(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}"
            )
        kept = {k: v for k, v in changes.items() if k in known and v is not None}
        other = VoxelAutoencoder(self.model, self.vocab, replace(self.settings, **kept), self.device)
        other.info = dict(self.info)
        return other


__all__ = ["IGNORED_SETTINGS", "VoxelAutoencoder", "train_voxel"]
