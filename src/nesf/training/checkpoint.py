"""Checkpoints: one self-describing file, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import torch

from nesf import __version__
from nesf.errors import CheckpointError
from nesf.io.writers import atomic_write

FORMAT = "nesf-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "model_config", "vocab", "state_dict")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plain containers and tensors only) with format tags, atomically."""
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "nesf_version": __version__, **payload}
    buf = io.BytesIO()
    torch.save(data, buf)
    raw = buf.getvalue()
    return atomic_write(path, lambda p: p.write_bytes(raw))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; never unpickles arbitrary objects.

    Raises:
        CheckpointError: missing file, corrupted file, or not an nesf checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path}: not a readable checkpoint (not a PyTorch archive: corrupted, truncated or another format)"
        )
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint (corrupted or truncated): {_first_line(exc)}"
        ) from None
    except Exception as exc:  # weights_only refuses foreign pickled objects with UnpicklingError
        raise CheckpointError(
            f"{path}: refused: the file holds objects other than tensors and plain data "
            f"(only nesf checkpoints are loaded, with weights_only=True): {_first_line(exc)}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an nesf checkpoint (no '{FORMAT}' format tag)")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: incomplete nesf checkpoint (missing {', '.join(missing)})")
    if int(data["format_version"]) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {data['format_version']} is newer than this nesf ({__version__}) reads"
        )
    return data


#: What a model needs for inference; :func:`export_model` keeps only these.
INFERENCE_KEYS = (
    "kind",
    "model_config",
    "train_config",
    "vocab",
    "frame",
    "bbox",
    "state_dict",
    "seed",
    "epoch",
    "init_from",
    "trained_numbers",
    "domain",
)


def export_model(
    src: str | Path,
    out: str | Path,
    card: dict[str, Any] | None = None,
    trained_numbers: list[int] | None = None,
    domain: dict[str, Any] | None = None,
) -> Path:
    """A small inference checkpoint from a training one: no optimiser state, plus a model card.

    Args:
        src: a checkpoint written by training (``last.pt`` / ``best.pt``).
        out: the file to write (atomically).
        card: plain-data description (data, preset, metrics, ...) stored as ``model_card``.
        trained_numbers: atomic numbers of the training data, for checkpoints that predate
            recording them (decoding never predicts other elements).
        domain: the training data's domain (:meth:`nesf.data.domain.Domain.to_dict`), for
            checkpoints that predate recording it.
    """
    ck = load_checkpoint(src)
    payload = {k: ck[k] for k in INFERENCE_KEYS if k in ck}
    if trained_numbers is not None:
        payload["trained_numbers"] = [int(z) for z in trained_numbers]
    if domain is not None:
        payload["domain"] = domain
    payload["trained_with_nesf"] = ck.get("nesf_version")
    card = dict(card or {})
    history = ck.get("history") or []
    if history:
        card.setdefault("training_steps", int(history[-1]["step"]))
        card.setdefault("training_seconds", round(float(history[-1]["seconds"]), 1))
        card.setdefault("final_val_loss", round(float(history[-1]["val_loss"]), 5))
    card.setdefault("epochs", ck.get("epoch"))
    payload["model_card"] = card
    return save_checkpoint(out, payload)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line[:200]
