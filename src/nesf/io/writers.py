"""Writers: CIF, extxyz and JSON, always atomically (temporary file, then rename)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nesf.data.crystal import Crystal


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    A crash or an error inside ``write`` leaves ``path`` untouched (no half-written files).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a JSON object atomically (NaN written as null)."""
    text = json.dumps(_clean(data), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


#: What the ``setting`` of a crystal's ``info`` means, written as a comment atop its CIF.
SETTING_NOTES = {
    "input": "the input's own cell and origin",
    "canonical": "the canonical cell and origin of nesf.data.setting (a latent carries no input setting)",
}


def write_cif(path: str | Path, crystal: Crystal) -> Path:
    """Write one crystal as a CIF file (pymatgen ``CifWriter``), atomically.

    A crystal whose ``info["setting"]`` is known gets a comment line saying which cell and
    origin it is written in.
    """
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(crystal.to_pymatgen()))
    setting = crystal.info.get("setting")
    if setting in SETTING_NOTES:
        text = f"# nesf setting: {setting} ({SETTING_NOTES[setting]})\n" + text
    return atomic_write(path, lambda p: p.write_text(text))


def write_extxyz(path: str | Path, crystals: Sequence[Crystal]) -> Path:
    """Write crystals as one extended-XYZ file (``material_id`` in each frame), atomically."""
    import ase.io

    frames = [c.to_ase() for c in crystals]
    return atomic_write(path, lambda p: ase.io.write(str(p), frames, format="extxyz"))


def safe_filename(name: str) -> str:
    """A file-system-safe version of a crystal id."""
    keep = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in name)
    return keep.strip("._") or "structure"
