"""Prepared crystal sets: crystals already brought to a model's setting, saved once, read fast.

Bringing a crystal to its canonical setting (:func:`nesf.data.setting.canonical_setting`) and
finding its crystal system take a few milliseconds each; for a set of 67,000 crystals that is
minutes before every training run. ``nesf prepare`` does it once and writes a ``.pt`` file
(plain tensors and strings, read with ``weights_only=True``; lattices in float64, positions
in float32, as training uses them) that :func:`nesf.read_crystals`
and ``nesf train`` accept wherever a crystal file is expected. A prepared crystal records
its setting in ``info["prepared"]``, so training does not prepare it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nesf.data.crystal import Crystal
from nesf.errors import CrystalInputError
from nesf.io.writers import atomic_write

#: Marker of a prepared crystal set in its file.
FORMAT = "nesf-prepared-crystals"
VERSION = 1


def setting_key(frame: str, setting: str, origin: str, primitive: bool = False) -> str:
    """The name of the setting a model sees crystals in, as recorded in ``info["prepared"]``.

    Args:
        frame: ``"periodic"`` or ``"paper"``.
        setting: ``"as_given"`` or ``"canonical"``.
        origin: canonical origin rule (``"rarest"`` or ``"roomiest"``; ignored unless canonical).
        primitive: canonical setting of the primitive cell.
    """
    if setting == "canonical":
        return f"canonical/{origin}" + ("/primitive" if primitive else "")
    return "standard" if frame == "periodic" else "as_given"


def prepare_crystals(
    crystals: Sequence[Crystal], frame: str, setting: str = "as_given", origin: str = "rarest", primitive: bool = False
) -> list[Crystal]:
    """Crystals as the model sees them.

    Periodic frame: standard orientation with atoms in the cell; with ``setting="canonical"``
    also in their canonical cell and origin (:func:`nesf.data.setting.canonical_setting`, origin
    rule ``origin``; with ``primitive`` of their primitive cells).
    Paper frame: as given.
    Crystals read from a prepared set in this setting (``nesf prepare``) are taken as they are.
    """
    key = setting_key(frame, setting, origin, primitive)
    if all(c.info.get("prepared") == key for c in crystals):
        return list(crystals)
    if setting == "canonical":
        from nesf.data.setting import canonical_setting

        return [canonical_setting(c, origin, primitive)[0] for c in crystals]
    from nesf.fields.frame import get_frame  # imported here: data does not depend on fields at import

    if get_frame(frame).periodic:
        return [c.standardized() for c in crystals]
    return list(crystals)


def _prepare_one(args: tuple[Crystal, str, str, str, bool]) -> Crystal:
    crystal, frame, setting, origin, primitive = args
    from nesf.data.domain import crystal_system

    if setting == "canonical":
        from nesf.data.setting import canonical_setting

        out = canonical_setting(crystal, origin, primitive)[0]
    elif frame == "periodic":
        out = crystal.standardized()
    else:
        out = replace(crystal)  # a new object: the caller's crystal keeps its info
    out.info = {**out.info, "prepared": setting_key(frame, setting, origin, primitive)}
    out.info.setdefault("crystal_system", crystal_system(out))
    return out


def prepare_set(
    crystals: Sequence[Crystal],
    frame: str = "periodic",
    setting: str = "canonical",
    origin: str = "roomiest",
    primitive: bool = False,
    jobs: int = 1,
    progress: bool = False,
) -> list[Crystal]:
    """Crystals in a model's setting, each with its crystal system in ``info``.

    Args:
        crystals: the crystals as read.
        frame: ``"periodic"`` or ``"paper"``.
        setting: ``"as_given"`` or ``"canonical"`` (periodic frame only).
        origin: canonical origin rule.
        primitive: reduce every crystal to a primitive cell first (canonical setting only).
        jobs: worker processes (the result does not depend on it).
        progress: a progress bar on stderr.

    Returns:
        The prepared crystals, in input order.
    """
    if setting == "canonical" and frame != "periodic":
        raise ValueError("the canonical setting needs the periodic frame")
    if primitive and setting != "canonical":
        raise ValueError("the primitive cell is part of the canonical setting")
    work = [(c, frame, setting, origin, primitive) for c in crystals]
    bar = dict(total=len(work), desc="preparing", unit="crystal", disable=not progress)
    if jobs <= 1 or len(work) < 2 * jobs:
        return [_prepare_one(w) for w in tqdm(work, **bar)]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(tqdm(pool.map(_prepare_one, work, chunksize=256), **bar))


def save_prepared(path: str | Path, crystals: Sequence[Crystal]) -> Path:
    """Write prepared crystals (:func:`prepare_set`) to ``path`` atomically.

    Raises:
        ValueError: a crystal was not prepared, or the crystals were prepared in different settings.
    """
    if not crystals:
        raise ValueError("a prepared set needs at least one crystal")
    keys = {c.info.get("prepared") for c in crystals}
    if None in keys or len(keys) != 1:
        raise ValueError(f"every crystal must be prepared in one setting (found {sorted(map(str, keys))})")
    counts = np.array([c.n_atoms for c in crystals], dtype=np.int64)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "setting": keys.pop(),
        "lattice": torch.as_tensor(np.stack([c.lattice for c in crystals])),
        # float32 positions (what training uses; about 1e-6 A from the float64 ones) halve the file
        "cart": torch.as_tensor(np.concatenate([c.cart for c in crystals]).astype(np.float32)),
        "numbers": torch.as_tensor(np.concatenate([c.numbers for c in crystals]).astype(np.int16)),
        "counts": torch.as_tensor(counts),
        "ids": [str(c.id) for c in crystals],
        "crystal_systems": [str(c.info.get("crystal_system", "unknown")) for c in crystals],
        "sources": [Path(str(c.info.get("source", ""))).name for c in crystals],
    }
    return atomic_write(Path(path), lambda p: torch.save(payload, p))


def read_prepared(path: str | Path) -> list[Crystal]:
    """Crystals of a prepared set written by :func:`save_prepared`.

    Raises:
        CrystalInputError: the file is not a prepared crystal set (a model checkpoint, say) or is damaged.
    """
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets one clear message
        raise CrystalInputError(
            str(path), f"not a readable prepared crystal set ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        what = "a model checkpoint" if isinstance(data, dict) and "state_dict" in data else "not a prepared crystal set"
        raise CrystalInputError(str(path), f"{what}; crystal .pt files are written by 'nesf prepare'")
    if int(data.get("version", 0)) > VERSION:
        raise CrystalInputError(str(path), f"written by a newer nesf (format version {data['version']})")
    counts = data["counts"].numpy()
    ends = np.cumsum(counts)
    cart, numbers, lattice = data["cart"].numpy(), data["numbers"].numpy(), data["lattice"].numpy()
    if ends[-1] != len(cart) or len(numbers) != len(cart) or len(lattice) != len(counts):
        raise CrystalInputError(str(path), "the prepared set is damaged (atom counts do not add up)")
    out = []
    for i, (start, end) in enumerate(zip(ends - counts, ends)):
        info = {"prepared": data["setting"], "crystal_system": data["crystal_systems"][i]}
        if data["setting"].startswith("canonical"):
            info["setting"] = "canonical"
        if data["sources"][i]:
            info["prepared_from"] = data["sources"][i]
        out.append(Crystal(lattice[i], cart[start:end], numbers[start:end], data["ids"][i], info))
    return out


__all__ = ["FORMAT", "prepare_crystals", "prepare_set", "read_prepared", "save_prepared", "setting_key"]
