"""Pictures: crystal projections side by side, a slice of a structure field, a latent path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nesf.data.crystal import Crystal
from nesf.io.writers import atomic_write

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


def _colors(numbers: np.ndarray) -> list:
    from ase.data.colors import jmol_colors

    return [jmol_colors[int(z)] for z in numbers]


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


def species_handles(numbers: Sequence[int] | np.ndarray) -> list:
    """Legend handles (coloured dots, element symbols) for the species ``numbers``."""
    from ase.data import chemical_symbols
    from matplotlib.lines import Line2D

    zs = sorted({int(z) for z in numbers})
    return [
        Line2D(
            [],
            [],
            marker="o",
            ls="",
            markersize=8,
            markerfacecolor=_colors(np.array([z]))[0],
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
) -> None:
    """A species colour key under ``ax`` (outside it, so it covers nothing).

    Its top sits at ``y`` in axes units, moved down a further ``points_below`` points (a fixed
    gap, e.g. to clear the axis labels whatever the axes' height).
    """
    from matplotlib.transforms import ScaledTranslation

    handles = [*species_handles(numbers), *extra]
    if handles:
        shift = ScaledTranslation(0.0, -points_below / 72.0, ax.figure.dpi_scale_trans)
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(anchor_x, y),
            bbox_transform=ax.transAxes + shift,
            ncol=min(len(handles), 6),
            fontsize=8,
            frameon=False,
            handletextpad=0.2,
            columnspacing=0.8,
        )


def draw_projection(ax, crystal: Crystal, axes: tuple[int, int] = (0, 1), title: str = "") -> None:  # noqa: ANN001
    """Atoms of ``crystal`` projected on two Cartesian axes, with the cell outline (key: :func:`species_key_below`)."""
    i, j = axes
    lat = crystal.lattice
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]]) @ lat
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]:
        ax.plot(corners[[a, b], i], corners[[a, b], j], color="0.7", lw=0.8, zorder=1)
    if crystal.n_atoms:
        ax.scatter(crystal.cart[:, i], crystal.cart[:, j], s=160, c=_colors(crystal.numbers), edgecolors="k", zorder=3)
    ax.set_aspect("equal")
    ax.set_xlabel("xyz"[i] + " [A]")
    ax.set_ylabel("xyz"[j] + " [A]")
    ax.set_title(title, fontsize=10)


def draw_atoms_3d(ax, crystal: Crystal, title: str = "", rotation: str = "-75x,-20y,0z") -> None:  # noqa: ANN001
    """A perspective-free 3D view of the cell and its atoms (ASE's renderer); key: :func:`species_key_below`."""
    from ase.visualize.plot import plot_atoms

    atoms = crystal.to_ase()
    plot_atoms(atoms, ax, rotation=rotation, radii=0.45, show_unit_cell=2)
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)


def plot_pairs(
    pairs: Sequence[tuple[Crystal, Crystal]], path: str | Path, title: str = "input vs reconstruction"
) -> Path:
    """One row per crystal: input and reconstruction side by side (a-b and a-c projections)."""
    plt = pyplot()
    n = len(pairs)
    fig, axes = plt.subplots(n, 4, figsize=(14, 3.4 * n), squeeze=False)
    for r, (true, pred) in enumerate(pairs):
        draw_projection(axes[r, 0], true, (0, 1), f"{true.id} input ({true.formula}), x-y")
        draw_projection(axes[r, 1], pred, (0, 1), f"reconstruction ({pred.formula if pred.n_atoms else 'empty'}), x-y")
        draw_projection(axes[r, 2], true, (0, 2), "input, x-z")
        draw_projection(axes[r, 3], pred, (0, 2), "reconstruction, x-z")
        species_key_below(axes[r, 1], np.concatenate([true.numbers, pred.numbers]), anchor_x=1.1, y=-0.2)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


@torch.no_grad()
def draw_field_slice(
    ax,  # noqa: ANN001
    field,  # noqa: ANN001 - a bound field (exact or neural) of one crystal
    crystal: Crystal,
    symbols: Sequence[str],
    plane: tuple[int, float] = (2, 0.5),
    n: int = 25,
    title: str = "",
    arrow_scale: float = 1.0,
) -> None:
    """Position-field arrows on a lattice plane, coloured by the species field's arg-max.

    The plane holds fractional coordinate ``plane[1]`` along lattice axis ``plane[0]``; arrows
    are the field's displacement projected into that plane, drawn in an orthonormal frame of it,
    ``arrow_scale`` times their length (1: each arrow ends on the atom it points to).
    """
    axis, value = plane
    others = [k for k in range(3) if k != axis]
    u = np.zeros((n * n, 3))
    g1, g2 = np.meshgrid(np.linspace(0, 1, n, endpoint=False), np.linspace(0, 1, n, endpoint=False), indexing="ij")
    u[:, others[0]], u[:, others[1]], u[:, axis] = g1.ravel(), g2.ravel(), value
    lat = crystal.lattice
    pts = u @ lat
    dtype = getattr(field, "dtype", torch.float32)
    q = torch.as_tensor(pts, dtype=dtype).unsqueeze(0)
    disp = field.position(q)[0].double().numpy()
    labels = field.species_labels(q)[0].numpy()
    e1 = lat[others[0]] / np.linalg.norm(lat[others[0]])
    v = lat[others[1]] - (lat[others[1]] @ e1) * e1
    e2 = v / np.linalg.norm(v)
    x, y = pts @ e1, pts @ e2
    dx, dy = disp @ e1, disp @ e2
    from ase.data import atomic_numbers

    colors = _colors(np.array([atomic_numbers.get(symbols[k], 0) for k in labels]))
    ax.quiver(x, y, dx, dy, color=colors, angles="xy", scale_units="xy", scale=1.0 / arrow_scale, width=0.004, zorder=2)
    frac = crystal.frac % 1.0
    near = np.abs(((frac[:, axis] - value + 0.5) % 1.0) - 0.5) * np.linalg.norm(lat[axis]) < 0.6
    extra = []
    if near.any():
        from matplotlib.lines import Line2D

        c = crystal.cart[near] - (np.floor(crystal.frac[near]) @ lat)
        ax.scatter(c @ e1, c @ e2, s=140, facecolors="none", edgecolors="k", linewidths=1.5, zorder=3)
        extra.append(
            Line2D(
                [],
                [],
                marker="o",
                ls="",
                markersize=9,
                markerfacecolor="none",
                markeredgecolor="k",
                label="atom within 0.6 A",
            )
        )
    shown = [atomic_numbers.get(symbols[k], 0) for k in np.unique(labels)]
    species_key_below(ax, [z for z in shown if z > 0], extra, y=0.0, points_below=32.0)
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], dtype=float)
    cu = np.zeros((5, 3))
    cu[:, others[0]], cu[:, others[1]], cu[:, axis] = corners[:, 0], corners[:, 1], value
    cc = cu @ lat
    ax.plot(cc @ e1, cc @ e2, color="0.5", lw=0.8)
    ax.set_aspect("equal")
    ax.set_title(title or f"position field on the plane {'abc'[axis]} = {value:g}", fontsize=10)
    ax.set_xlabel(f"along {'abc'[others[0]]} [A]", labelpad=1)
    ax.set_ylabel(f"in the {'abc'[others[0]]}{'abc'[others[1]]} plane, normal to {'abc'[others[0]]} [A]")


def plot_field(field, crystal: Crystal, symbols: Sequence[str], path: str | Path, plane=(2, 0.5)) -> Path:  # noqa: ANN001
    """A picture (format by extension) of :func:`draw_field_slice`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 6))
    draw_field_slice(
        ax,
        field,
        crystal,
        symbols,
        plane,
        title=f"{crystal.id}: learned position field, {'abc'[plane[0]]} = {plane[1]:g} (arrow colour = species field)",
    )
    return save_figure(fig, path)


def plot_strip(crystals: Sequence[Crystal], path: str | Path, title: str = "") -> Path:
    """Crystals in a row (x-y projections), e.g. along a latent path."""
    plt = pyplot()
    n = len(crystals)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), squeeze=False)
    for k, c in enumerate(crystals):
        draw_projection(axes[0, k], c, (0, 1), f"{k}: {c.formula if c.n_atoms else 'empty'}")
    every = np.concatenate([c.numbers for c in crystals]) if crystals else np.zeros(0, dtype=int)
    species_key_below(axes[0, n // 2], every, anchor_x=0.5 if n % 2 else 0.0, y=-0.2)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _space_group(crystal: Crystal, symprec: float = 0.1) -> str:
    """Hermann-Mauguin symbol of ``crystal`` at ``symprec`` (A), or '?' where spglib finds none."""
    from nesf.data.domain import symmetry_dataset

    data = symmetry_dataset(crystal, symprec)
    return data.international if data is not None else "?"


def plot_grid(crystals: Sequence[Crystal], path: str | Path, columns: int = 4, title: str = "") -> Path:
    """Crystals on a grid (3D views of one cell each), titled with formula and space group (spglib, 0.1 A)."""
    plt = pyplot()
    crystals = list(crystals)
    if not crystals:
        raise ValueError("no crystals to draw")
    columns = max(1, min(columns, len(crystals)))
    rows = -(-len(crystals) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(crystals):
            ax.set_axis_off()
            continue
        c = crystals[k]
        if c.n_atoms:
            draw_atoms_3d(ax, c, f"{c.formula}  {_space_group(c)}\n{c.n_atoms} atoms, {c.volume:.0f} A^3")
        else:
            ax.set_axis_off()
            ax.set_title(f"{c.id}: no atom found", fontsize=10)
    every = np.concatenate([c.numbers for c in crystals])
    species_key_below(axes[-1, columns // 2], every, anchor_x=0.5 if columns % 2 else 0.0, y=-0.08)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
