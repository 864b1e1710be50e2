"""Classic crystals built from their space groups: a small, self-made example set.

The set covers the cells where periodic geometry is easy to get wrong: hexagonal,
rhombohedral (hexagonal setting and primitive rhombohedral cells), monoclinic, triclinic,
and long, skewed cells, from 1 to 60 atoms. Structures come from published space groups
and Wyckoff positions (rounded), plus seeded random triclinic cells.

Run ``python -m nesf.data.examples OUT.extxyz`` to write the set that ships with nesf, and
``python -m nesf.data.examples --minerals OUT.extxyz`` for the 51 named classic crystals and
minerals (:data:`MINERAL_NAMES`, conventional standard cells).
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

#: Classic minerals and textbook crystals beyond the demo (rounded experimental structures; space
#: groups in pymatgen's default setting, i.e. origin choice 1 where the International Tables give two).
_MINERALS: dict[str, tuple] = {
    "CaF2-fluorite": ("Fm-3m", (5.463, 5.463, 5.463, 90, 90, 90), ["Ca", "F"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "CeO2-cerianite": ("Fm-3m", (5.411, 5.411, 5.411, 90, 90, 90), ["Ce", "O"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "FeS2-pyrite": ("Pa-3", (5.417, 5.417, 5.417, 90, 90, 90), ["Fe", "S"], [[0, 0, 0], [0.385, 0.385, 0.385]]),
    "ZnS-sphalerite": ("F-43m", (5.41, 5.41, 5.41, 90, 90, 90), ["Zn", "S"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "ZnS-wurtzite": (
        "P6_3mc",
        (3.82, 3.82, 6.26, 90, 90, 120),
        ["Zn", "S"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.375]],
    ),
    "PbS-galena": ("Fm-3m", (5.936, 5.936, 5.936, 90, 90, 90), ["Pb", "S"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "NiO-bunsenite": ("Fm-3m", (4.177, 4.177, 4.177, 90, 90, 90), ["Ni", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "KCl-sylvite": ("Fm-3m", (6.29, 6.29, 6.29, 90, 90, 90), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "LiF-griceite": ("Fm-3m", (4.03, 4.03, 4.03, 90, 90, 90), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "AgCl-chlorargyrite": ("Fm-3m", (5.55, 5.55, 5.55, 90, 90, 90), ["Ag", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "CuCl-nantokite": ("F-43m", (5.42, 5.42, 5.42, 90, 90, 90), ["Cu", "Cl"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "Cu2O-cuprite": ("Pn-3m", (4.27, 4.27, 4.27, 90, 90, 90), ["O", "Cu"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "C-diamond": ("Fd-3m", (3.567, 3.567, 3.567, 90, 90, 90), ["C"], [[0, 0, 0]]),
    "SiC-moissanite-3C": ("F-43m", (4.36, 4.36, 4.36, 90, 90, 90), ["Si", "C"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "MgAl2O4-spinel": (
        "Fd-3m",
        (8.083, 8.083, 8.083, 90, 90, 90),
        ["Mg", "Al", "O"],
        [[0, 0, 0], [0.625, 0.625, 0.625], [0.3874, 0.3874, 0.3874]],
    ),
    "SnO2-cassiterite": ("P4_2/mnm", (4.737, 4.737, 3.186, 90, 90, 90), ["Sn", "O"], [[0, 0, 0], [0.307, 0.307, 0]]),
    "TiO2-anatase": ("I4_1/amd", (3.785, 3.785, 9.514, 90, 90, 90), ["Ti", "O"], [[0, 0, 0], [0, 0, 0.2083]]),
    "ZrSiO4-zircon": (
        "I4_1/amd",
        (6.607, 6.607, 5.982, 90, 90, 90),
        ["Zr", "Si", "O"],
        [[0, 0.5, 0.25], [0, 0, 0.5], [0, 0.8161, 0.3203]],
    ),
    "CuFeS2-chalcopyrite": (
        "I-42d",
        (5.289, 5.289, 10.423, 90, 90, 90),
        ["Cu", "Fe", "S"],
        [[0, 0, 0], [0, 0, 0.5], [0.2574, 0.25, 0.125]],
    ),
    "BaTiO3-tetragonal": (
        "P4mm",
        (3.992, 3.992, 4.036, 90, 90, 90),
        ["Ba", "Ti", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.518], [0.5, 0.5, 0.975], [0.5, 0, 0.49]],
    ),
    "Fe2O3-hematite": ("R-3c", (5.035, 5.035, 13.747, 90, 90, 120), ["Fe", "O"], [[0, 0, 0.3553], [0.3059, 0, 0.25]]),
    "Cr2O3-eskolaite": ("R-3c", (4.959, 4.959, 13.594, 90, 90, 120), ["Cr", "O"], [[0, 0, 0.3475], [0.3058, 0, 0.25]]),
    "FeTiO3-ilmenite": (
        "R-3",
        (5.088, 5.088, 14.085, 90, 90, 120),
        ["Fe", "Ti", "O"],
        [[0, 0, 0.3554], [0, 0, 0.1464], [0.317, 0.020, 0.2448]],
    ),
    "CaMg(CO3)2-dolomite": (
        "R-3",
        (4.807, 4.807, 16.003, 90, 90, 120),
        ["Ca", "Mg", "C", "O"],
        [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.2429], [0.2479, -0.0352, 0.2440]],
    ),
    "Mg(OH)2-brucite": (
        "P-3m1",
        (3.142, 3.142, 4.766, 90, 90, 120),
        ["Mg", "O", "H"],
        [[0, 0, 0], [1 / 3, 2 / 3, 0.2203], [1 / 3, 2 / 3, 0.4130]],
    ),
    "CdI2": ("P-3m1", (4.24, 4.24, 6.84, 90, 90, 120), ["Cd", "I"], [[0, 0, 0], [1 / 3, 2 / 3, 0.25]]),
    "MoS2-molybdenite": (
        "P6_3/mmc",
        (3.16, 3.16, 12.29, 90, 90, 120),
        ["Mo", "S"],
        [[1 / 3, 2 / 3, 0.25], [1 / 3, 2 / 3, 0.621]],
    ),
    "BN-hexagonal": (
        "P6_3/mmc",
        (2.504, 2.504, 6.66, 90, 90, 120),
        ["B", "N"],
        [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.25]],
    ),
    "GaN-wurtzite": (
        "P6_3mc",
        (3.189, 3.189, 5.185, 90, 90, 120),
        ["Ga", "N"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]],
    ),
    "W-bcc": ("Im-3m", (3.165, 3.165, 3.165, 90, 90, 90), ["W"], [[0, 0, 0]]),
    "Ti-hcp": ("P6_3/mmc", (2.951, 2.951, 4.686, 90, 90, 120), ["Ti"], [[1 / 3, 2 / 3, 0.25]]),
    "ReO3": ("Pm-3m", (3.75, 3.75, 3.75, 90, 90, 90), ["Re", "O"], [[0, 0, 0], [0.5, 0, 0]]),
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


#: Every named crystal: the classic set, the demo's and the minerals (conventional standard cells).
MINERAL_NAMES = tuple(dict.fromkeys((*DEMO_NAMES, *_CLASSIC, *_MINERALS)))


def _orbits(
    symbol: str, species: list[str], coords: list[list[float]], tol: float = 1e-3
) -> tuple[list[str], np.ndarray]:
    """Every atom of a crystal from its space group and asymmetric unit (fractional coordinates).

    The operations are spglib's for the group's standard setting (the first Hall setting of the
    Hermann-Mauguin symbol: origin choice 1, unique axis b, hexagonal axes for R groups, as
    pymatgen's ``SpaceGroup`` reads these symbols). pymatgen's ``Structure.from_spacegroup``
    builds the same crystal but spends ~0.8 s per group generating the operations.

    Args:
        symbol: Hermann-Mauguin symbol, e.g. ``"P6_3mc"``.
        species: element of each Wyckoff position.
        coords: ``[K, 3]`` fractional coordinates of the Wyckoff positions.
        tol: fractional distance under which two images are one atom.

    Returns:
        The element and ``[N, 3]`` fractional coordinates (in [0, 1)) of every atom of the cell.
    """
    import spglib

    hall = next((h for h in range(1, 531) if spglib.get_spacegroup_type(h).international_short == symbol), None)
    if hall is None:
        raise ValueError(f"unknown space group symbol {symbol!r}")
    ops = spglib.get_symmetry_from_database(hall)
    symbols: list[str] = []
    frac: list[np.ndarray] = []
    for element, x in zip(species, np.asarray(coords, dtype=float)):
        for image in np.mod(ops["rotations"] @ x + ops["translations"], 1.0):
            delta = [image - f for f in frac]
            if any(np.abs(d - np.round(d)).max() < tol for d in delta):
                continue
            symbols.append(element)
            frac.append(image)
    return symbols, np.mod(np.array(frac), 1.0)


def demo_crystals(names: tuple[str, ...] = DEMO_NAMES) -> list[Crystal]:
    """Well-known crystals as conventional standard cells, for the demo (its crystals: all lengths <= 6 A).

    ``names`` may be any of :data:`MINERAL_NAMES` (``demo_crystals(MINERAL_NAMES)``: the 51
    classic crystals and minerals). Lattice parameters and Wyckoff positions are the rounded
    experimental ones.
    """
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    table = {**_CLASSIC, **_DEMO_EXTRA, **_MINERALS}
    out = []
    for name in names:
        if name not in table:
            raise ValueError(f"unknown demo crystal {name!r}; choose from {', '.join(sorted(table))}")
        sg, (a, b, c, al, be, ga), species, coords = table[name]
        symbols, frac = _orbits(sg, species, coords)
        s = Structure(Lattice.from_parameters(a, b, c, al, be, ga), symbols, frac)
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
    """Write the example set (or, with ``--minerals``, the named classic crystals and minerals) to an extxyz."""
    from nesf.io.writers import write_extxyz

    argv = sys.argv[1:] if argv is None else argv
    minerals = "--minerals" in argv
    paths = [a for a in argv if a != "--minerals"]
    if len(paths) != 1 or any(a.startswith("-") for a in paths):
        print("usage: python -m nesf.data.examples [--minerals] OUT.extxyz", file=sys.stderr)
        return 2
    crystals = demo_crystals(MINERAL_NAMES) if minerals else classic_crystals()
    write_extxyz(paths[0], crystals)
    print(f"wrote {len(crystals)} crystals to {paths[0]}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
