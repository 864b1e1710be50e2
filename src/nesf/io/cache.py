"""Where nesf keeps its caches (hull energies, fingerprints): one root that users can move."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """``$NESF_CACHE_DIR/<kind>``, else ``$XDG_CACHE_HOME/nesf/<kind>``, else ``~/.cache/nesf/<kind>``."""
    if os.environ.get("NESF_CACHE_DIR"):
        return Path(os.environ["NESF_CACHE_DIR"]) / kind
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nesf" / kind


__all__ = ["cache_dir"]
