"""Checkpoints: one self-describing file, written atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from nesf import __version__
from nesf.errors import CheckpointError
from nesf.io.writers import atomic_write

FORMAT = "nesf-checkpoint"
#: 2: a second SHA-256 (:data:`FILE_HASH_KEY`) covers everything in the file, the model card included.
FORMAT_VERSION = 2
REQUIRED_KEYS = ("format", "format_version", "model_config", "vocab", "state_dict")
#: Key of the SHA-256 over the whole checkpoint (every key but itself); format 2 and newer.
FILE_HASH_KEY = "file_sha256"


#: Parts of a checkpoint covered by its SHA-256 (the weights and what gives them meaning).
HASHED_KEYS = ("state_dict", "model_config", "vocab", "trained_numbers", "domain", "kind", "frame", "bbox")


def content_hash(data: dict[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's weights and configuration (:data:`HASHED_KEYS`)."""
    h = hashlib.sha256()
    for key in HASHED_KEYS:
        if key not in data:
            continue
        h.update(f"<{key}>".encode())
        value = data[key]
        if key == "state_dict":
            if not isinstance(value, dict):
                raise TypeError("state_dict is not a mapping")
            for name in sorted(value):
                tensor = value[name]
                h.update(name.encode())
                h.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
                h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()


def file_hash(data: dict[str, Any]) -> str:
    """SHA-256 (hex) of everything a checkpoint holds but :data:`FILE_HASH_KEY` itself (model card included)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in data.items() if k != FILE_HASH_KEY})
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    """Feed nested plain data and tensors to a hash, unambiguously (types, shapes and order included)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(b"{")
        for key in sorted(value, key=lambda k: (type(k).__name__, str(k))):
            _feed(h, key)
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[" if isinstance(value, list) else b"(")
        for item in value:
            _feed(h, item)
        h.update(b"]")
    else:
        h.update(f"{type(value).__name__}:".encode() + json.dumps(value, default=str).encode() + b";")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plain containers and tensors only) with format tags and two SHA-256s, atomically.

    ``sha256`` covers the weights and what gives them meaning (the model's identity, which
    priors and property heads refer to); ``file_sha256`` covers everything, the card included.
    """
    data = {"format": FORMAT, **payload, "format_version": FORMAT_VERSION, "nesf_version": __version__}
    data.pop(FILE_HASH_KEY, None)
    data["sha256"] = content_hash(data)
    data[FILE_HASH_KEY] = file_hash(data)
    buf = io.BytesIO()
    torch.save(data, buf)
    raw = buf.getvalue()
    return atomic_write(path, lambda p: p.write_bytes(raw))


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", legacy_card_ok: bool = False
) -> dict[str, Any]:
    """Load and check a checkpoint; never unpickles arbitrary objects.

    Args:
        path: the checkpoint file.
        map_location: where tensors go.
        legacy_card_ok: accept a format-1 checkpoint whose model card no hash covers (to re-save it).

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
    _check_hashes(path, data, legacy_card_ok)
    return data


def _check_hashes(path: Path, data: dict[str, Any], legacy_card_ok: bool) -> None:
    """Refuse a checkpoint without its hashes or whose contents do not match them."""
    if not isinstance(data.get("sha256"), str):
        raise CheckpointError(
            f"{path}: refused: the checkpoint carries no SHA-256, so changed or corrupted weights could not be "
            "told apart (nesf writes one into every checkpoint)"
        )
    try:
        actual = content_hash(data)
        whole = file_hash(data) if FILE_HASH_KEY in data else None
    except (TypeError, AttributeError, RuntimeError, ValueError):
        raise CheckpointError(f"{path}: inconsistent nesf checkpoint (its weights cannot be read)") from None
    if actual != data["sha256"]:
        raise CheckpointError(
            f"{path}: refused: the weights or configuration do not match the checkpoint's SHA-256 "
            "(the file was corrupted or changed after it was written)"
        )
    if int(data["format_version"]) >= 2 or FILE_HASH_KEY in data:
        if whole is None:
            raise CheckpointError(f"{path}: refused: the checkpoint's whole-file SHA-256 ({FILE_HASH_KEY}) is missing")
        if whole != data[FILE_HASH_KEY]:
            raise CheckpointError(
                f"{path}: refused: the model card or other contents do not match the checkpoint's SHA-256 "
                "(the file was corrupted or changed after it was written)"
            )
    elif data.get("model_card") and not legacy_card_ok:
        raise CheckpointError(
            f"{path}: refused: its model card is not covered by a SHA-256 (an older checkpoint format); "
            f"re-save it with 'nesf export {path.name} --out NEW.pt'"
        )


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporary checkpoint files (``.NAME.pt.*.tmp``) a killed run left in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.glob(".*.pt.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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
    "decoding",
    "sampling",
    "refinement",
    "search_probe",
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
    ck = load_checkpoint(src, legacy_card_ok=True)  # refuses a corrupted source (SHA-256); re-hashes an old card
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
