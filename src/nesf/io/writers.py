"""Writers: CIF, extxyz and JSON, always atomically (temporary file, then rename)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def check_output_folder(path: str | Path, overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` can become an output folder; raise ``OutputError`` if not.

    Refused: an existing file, a path under a file, a non-empty folder (unless ``overwrite``),
    and a place this process cannot write to.
    """
    from nesf.errors import OutputError

    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == path else f"lies under {parent}, which is a file"
                raise OutputError(f"{path}: cannot be an output folder: it {what}")
            break
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputError(f"{path}: the output folder exists and is not empty (use --overwrite to replace it)")
    existing = next(p for p in [path, *path.parents] if p.exists())
    target = existing if existing != path else path.parent if not path.exists() else path
    if not os.access(existing, os.W_OK | os.X_OK) or (path.exists() and not os.access(path.parent, os.W_OK)):
        raise OutputError(f"{path}: cannot write there (permission denied on {target})")
    return path


@contextmanager
def staged_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Write a whole output folder at once: into a temporary folder beside ``path``, moved into place at the end.

    An error on the way leaves ``path`` as it was (and no temporary folder); with
    ``overwrite`` an existing folder is replaced only once the new one is complete, so two runs
    on one folder never mix their files.
    """
    path = check_output_folder(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.nesf-{os.getpid()}-", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.nesf-{os.getpid()}-", suffix=".old", dir=path.parent))
            os.replace(path, old / "previous")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_staging(path: str | Path) -> list[Path]:
    """Delete the staging folders of ``path`` (``.NAME.*.tmp`` / ``.old``) that killed runs left behind.

    A staging folder names the process that made it; one whose process still runs (another
    command writing the same output right now) is left alone.
    """
    path = Path(path)
    removed = []
    for p in path.parent.glob(f".{glob_escape(path.name)}.*"):
        if not p.is_dir() or p.suffix not in (".tmp", ".old"):
            continue
        owner = re.search(r"\.nesf-(\d+)-", p.name)
        if owner is not None and _alive(int(owner.group(1))):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with the characters glob reads as patterns escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: dict[str, Any]) -> Path:
    """Write a JSON object atomically (NaN written as null)."""
    text = json.dumps(clean_json(data), indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def clean_json(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None, for JSON (nested dicts, lists and tuples)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


#: What the ``setting`` of a crystal's ``info`` means, written as a comment atop its CIF.
SETTING_NOTES = {
    "input": "the input's own cell and origin",
    "canonical": "the canonical cell and origin of nesf.data.setting (a latent carries no input setting)",
}


def cif_text(crystal: Crystal) -> str:
    """One crystal as CIF text in space group P1 (ASE's CIF writer, full precision).

    A crystal whose ``info["setting"]`` is known gets a comment line saying which cell and
    origin it is written in. (ASE's writer, not pymatgen's ``CifWriter``: importing
    ``pymatgen.io.cif`` costs a one-crystal command about 0.1-0.2 s of start-up; a crystal
    without atoms, which ASE cannot write, is written by pymatgen.)
    """
    if crystal.n_atoms == 0:  # ASE's writer needs an atom; pymatgen's writes the cell alone
        from pymatgen.io.cif import CifWriter

        text = str(CifWriter(crystal.to_pymatgen()))
    else:
        import io

        from ase.io import write

        buffer = io.BytesIO()
        write(buffer, crystal.to_ase(), format="cif", wrap=False)  # positions as they are, not wrapped
        text = buffer.getvalue().decode("utf-8")
        block = re.sub(r"[^A-Za-z0-9_.-]+", "_", crystal.id or crystal.formula) or "crystal"
        text = re.sub(r"\Adata_image0", lambda _: f"data_{block}", text)
    setting = crystal.info.get("setting")
    if setting in SETTING_NOTES:
        text = f"# nesf setting: {setting} ({SETTING_NOTES[setting]})\n" + text
    return text


def write_cif(path: str | Path, crystal: Crystal) -> Path:
    """Write one crystal as a CIF file (:func:`cif_text`), atomically."""
    text = cif_text(crystal)
    return atomic_write(path, lambda p: p.write_text(text))


def extxyz_text(crystals: Sequence[Crystal]) -> str:
    """Crystals as extended-XYZ text (``material_id``, ``setting`` and scalar properties in each frame).

    Written directly in the plain dialect (:func:`nesf.data.extxyz_plain.plain_extxyz_text`) where
    every value has a plain spelling, else by ASE.
    """
    from nesf.data.extxyz_plain import plain_extxyz_text

    text = plain_extxyz_text([(c.lattice, c.cart, c.numbers, c.file_info()) for c in crystals])
    if text is not None:
        return text
    import io

    import ase.io

    buffer = io.StringIO()
    ase.io.write(buffer, [c.to_ase() for c in crystals], format="extxyz")
    return buffer.getvalue()


def write_extxyz(path: str | Path, crystals: Sequence[Crystal]) -> Path:
    """Write crystals as one extended-XYZ file (``material_id`` in each frame), atomically."""
    text = extxyz_text(crystals)
    return atomic_write(path, lambda p: p.write_text(text))


def unique_stem(crystal_id: str, seen: dict[str, int]) -> str:
    """A file-system-safe file stem for a crystal id, ``-2``, ``-3``, ... appended to repeats (``seen`` counts)."""
    name = safe_filename(crystal_id)
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name}-{seen[name]}"


def safe_filename(name: str) -> str:
    """A file-system-safe version of a crystal id."""
    keep = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in name)
    return keep.strip("._") or "structure"
