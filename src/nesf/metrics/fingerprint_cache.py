"""A disk cache of the generation protocol's fingerprints, so that a reference set is fingerprinted once.

CrystalNN fingerprints cost about a second per crystal on one core, so scoring 10,000 samples
against a 2,000-crystal test split takes hours, and most of it is spent on crystals already
seen: the same reference set in every comparison, the same samples scored again with another
preset. The cache keys each crystal by a SHA-256 of its atomic numbers, cell and wrapped
fractional positions (rounded to 1e-6), under a folder named for the featurisers' versions;
rows are stored in shards written as they are computed (each a complete ``.npz``: temporary
file, then rename), so a killed run keeps what it finished and the next run resumes from there.

Layout: ``<root>/<tag>/shard-<time>-<pid>.npz`` with ``keys`` ``[n]`` (str), ``struct``
``[n, 61]`` and ``comp`` ``[n, 132]`` (float, NaN where a fingerprint failed).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from nesf.data.crystal import Crystal
from nesf.io.cache import cache_dir
from nesf.io.writers import atomic_write

#: Sizes of the two fingerprints (site-averaged CrystalNN "ops", Magpie).
STRUCT_DIM, COMP_DIM = 61, 132


def default_fingerprint_cache() -> Path:
    """``$NESF_CACHE_DIR/fingerprints``, else ``$XDG_CACHE_HOME/nesf/fingerprints``, else ``~/.cache/...``."""
    return cache_dir("fingerprints")


def featurizer_tag() -> str:
    """A folder name that changes whenever the featurisers could give other numbers (their versions)."""
    from importlib.metadata import version

    return f"crystalnn-ops_magpie-v1_matminer-{version('matminer')}_pymatgen-{version('pymatgen')}"


def crystal_key(crystal: Crystal) -> str:
    """SHA-256 (hex) of a crystal's atomic numbers, cell (A) and wrapped fractional positions, to 1e-6."""
    h = hashlib.sha256()
    h.update(np.asarray(crystal.numbers, dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(crystal.lattice, dtype=np.float64), 6).tobytes())
    frac = np.round(np.mod(np.asarray(crystal.frac, dtype=np.float64), 1.0), 6) % 1.0
    h.update((frac + 0.0).tobytes())  # + 0.0: -0.0 and 0.0 hash alike
    return h.hexdigest()


class FingerprintCache:
    """Fingerprint rows by crystal key, read from and appended to a folder of shards.

    Args:
        root: the cache's root folder (:func:`default_fingerprint_cache`); the rows live in
            its subfolder :func:`featurizer_tag`.
    """

    def __init__(self, root: str | Path) -> None:
        self.folder = Path(root) / featurizer_tag()
        self.rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, struct, comp = data["keys"], data["struct"], data["comp"]
            except (OSError, ValueError, KeyError):  # a foreign or damaged file: ignored, recomputed
                continue
            if struct.shape != (len(keys), STRUCT_DIM) or comp.shape != (len(keys), COMP_DIM):
                continue
            for k, s, c in zip(keys.tolist(), struct, comp):
                self.rows[str(k)] = (s, c)

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The cached ``(struct [61], comp [132])`` row of a crystal key, or None."""
        return self.rows.get(key)

    def add(self, keys: Sequence[str], rows: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Store rows under their keys, in memory and as one new shard on disk."""
        rows = list(rows)
        if not rows:
            return
        struct = np.array([r[0] for r in rows], dtype=np.float64).reshape(len(rows), STRUCT_DIM)
        comp = np.array([r[1] for r in rows], dtype=np.float64).reshape(len(rows), COMP_DIM)

        def write(path: Path) -> None:
            with open(path, "wb") as fh:
                np.savez(fh, keys=np.array(list(keys), dtype=str), struct=struct, comp=comp)

        atomic_write(self.folder / f"shard-{time.time_ns()}-{os.getpid()}.npz", write)
        for k, s, c in zip(keys, struct, comp):
            self.rows[k] = (s, c)


__all__ = ["FingerprintCache", "crystal_key", "default_fingerprint_cache", "featurizer_tag"]
