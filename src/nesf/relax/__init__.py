"""Relaxation of decoded crystals with a potential (CHGNet, the ``relax`` extra), and the checks that follow.

- :mod:`nesf.relax.potential`: :class:`Relaxer` (CHGNet ``StructOptimizer``, FIRE) and per-crystal
  :class:`RelaxResult` (energy per atom, RMSD to the relaxed form, kept space group);
- :mod:`nesf.relax.checks`: space groups, RMSD, uniqueness and novelty (no potential needed);
- :mod:`nesf.relax.hull`: energy above a convex hull of training crystals (a stability proxy);
- :mod:`nesf.relax.metrics`: :func:`relaxed_metrics`, all of them for a set of generated crystals;
- :mod:`nesf.relax.screen`: static CHGNet formation energies, and the screen of ``nesf sample --screen``.

Importing this package does not import CHGNet; :class:`Relaxer` needs it
(``pip install 'nesf[relax]'``).
"""

from __future__ import annotations

from nesf.relax.checks import novel_mask, rmsd_to_relaxed, space_group_number, unique_mask
from nesf.relax.hull import EnergyCache, HullProxy, training_hull
from nesf.relax.metrics import relaxed_metrics
from nesf.relax.potential import Relaxer, RelaxError, RelaxResult, RelaxSettings, require_chgnet

__all__ = [
    "EnergyCache",
    "HullProxy",
    "RelaxError",
    "RelaxResult",
    "RelaxSettings",
    "Relaxer",
    "novel_mask",
    "relaxed_metrics",
    "require_chgnet",
    "rmsd_to_relaxed",
    "space_group_number",
    "training_hull",
    "unique_mask",
]
