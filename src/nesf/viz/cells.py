"""One crystal's cell as a crystallographer draws it.

Atoms wrapped into the cell, periodic images on its faces, edges and corners, the cell's
edges, seen along a fixed direction.
:func:`display_sites` says what is drawn (and is what tests check); :func:`draw_cell` draws it
on a matplotlib axes with atoms as discs of a fixed share of their covalent radii, nearer atoms
over farther ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nesf.data.crystal import Crystal

#: Fractional coordinates this close to 1 (or to 0) are drawn at 0: a decoded atom at 0.997
#: is the atom at 0, not one at the opposite corner.
WRAP_TOL = 1e-3

#: Atoms this close (Angstrom) to a face of the cell are drawn on the opposite face too.
FACE_DISTANCE = 0.2

#: Atoms are discs of this share of their covalent radius (ASE's ``plot_atoms`` default look).
RADIUS_SCALE = 0.45

#: The 12 edges of a cell, as pairs of corner indices of :data:`_CORNERS`.
_CORNERS = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7))

#: The rotation (ASE's notation) of the 3D views: c up, a towards the viewer and to the right.
VIEW_3D = "-75x,-20y,0z"


@dataclass(frozen=True)
class DrawnSites:
    """The atoms a picture of one cell shows.

    Attributes:
        frac: fractional coordinates ``[M, 3]``: in [0, 1) for the atoms, a little outside for
            images near a face (exactly 1 for the image of an atom at 0).
        cart: Cartesian positions ``[M, 3]``, Angstrom.
        numbers: atomic numbers ``[M]``.
        image: ``[M]`` True for a periodic image (a copy of an atom on a face, edge or corner).
        source: ``[M]`` index of the crystal's atom each site shows.
    """

    frac: np.ndarray
    cart: np.ndarray
    numbers: np.ndarray
    image: np.ndarray
    source: np.ndarray


def display_sites(
    crystal: Crystal, images: bool = True, tol: float = WRAP_TOL, face_distance: float = FACE_DISTANCE
) -> DrawnSites:
    """The sites a picture of ``crystal``'s cell draws.

    Every atom is wrapped into the cell, with a fractional coordinate within ``tol`` of 1 or of 0
    drawn at exactly 0. With ``images``, an atom within ``face_distance`` Angstrom of a face of
    the cell is drawn on the opposite face too (at its coordinate plus or minus 1 along that
    axis; every combination: 2 sites for an atom on a face, 4 on an edge, 8 on a corner), as
    textbooks draw a cell and as a decoded atom a few hundredths of an Angstrom off its site
    needs to be drawn to look like its input.
    """
    lattice = np.asarray(crystal.lattice, dtype=float)
    frac = np.asarray(crystal.frac, dtype=float) % 1.0
    frac = np.where((frac > 1.0 - tol) | (frac < tol), 0.0, frac)
    n = len(frac)
    sites, source = [frac], [np.arange(n)]
    is_image = [np.zeros(n, dtype=bool)]
    if images and n:
        spacing = 1.0 / np.linalg.norm(np.linalg.inv(lattice), axis=0)  # distances between opposite faces, A
        near = np.minimum(face_distance / spacing, 0.5)  # the same, in fractions of each axis
        shift = np.where(frac < near, 1.0, np.where(frac > 1.0 - near, -1.0, 0.0))  # towards the opposite face
        for mask in _CORNERS[1:].astype(bool):  # the 7 non-empty sets of axes to move along
            keep = np.flatnonzero((shift[:, mask] != 0).all(axis=1))
            if len(keep):
                sites.append(frac[keep] + shift[keep] * mask)
                source.append(keep)
                is_image.append(np.ones(len(keep), dtype=bool))
    all_frac = np.concatenate(sites)
    src = np.concatenate(source)
    return DrawnSites(
        frac=all_frac,
        cart=all_frac @ lattice,
        numbers=np.asarray(crystal.numbers, dtype=int)[src],
        image=np.concatenate(is_image),
        source=src,
    )


def projection(view: tuple[int, int] | str) -> np.ndarray:
    """The ``[3, 3]`` matrix taking Cartesian positions to (screen x, screen y, depth towards the viewer).

    ``view`` is either two Cartesian axes (``(0, 1)``: the x-y projection, seen from +z) or a
    rotation in ASE's notation (e.g. :data:`VIEW_3D`).
    """
    if isinstance(view, str):
        from ase.utils import rotate

        return np.asarray(rotate(view), dtype=float)
    i, j = view
    k = 3 - i - j
    m = np.zeros((3, 3))
    m[i, 0], m[j, 1] = 1.0, 1.0
    m[k, 2] = 1.0 if (i, j) in ((0, 1), (1, 2), (2, 0)) else -1.0  # right-handed: depth towards the viewer
    return m


def draw_cell(
    ax,  # noqa: ANN001
    crystal: Crystal,
    colors: dict[int, tuple[float, float, float]],
    view: tuple[int, int] | str = VIEW_3D,
    images: bool = True,
) -> DrawnSites:
    """Draw ``crystal``'s cell edges and atoms (:func:`display_sites`) on ``ax``; returns the sites drawn.

    Args:
        ax: a matplotlib axes.
        crystal: the crystal.
        colors: ``{Z: (r, g, b)}`` of every element (:func:`nesf.viz.palette.element_colors`).
        view: Cartesian axes of a projection, or an ASE rotation of a 3D view.
        images: also draw the periodic images on the cell's faces, edges and corners.
    """
    from ase.data import covalent_radii
    from matplotlib.patches import Circle

    m = projection(view)
    corners = _CORNERS @ np.asarray(crystal.lattice, dtype=float) @ m
    for a, b in _EDGES:
        ax.plot(corners[[a, b], 0], corners[[a, b], 1], color="0.45", lw=0.8, zorder=1)
    sites = display_sites(crystal, images=images)
    screen = sites.cart @ m
    radii = np.maximum(RADIUS_SCALE * covalent_radii[sites.numbers], 0.25)
    for k in np.argsort(screen[:, 2], kind="stable"):  # far to near: nearer atoms cover farther ones
        disc = Circle(
            (screen[k, 0], screen[k, 1]),
            radii[k],
            facecolor=colors[int(sites.numbers[k])],
            edgecolor="k",
            linewidth=0.6,
            zorder=2,
        )
        ax.add_patch(disc)
    pad = float(radii.max()) if len(radii) else 0.0
    points = np.vstack([corners[:, :2], screen[:, :2]]) if len(screen) else corners[:, :2]
    lo, hi = points.min(axis=0) - pad - 0.3, points.max(axis=0) + pad + 0.3
    _fill_box(ax, lo, hi)
    return sites


def _fill_box(ax, lo: np.ndarray, hi: np.ndarray) -> None:  # noqa: ANN001
    """Limits holding ``[lo, hi]`` at equal scales that fill ``ax``'s box (the panel keeps its size)."""
    box = ax.get_position()
    width, height = ax.figure.get_size_inches()
    ratio = (box.height * height) / max(box.width * width, 1e-9)  # the box's height over its width
    centre, span = (lo + hi) / 2, hi - lo
    span = np.maximum(span, [span[1] / ratio, span[0] * ratio])
    ax.set_xlim(centre[0] - span[0] / 2, centre[0] + span[0] / 2)
    ax.set_ylim(centre[1] - span[1] / 2, centre[1] + span[1] / 2)
    ax.set_aspect("equal", adjustable="box")


__all__ = ["FACE_DISTANCE", "VIEW_3D", "WRAP_TOL", "DrawnSites", "display_sites", "draw_cell", "projection"]
