"""The models: the ones shipped inside the package, and loading any model file by its kind.

A model is named by a checkpoint path or by the name of a shipped model (any case). Every nesf
checkpoint records its ``kind``: a NeSF autoencoder (``"nesf"``, also when the key is absent),
the voxel-autoencoder baseline (``"voxel"``) or a latent prior (``"latent-prior"``);
:func:`load_model` reads the file once and builds the matching object.
"""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nesf.errors import CheckpointError

if TYPE_CHECKING:
    import torch


def available_models() -> list[str]:
    """Names of the models shipped inside the package."""
    try:
        folder = resources.files("nesf") / "weights"
        return sorted(p.name[:-3] for p in folder.iterdir() if p.name.endswith(".pt"))
    except (FileNotFoundError, NotADirectoryError):
        return []


def resolve_model_path(path_or_name: str | Path) -> Path:
    """A checkpoint path, or the path of a shipped model of that name (never the network)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    name = str(path_or_name)
    by_lower = {m.lower(): m for m in available_models()}
    if name.lower() in by_lower:
        return Path(str(resources.files("nesf") / "weights" / f"{by_lower[name.lower()]}.pt"))
    shipped = ", ".join(available_models()) or "none"
    raise CheckpointError(
        f"{path_or_name}: no such checkpoint file, and no shipped model of that name (shipped: {shipped})"
    )


def shipped_prior_path(model_source: str | None) -> Path | None:
    """The prior shipped beside a shipped model (``weights/priors/NAME.pt``), if there is one."""
    if not model_source:
        return None
    src = Path(model_source)
    candidate = src.parent / "priors" / src.name
    return candidate if src.parent.name == "weights" and candidate.is_file() else None


def checkpoint_kind(path: str | Path) -> str:
    """``"voxel"`` for a voxel-autoencoder checkpoint, ``"nesf"`` for a NeSF one (the ``kind`` it records).

    Raises:
        CheckpointError: missing, corrupted or foreign file.
    """
    from nesf.training.checkpoint import load_checkpoint

    return str(load_checkpoint(resolve_model_path(path), map_location="cpu").get("kind", "nesf"))


#: The ``"kind"`` of voxel-autoencoder checkpoints (``nesf.voxel.train.KIND``).
VOXEL_KIND = "voxel"

#: Loader (``"module:function"``, called as ``function(checkpoint, source=...)``) of each kind of
#: artefact that is not an autoencoder; modules are imported only when their kind is loaded.
ARTEFACT_LOADERS = {
    "latent-prior": "nesf.generation.prior:prior_from_checkpoint",
    "property_head": "nesf.design.head:head_from_checkpoint",
    "crystal_property_head": "nesf.design.crystal_head:crystal_head_from_checkpoint",
    "property_evaluator": "nesf.design.evaluator:evaluator_from_checkpoint",
}


def load_model(path: str | Path, device: str | torch.device = "cpu", priors: bool = True) -> Any:
    """Load a checkpoint (path or shipped model name) as the object of its kind.

    A :class:`nesf.api.NeSF` autoencoder, a :class:`nesf.voxel.VoxelAutoencoder`, a
    :class:`nesf.generation.prior.LatentPrior`, a :class:`nesf.design.head.PropertyHead` or a
    :class:`nesf.design.evaluator.Evaluator` (the last three on the CPU). Dispatches on the checkpoint's
    ``"kind"`` key (absent in NeSF checkpoints); the file is read once, with ``weights_only=True``.

    Args:
        path: a checkpoint file or the name of a shipped model.
        device: where an autoencoder computes.
        priors: also open latent priors, property heads and evaluators; False: autoencoders only (the others
            are refused as not a NeSF model).

    Raises:
        CheckpointError: missing, corrupted, foreign or inconsistent file, or one of a kind not asked for.
    """
    from nesf.api import NeSF
    from nesf.training.checkpoint import load_checkpoint

    resolved = resolve_model_path(path)
    ck = load_checkpoint(resolved, map_location="cpu")
    kind = ck.get("kind", "nesf")
    if kind == VOXEL_KIND:
        from nesf.voxel.api import VoxelAutoencoder

        return VoxelAutoencoder.from_checkpoint(ck, device=device, source=str(resolved))
    if kind in ARTEFACT_LOADERS and priors:  # latent priors, property heads and their evaluators
        module, name = ARTEFACT_LOADERS[kind].split(":")
        return getattr(importlib.import_module(module), name)(ck, source=str(resolved))
    return NeSF.from_checkpoint(ck, device=device, source=str(resolved))  # refuses the kinds it is not
