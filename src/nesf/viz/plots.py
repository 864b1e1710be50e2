"""Pictures: crystal projections side by side, a slice of a structure field, a latent path, a grid of samples.

Every picture colours its elements with one palette (:func:`picture_colors`: Jmol's colours,
kept apart), draws atoms wrapped into their cell with periodic images on its faces, edges and
corners (:mod:`nesf.viz.cells`), and lays its panels out at fixed sizes (:func:`panel_grid`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nesf.data.crystal import Crystal
from nesf.io.writers import atomic_write
from nesf.viz.cells import VIEW_3D, DrawnSites, draw_cell
from nesf.viz.palette import element_colors

#: Field slices draw one arrow per this many Angstrom of the cell (8 to 24 per axis).
FIELD_SPACING = 0.3

_AXES = {"x": 0, "y": 1, "z": 2, "a": 0, "b": 1, "c": 2}


def parse_plane(text: str) -> tuple[int, float]:
    """``"z=0.5"`` -> (axis 2, fractional coordinate 0.5); axes x/y/z or a/b/c."""
    try:
        name, value = text.replace(" ", "").split("=")
        axis = _AXES[name.lower()]
        frac = float(value)
    except (ValueError, KeyError):
        raise ValueError(f"--plane {text!r}: expected AXIS=FRACTION, e.g. z=0.5 (axes x, y, z or a, b, c)") from None
    return axis, frac


def pyplot():  # noqa: ANN201
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: Picture formats written, by file extension.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpeg", ".jpeg": "jpeg"}


def figure_format(path: str | Path) -> str:
    """The matplotlib format of an output file, from its extension; ``ValueError`` for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"{path}: pictures are written as {', '.join(FORMATS)}; "
            f"the extension {suffix or '(none)'!r} is none of them"
        )
    return FORMATS[suffix]


def save_figure(fig, path: str | Path) -> Path:  # noqa: ANN001
    """Write ``fig`` atomically in the format its extension names (PNG, SVG, PDF, JPEG) and close it."""
    fmt = figure_format(path)
    out = atomic_write(path, lambda p: fig.savefig(p, format=fmt, dpi=120, bbox_inches="tight"))
    pyplot().close(fig)
    return out


def picture_colors(*groups: Crystal | Sequence[int] | np.ndarray) -> dict[int, tuple[float, float, float]]:
    """Colours of every element of one picture (crystals or atomic numbers), kept apart.

    Jmol's colours, moved where two would be closer than :data:`~nesf.viz.palette.MIN_DELTA_E`
    (CIEDE2000): see :func:`nesf.viz.palette.element_colors`.
    """
    numbers: list[int] = []
    for g in groups:
        numbers += [int(z) for z in (g.numbers if isinstance(g, Crystal) else g)]
    return element_colors(numbers)


def species_handles(numbers: Sequence[int] | np.ndarray, colors: dict | None = None) -> list:
    """Legend handles (coloured dots, element symbols) for the species ``numbers``, in ``colors``."""
    from ase.data import chemical_symbols
    from matplotlib.lines import Line2D

    zs = sorted({int(z) for z in numbers})
    colors = colors if colors is not None else element_colors(zs)
    return [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            markersize=8,
            markerfacecolor=colors[z],
            markeredgecolor="k",
            label=chemical_symbols[z],
        )
        for z in zs
    ]


def species_key_below(
    ax,  # noqa: ANN001
    numbers: Sequence[int] | np.ndarray,
    extra: Sequence = (),
    anchor_x: float = 0.5,
    y: float = -0.02,
    points_below: float = 0.0,
    colors: dict | None = None,
    ncol: int = 5,
) -> None:
    """A species colour key under ``ax`` (outside it, so it covers nothing).

    Its top sits at ``y`` in axes units, moved down a further ``points_below`` points (a fixed
    gap, e.g. to clear the axis labels whatever the axes' height). ``colors``: the picture's
    (:func:`picture_colors`; default: those of ``numbers`` alone).
    """
    from matplotlib.transforms import ScaledTranslation

    handles = [*species_handles(numbers, colors), *extra]
    if handles:
        shift = ScaledTranslation(0.0, -points_below / 72.0, ax.figure.dpi_scale_trans)
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(anchor_x, y),
            bbox_transform=ax.transAxes + shift,
            ncol=min(len(handles), ncol),
            fontsize=8,
            frameon=False,
            handletextpad=0.2,
            columnspacing=0.8,
        )


def add_panel(fig, left: float, top: float, width: float, height: float):  # noqa: ANN001, ANN201
    """An axes at a fixed place of ``fig``, in inches from its left and top edges (equal panels stay equal)."""
    w, h = fig.get_size_inches()
    return fig.add_axes((left / w, 1.0 - (top + height) / h, width / w, height / h))


def panel_grid(rows: int, columns: int, panel: float, above: float, below: float, side: float, header: float = 0.0):  # noqa: ANN201
    """A figure of ``rows`` x ``columns`` equal square panels of ``panel`` inches.

    Each panel has ``above`` inches for its title, ``below`` for its labels and key, ``side``
    to its left (axis labels, gaps); ``header`` inches on top for the figure's title.
    Returns the figure and the axes ``[rows, columns]``.
    """
    plt = pyplot()
    cell_w, cell_h = side + panel + 0.15, above + panel + below
    fig = plt.figure(figsize=(columns * cell_w, header + rows * cell_h))
    axes = np.empty((rows, columns), dtype=object)
    for r in range(rows):
        for c in range(columns):
            axes[r, c] = add_panel(fig, c * cell_w + side, header + r * cell_h + above, panel, panel)
    return fig, axes


def draw_projection(
    ax,  # noqa: ANN001
    crystal: Crystal,
    axes: tuple[int, int] = (0, 1),
    title: str = "",
    colors: dict | None = None,
) -> DrawnSites:
    """Atoms of ``crystal`` projected on two Cartesian axes, with the cell outline (key: :func:`species_key_below`).

    Atoms are wrapped into the cell and drawn with their periodic images (:func:`nesf.viz.cells.display_sites`);
    returns the sites drawn.
    """
    i, j = axes
    sites = draw_cell(ax, crystal, colors if colors is not None else picture_colors(crystal), view=(i, j))
    ax.set_xlabel("xyz"[i] + " [A]")
    ax.set_ylabel("xyz"[j] + " [A]", labelpad=1)
    ax.set_title(title, fontsize=10)
    return sites


def draw_atoms_3d(
    ax,  # noqa: ANN001
    crystal: Crystal,
    title: str = "",
    rotation: str = VIEW_3D,
    colors: dict | None = None,
) -> DrawnSites:
    """A perspective-free 3D view of the cell and its atoms (with periodic images); returns the sites drawn."""
    sites = draw_cell(ax, crystal, colors if colors is not None else picture_colors(crystal), view=rotation)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    return sites


def plot_pairs(
    pairs: Sequence[tuple[Crystal, Crystal]], path: str | Path, title: str = "input vs reconstruction"
) -> Path:
    """One row per crystal: input and reconstruction side by side (x-y and x-z projections)."""
    n = len(pairs)
    fig, axes = panel_grid(n, 4, panel=2.8, above=0.45, below=1.0, side=0.7, header=0.5)
    colors = picture_colors(*[c for pair in pairs for c in pair])
    for r, (true, pred) in enumerate(pairs):
        label = pred.formula if pred.n_atoms else "empty"
        draw_projection(axes[r, 0], true, (0, 1), f"{true.id} input ({true.formula}), x-y", colors)
        draw_projection(axes[r, 1], pred, (0, 1), f"reconstruction ({label}), x-y", colors)
        draw_projection(axes[r, 2], true, (0, 2), "input, x-z", colors)
        draw_projection(axes[r, 3], pred, (0, 2), "reconstruction, x-z", colors)
        every = np.concatenate([true.numbers, pred.numbers])
        species_key_below(axes[r, 1], every, anchor_x=1.12, y=0.0, points_below=26.0, colors=colors, ncol=8)
    fig.suptitle(title, y=1.0 - 0.2 / fig.get_figheight())
    return save_figure(fig, path)


def _field_counts(lattice: np.ndarray, others: Sequence[int], spacing: float = FIELD_SPACING) -> tuple[int, int]:
    """Arrows along the plane's two axes: one per ``spacing`` Angstrom, 8 to 24 each."""
    lengths = np.linalg.norm(lattice[list(others)], axis=1)
    counts = np.clip(np.round(lengths / spacing), 8, 24).astype(int)
    return int(counts[0]), int(counts[1])


@torch.no_grad()
def draw_field_slice(
    ax,  # noqa: ANN001
    field,  # noqa: ANN001 - a bound field (exact or neural) of one crystal
    crystal: Crystal,
    symbols: Sequence[str],
    plane: tuple[int, float] = (2, 0.5),
    n: int | None = None,
    title: str = "",
    arrow_scale: float = 1.0,
    colors: dict | None = None,
):  # noqa: ANN201
    """Position-field arrows on a lattice plane over a colour map of their length; arrows coloured by species.

    The plane holds fractional coordinate ``plane[1]`` along lattice axis ``plane[0]``; arrows
    are the field's displacement projected into that plane, drawn in an orthonormal frame of it,
    ``arrow_scale`` times their length (1: each arrow ends on the atom it points to), ``n`` per
    axis (None: one per :data:`FIELD_SPACING` Angstrom of the cell, 8 to 24). Beneath them, the
    field's full displacement length (the distance to the nearest atom, as the field says) on a
    viridis colour map with its colour bar; atoms within 0.6 A of the plane are white-ringed
    discs. Arrow colours: the species field's arg-max, in ``colors`` (the picture's; default:
    those of the species shown). Returns the colour map's mesh.
    """
    from ase.data import atomic_numbers
    from matplotlib.lines import Line2D

    axis, value = plane
    others = [k for k in range(3) if k != axis]
    n1, n2 = (n, n) if n else _field_counts(crystal.lattice, others)
    g1, g2 = np.meshgrid(np.linspace(0, 1, n1 + 1), np.linspace(0, 1, n2 + 1), indexing="ij")
    u = np.zeros((g1.size, 3))
    u[:, others[0]], u[:, others[1]], u[:, axis] = g1.ravel(), g2.ravel(), value
    lat = crystal.lattice
    pts = u @ lat
    q = torch.as_tensor(pts, dtype=getattr(field, "dtype", torch.float32)).unsqueeze(0)
    disp = field.position(q)[0].double().numpy()
    labels = field.species_labels(q)[0].numpy()
    e1 = lat[others[0]] / np.linalg.norm(lat[others[0]])
    v = lat[others[1]] - (lat[others[1]] @ e1) * e1
    e2 = v / np.linalg.norm(v)
    x, y = pts @ e1, pts @ e2
    shape = (n1 + 1, n2 + 1)
    mesh = ax.pcolormesh(
        x.reshape(shape),
        y.reshape(shape),
        np.linalg.norm(disp, axis=1).reshape(shape),
        cmap="viridis",
        shading="gouraud",
    )
    inner = (g1 < 1.0).ravel() & (g2 < 1.0).ravel()  # arrows once per cell point (not again on the far edges)
    zs = np.array([atomic_numbers.get(symbols[k], 0) for k in labels])
    shown = sorted({int(z) for z in zs[inner] if z > 0})
    colors = element_colors(shown, base=colors)  # the picture's, and any species it lacks
    arrow_colors = [colors.get(int(z), (0.5, 0.5, 0.5)) for z in zs[inner]]
    ax.quiver(
        x[inner], y[inner], (disp @ e1)[inner], (disp @ e2)[inner], color=arrow_colors, angles="xy", scale_units="xy",
        scale=1.0 / arrow_scale, width=0.006, edgecolor="k", linewidth=0.3, zorder=2,
    )  # fmt: skip
    frac = crystal.frac % 1.0
    near = np.abs(((frac[:, axis] - value + 0.5) % 1.0) - 0.5) * np.linalg.norm(lat[axis]) < 0.6
    extra = []
    if near.any():
        c = crystal.cart[near] - (np.floor(crystal.frac[near]) @ lat)
        atom_colors = [colors.get(int(z), (0.5, 0.5, 0.5)) for z in crystal.numbers[near]]
        ax.scatter(c @ e1, c @ e2, s=90, c=atom_colors, edgecolors="w", linewidths=1.8, zorder=3)
        ring = {"markerfacecolor": "0.6", "markeredgecolor": "k", "markersize": 8}
        extra.append(Line2D([], [], marker="o", ls="", label="atom within 0.6 A", **ring))
    species_key_below(ax, shown, extra, y=0.0, points_below=30.0, colors=colors)
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=float)
    cu = np.zeros((5, 3))
    cu[:, others[0]], cu[:, others[1]], cu[:, axis] = corners[:, 0], corners[:, 1], value
    cc = cu @ lat
    ax.plot(cc @ e1, cc @ e2, color="0.2", lw=0.8)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title or f"position field on the plane {'abc'[axis]} = {value:g}", fontsize=10)
    ax.set_xlabel(f"along {'abc'[others[0]]} [A]", labelpad=1)
    ax.set_ylabel(f"in the {'abc'[others[0]]}{'abc'[others[1]]} plane, normal to {'abc'[others[0]]} [A]")
    bar = ax.figure.colorbar(mesh, cax=ax.inset_axes((1.03, 0.0, 0.04, 1.0)))
    bar.set_label("distance to the nearest atom [A]", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return mesh


def plot_field(field, crystal: Crystal, symbols: Sequence[str], path: str | Path, plane=(2, 0.5)) -> Path:  # noqa: ANN001
    """A picture (format by extension) of :func:`draw_field_slice`."""
    plt = pyplot()
    fig = plt.figure(figsize=(7.0, 6.6))
    ax = add_panel(fig, 0.9, 0.5, 5.0, 5.0)
    draw_field_slice(
        ax,
        field,
        crystal,
        symbols,
        plane,
        title=f"{crystal.id}: learned position field, {'abc'[plane[0]]} = {plane[1]:g}\n(arrow colour = species field)",
    )
    return save_figure(fig, path)


def plot_strip(crystals: Sequence[Crystal], path: str | Path, title: str = "") -> Path:
    """Crystals in a row (x-y projections), e.g. along a latent path; a species key under each."""
    n = len(crystals)
    fig, axes = panel_grid(1, n, panel=2.6, above=0.35, below=1.0, side=0.65, header=0.45 if title else 0.0)
    colors = picture_colors(*crystals)
    for k, c in enumerate(crystals):
        draw_projection(axes[0, k], c, (0, 1), f"{k}: {c.formula if c.n_atoms else 'empty'}", colors)
        species_key_below(axes[0, k], c.numbers, y=0.0, points_below=26.0, colors=colors, ncol=4)
    if title:
        fig.suptitle(title, y=1.0 - 0.15 / fig.get_figheight())
    return save_figure(fig, path)


def _space_group(crystal: Crystal, symprec: float = 0.1) -> str:
    """Hermann-Mauguin symbol of ``crystal`` at ``symprec`` (A), or '?' where spglib finds none."""
    from nesf.data.domain import symmetry_dataset

    data = symmetry_dataset(crystal, symprec)
    return data.international if data is not None else "?"


def plot_grid(crystals: Sequence[Crystal], path: str | Path, columns: int = 4, title: str = "") -> Path:
    """Crystals on a grid of equal panels (3D views of one cell each), titled with formula and space group.

    Space groups by spglib at 0.1 A; each panel has its own species key.
    """
    crystals = list(crystals)
    if not crystals:
        raise ValueError("no crystals to draw")
    columns = max(1, min(columns, len(crystals)))
    rows = -(-len(crystals) // columns)
    fig, axes = panel_grid(rows, columns, panel=2.8, above=0.5, below=0.45, side=0.15, header=0.45 if title else 0.0)
    colors = picture_colors(*crystals)
    for k, ax in enumerate(axes.flat):
        if k >= len(crystals):
            ax.set_axis_off()
            continue
        c = crystals[k]
        if c.n_atoms:
            draw_atoms_3d(
                ax, c, f"{c.formula}  {_space_group(c)}\n{c.n_atoms} atoms, {c.volume:.0f} A^3", colors=colors
            )
            species_key_below(ax, c.numbers, y=0.0, colors=colors, ncol=4)
        else:
            ax.set_axis_off()
            ax.set_title(f"{c.id}: no atom found", fontsize=10)
    if title:
        fig.suptitle(title, y=1.0 - 0.15 / fig.get_figheight())
    return save_figure(fig, path)
