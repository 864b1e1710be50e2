"""Classic crystals built from their space groups: a small, self-made example set.

The set covers the cells where periodic geometry is easy to get wrong: hexagonal,
rhombohedral (hexagonal setting and primitive rhombohedral cells), monoclinic, triclinic,
and long, skewed cells, from 1 to 60 atoms. Structures come from published space groups
and Wyckoff positions (rounded), plus seeded random triclinic cells.

Run ``python -m nesf.data.examples OUT.extxyz`` to write the set that ships with nesf.
"""

from __future__ import annotations

import sys

import numpy as np

from nesf.data.crystal import Crystal

# name: (space group, lattice parameters a, b, c [A], alpha, beta, gamma [deg], species, Wyckoff coords)
_CLASSIC: dict[str, tuple] = {
    "Mg-hcp": ("P6_3/mmc", (3.21, 3.21, 5.21, 90, 90, 120), ["Mg"], [[1 / 3, 2 / 3, 0.25]]),
    "ZnO-wurtzite": (
        "P6_3mc",
        (3.25, 3.25, 5.21, 90, 90, 120),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.382]],
    ),
    "C-graphite": ("P6_3/mmc", (2.46, 2.46, 6.71, 90, 90, 120), ["C", "C"], [[0, 0, 0.25], [1 / 3, 2 / 3, 0.25]]),
    "NiAs": ("P6_3/mmc", (3.62, 3.62, 5.03, 90, 90, 120), ["Ni", "As"], [[0, 0, 0], [1 / 3, 2 / 3, 0.25]]),
    "SiO2-alpha-quartz": (
        "P3_221",
        (4.913, 4.913, 5.405, 90, 90, 120),
        ["Si", "O"],
        [[0.4697, 0.0, 2 / 3], [0.4135, 0.2669, 0.7858]],
    ),
    "Al2O3-corundum": ("R-3c", (4.759, 4.759, 12.99, 90, 90, 120), ["Al", "O"], [[0, 0, 0.352], [0.306, 0, 0.25]]),
    "CaCO3-calcite": (
        "R-3c",
        (4.99, 4.99, 17.06, 90, 90, 120),
        ["Ca", "C", "O"],
        [[0, 0, 0], [0, 0, 0.25], [0.257, 0, 0.25]],
    ),
    "Bi-A7": ("R-3m", (4.546, 4.546, 11.86, 90, 90, 120), ["Bi"], [[0, 0, 0.2339]]),
    "ZrO2-baddeleyite": (
        "P2_1/c",
        (5.15, 5.21, 5.31, 90, 99.2, 90),
        ["Zr", "O", "O"],
        [[0.2754, 0.0395, 0.2083], [0.0703, 0.3317, 0.3447], [0.4423, 0.7569, 0.4792]],
    ),
    "Ga2O3-beta": (
        "C2/m",
        (12.23, 3.04, 5.80, 90, 103.7, 90),
        ["Ga", "Ga", "O", "O", "O"],
        [[0.0904, 0, 0.7948], [0.3414, 0, 0.6857], [0.1674, 0, 0.1011], [0.4957, 0, 0.2553], [0.8279, 0, 0.4365]],
    ),
    "Cu-fcc": ("Fm-3m", (3.615, 3.615, 3.615, 90, 90, 90), ["Cu"], [[0, 0, 0]]),
    "NaCl-rocksalt": ("Fm-3m", (5.64, 5.64, 5.64, 90, 90, 90), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "Si-diamond": ("Fd-3m", (5.431, 5.431, 5.431, 90, 90, 90), ["Si"], [[0, 0, 0]]),
}

#: Of these, the primitive (rhombohedral, 60-degree or skewed) cell is used as well.
_ALSO_PRIMITIVE = ("Al2O3-corundum", "CaCO3-calcite", "Bi-A7", "Cu-fcc", "NaCl-rocksalt", "Si-diamond", "Ga2O3-beta")

#: Supercells that make larger hexagonal / rhombohedral cells (up to 60 atoms).
_SUPERCELLS = {"ZnO-wurtzite": (2, 2, 2), "Al2O3-corundum": (1, 1, 2), "SiO2-alpha-quartz": (2, 1, 2)}


def classic_crystals(n_random: int = 6, seed: int = 0) -> list[Crystal]:
    """Classic crystals in non-orthogonal cells, plus seeded random triclinic and skewed cells.

    Args:
        n_random: number of random triclinic cells added (half of them long and skewed).
        seed: seed of the random cells.

    Returns:
        Crystals with ids naming the structure and the cell (``conventional``, ``primitive``,
        ``supercell``, ``triclinic-k``, ``skewed-k``).
    """
    from pymatgen.core import Lattice, Structure

    out: list[Crystal] = []
    for name, (sg, (a, b, c, al, be, ga), species, coords) in _CLASSIC.items():
        lat = Lattice.from_parameters(a, b, c, al, be, ga)
        s = Structure.from_spacegroup(sg, lat, species, coords, tol=1e-3)
        if name not in ("Cu-fcc", "NaCl-rocksalt", "Si-diamond"):  # cubic ones only as primitive cells
            out.append(Crystal.from_pymatgen(s, id=f"{name}-conventional"))
        if name in _ALSO_PRIMITIVE:
            out.append(Crystal.from_pymatgen(s.get_primitive_structure(), id=f"{name}-primitive"))
        if name in _SUPERCELLS:
            out.append(Crystal.from_pymatgen(s * _SUPERCELLS[name], id=f"{name}-supercell"))
    rng = np.random.default_rng(seed)
    for k in range(n_random):
        skewed = k % 2 == 1
        out.append(_random_triclinic(rng, skewed=skewed, id=f"{'skewed' if skewed else 'triclinic'}-{k}"))
    return out


#: Further well-known crystals for the demo: space group, lattice parameters, species, Wyckoff coords.
_DEMO_EXTRA: dict[str, tuple] = {
    "SrTiO3-perovskite": (
        "Pm-3m",
        (3.905, 3.905, 3.905, 90, 90, 90),
        ["Sr", "Ti", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]],
    ),
    "CsCl": ("Pm-3m", (4.12, 4.12, 4.12, 90, 90, 90), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "TiO2-rutile": ("P4_2/mnm", (4.594, 4.594, 2.959, 90, 90, 90), ["Ti", "O"], [[0, 0, 0], [0.3049, 0.3049, 0]]),
    "Fe-bcc": ("Im-3m", (2.866, 2.866, 2.866, 90, 90, 90), ["Fe"], [[0, 0, 0]]),
    "MgO-rocksalt": ("Fm-3m", (4.212, 4.212, 4.212, 90, 90, 90), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "GaAs-zincblende": ("F-43m", (5.653, 5.653, 5.653, 90, 90, 90), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
}

#: The demo's crystals, in the order they are shown.
DEMO_NAMES = (
    "NaCl-rocksalt",
    "SrTiO3-perovskite",
    "Si-diamond",
    "ZnO-wurtzite",
    "TiO2-rutile",
    "CsCl",
    "Cu-fcc",
    "MgO-rocksalt",
    "GaAs-zincblende",
    "Fe-bcc",
    "NiAs",
    "Mg-hcp",
)


def demo_crystals(names: tuple[str, ...] = DEMO_NAMES) -> list[Crystal]:
    """Well-known crystals as conventional standard cells (all lengths <= 6 A), for the demo.

    Lattice parameters and Wyckoff positions are the rounded experimental ones.
    """
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    table = {**_CLASSIC, **_DEMO_EXTRA}
    out = []
    for name in names:
        if name not in table:
            raise ValueError(f"unknown demo crystal {name!r}; choose from {', '.join(sorted(table))}")
        sg, (a, b, c, al, be, ga), species, coords = table[name]
        s = Structure.from_spacegroup(sg, Lattice.from_parameters(a, b, c, al, be, ga), species, coords, tol=1e-3)
        s = SpacegroupAnalyzer(s, symprec=1e-3).get_conventional_standard_structure()
        out.append(Crystal.from_pymatgen(s, id=name))
    return out


def _random_triclinic(rng: np.random.Generator, skewed: bool, id: str) -> Crystal:
    """A random P1 crystal with atoms at least 1.6 A apart (periodic images included)."""
    from pymatgen.core import Lattice

    while True:
        if skewed:
            a, b, c = rng.uniform(3.0, 4.5), rng.uniform(4.0, 6.0), rng.uniform(14.0, 22.0)
            al, be, ga = rng.uniform(55, 70), rng.uniform(110, 125), rng.uniform(60, 75)
        else:
            a, b, c = rng.uniform(4.5, 7.0, size=3)
            al, be, ga = rng.uniform(70, 110, size=3)
        try:
            lat = Lattice.from_parameters(a, b, c, al, be, ga)
        except ValueError:
            continue
        if lat.volume > 10:
            break
    n_target = int(rng.integers(6, 30 if not skewed else 40))
    elements = np.array([8, 12, 14, 22, 26, 56])
    frac: list[np.ndarray] = []
    tries = 0
    while len(frac) < n_target and tries < 20000:
        tries += 1
        f = rng.random(3)
        if frac:
            d = lat.get_all_distances(np.array(frac), f[None, :])
            if d.min() < 1.6:
                continue
        frac.append(f)
    frac_arr = np.array(frac)
    numbers = rng.choice(elements, size=len(frac_arr))
    return Crystal(lat.matrix, frac_arr @ lat.matrix, numbers, id=id)


def main(argv: list[str] | None = None) -> int:
    """Write the example set to the given extxyz path."""
    from nesf.io.writers import write_extxyz

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m nesf.data.examples OUT.extxyz", file=sys.stderr)
        return 2
    crystals = classic_crystals()
    write_extxyz(argv[0], crystals)
    print(f"wrote {len(crystals)} crystals to {argv[0]}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
