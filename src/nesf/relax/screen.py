"""Screening generated crystals by their CHGNet formation energy, without relaxing them.

A decoded sample's energy per atom is CHGNet's for the crystal as it is (one static evaluation,
no relaxation), and its formation energy is that energy minus the composition-weighted energies
of the elements (:func:`nesf.relax.hull.elemental_references`: the lowest CHGNet energy per atom
among each element's crystals in the Materials Project training set; an element outside that
table counts 0 eV/atom, as in the stability proxy). For an elemental model such as ``carbon_24``
this is the energy above the element's most stable crystal.

Samples far above that (eV/atom) are crystals no synthesis would give: overlapping or stretched
bonds, atoms missing from a cell. On ``carbon_24`` the static formation energy of a sample and
its fingerprint distance to the nearest real carbon cell correlate at 0.86 (benchmarks/RESULTS.md,
2026-12-06), so keeping the samples below a threshold keeps the real-looking ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nesf.data.crystal import Crystal


def formation_energies(
    crystals: Sequence[Crystal], energies: Sequence[float | None] | None = None, device: str = "cpu"
) -> np.ndarray:
    """Static CHGNet formation energies per atom ``[N]`` (eV/atom; NaN where CHGNet fails or a cell is empty).

    Args:
        crystals: the crystals, as they are (not relaxed).
        energies: their CHGNet energies per atom (eV/atom) if already known; else computed here
            (:func:`nesf.relax.potential.static_energies`, needs the relax extra).
        device: torch device of the potential.
    """
    from nesf.relax.hull import elemental_references
    from nesf.relax.potential import model_tag, static_energies

    crystals = list(crystals)
    if energies is None:
        energies = static_energies(crystals, device=device) if crystals else []
    if len(energies) != len(crystals):
        raise ValueError(f"{len(energies)} energies for {len(crystals)} crystals")
    refs = elemental_references(model_tag())
    out = np.full(len(crystals), np.nan)
    for i, (c, e) in enumerate(zip(crystals, energies)):
        if e is None or not c.n_atoms or not np.isfinite(e):
            continue
        out[i] = float(e) - float(np.mean([refs.get(s, 0.0) for s in c.symbols]))
    return out


def screen(crystals: Sequence[Crystal], max_formation_ev: float, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Which crystals pass the screen ``[N]`` (bool), and their formation energies ``[N]`` (eV/atom).

    A crystal passes when its static CHGNet formation energy (:func:`formation_energies`) is at
    most ``max_formation_ev``; one CHGNet cannot evaluate does not pass.
    """
    if not np.isfinite(max_formation_ev):
        raise ValueError(f"the screening threshold must be a finite energy in eV/atom, got {max_formation_ev}")
    e_form = formation_energies(crystals, device=device)
    keep = e_form <= max_formation_ev  # NaN (not evaluated) compares False
    return keep, e_form


__all__ = ["formation_energies", "screen"]
