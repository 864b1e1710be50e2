"""Pictures: element colours kept apart, atoms wrapped into their cell, periodic images, equal panels."""

from __future__ import annotations

import numpy as np
import pytest
from ase.data import atomic_numbers

from nesf.data.crystal import Crystal
from nesf.viz.cells import WRAP_TOL, display_sites, draw_cell
from nesf.viz.palette import MIN_DELTA_E, ciede2000, closest_pair, element_colors, jmol_color, srgb_to_lab
from nesf.viz.plots import draw_projection, picture_colors, plot_grid, plot_strip, pyplot


def cubic(a: float, frac: list, symbols: list[str], name: str = "x") -> Crystal:
    lattice = np.eye(3) * a
    return Crystal(lattice, np.array(frac, dtype=float) @ lattice, np.array([atomic_numbers[s] for s in symbols]), name)


def test_ciede2000_matches_published_pairs():
    # Sharma, Wu and Dalal (2005), pairs 1 and 7 of their table
    assert ciede2000(np.array([50, 2.6772, -79.7751]), np.array([50, 0, -82.7485])) == pytest.approx(2.0425, abs=1e-4)
    assert ciede2000(np.array([50, 0, 0]), np.array([50, -1, 2])) == pytest.approx(2.3669, abs=1e-4)
    assert srgb_to_lab(np.array([1.0, 1.0, 1.0]))[0] == pytest.approx([100, 0, 0], abs=1e-3)


@pytest.mark.parametrize(
    "symbols",
    [
        ["Cl", "Mg", "Ni"],  # three Jmol greens
        ["O", "Fe", "Cu", "Mn"],
        [s for s in ("H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S")]
        + [s for s in ("Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge")],
    ],
)
def test_no_two_elements_of_a_picture_look_alike(symbols):
    zs = [atomic_numbers[s] for s in symbols]
    colors = element_colors(zs)
    assert sorted(colors) == sorted(zs)
    assert closest_pair(colors) >= MIN_DELTA_E
    assert element_colors(list(reversed(zs))) == colors  # deterministic, whatever the order given


def test_distinct_jmol_colours_are_kept():
    colors = element_colors([atomic_numbers["Na"], atomic_numbers["Cl"]])
    assert colors[11] == jmol_color(11) and colors[17] == jmol_color(17)
    moved = element_colors([12, 17])  # Jmol's Mg and Cl greens are 7.4 apart: the heavier moves
    assert moved[12] == jmol_color(12) and moved[17] != jmol_color(17)


def test_a_picture_colours_every_panel_alike():
    a, b = cubic(4.0, [[0, 0, 0]], ["Cl"]), cubic(4.0, [[0, 0, 0], [0.5, 0.5, 0.5]], ["Mg", "Ni"])
    colors = picture_colors(a, b)
    assert closest_pair(colors) >= MIN_DELTA_E and set(colors) == {12, 17, 28}


def test_atoms_near_one_are_drawn_at_zero():
    crystal = cubic(4.0, [[0.9995, 0.5, 0.25], [0.5, 0.9991, 1.0004], [0.25, 0.5, 0.997]], ["Na", "Cl", "Cl"])
    plt = pyplot()
    fig, ax = plt.subplots()
    drawn = draw_projection(ax, crystal)
    plt.close(fig)
    frac = drawn.frac
    assert not ((frac >= 1 - WRAP_TOL) & (frac < 1)).any()  # nothing drawn just short of the far face
    atoms = frac[~drawn.image]
    assert np.all((atoms >= 0) & (atoms < 1 - WRAP_TOL))
    assert atoms[0] == pytest.approx([0.0, 0.5, 0.25]) and atoms[1] == pytest.approx([0.5, 0.0, 0.0])
    assert atoms[2, 2] == pytest.approx(0.997)  # 3e-3 from 1 is a real position ...
    images = frac[drawn.image & (drawn.source == 2)]
    np.testing.assert_allclose(images, [[0.25, 0.5, -0.003]], atol=1e-9)  # ... drawn on the near face too
    np.testing.assert_allclose(drawn.cart, drawn.frac @ crystal.lattice)


def test_atoms_away_from_the_faces_have_no_images():
    crystal = cubic(4.0, [[0.1, 0.5, 0.5], [0.96, 0.5, 0.5]], ["Na", "Cl"])  # 0.4 and 0.16 A from a face
    drawn = display_sites(crystal)
    assert drawn.image.sum() == 1 and drawn.source[drawn.image].tolist() == [1]
    assert drawn.frac[drawn.image][0] == pytest.approx([-0.04, 0.5, 0.5])


def test_periodic_images_of_an_atom_at_the_origin_face_and_edge():
    crystal = cubic(4.0, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0], [0.5, 0.5, 0.5]], ["Cs", "Cl", "Cl", "Cl"])
    drawn = display_sites(crystal)
    corner = drawn.frac[drawn.source == 0]
    assert len(corner) == 8 and {tuple(f) for f in corner} == {
        (i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)
    }
    assert len(drawn.frac[drawn.source == 1]) == 2  # on a face
    assert len(drawn.frac[drawn.source == 2]) == 4  # on an edge
    assert len(drawn.frac[drawn.source == 3]) == 1  # inside
    assert drawn.image.sum() == 7 + 1 + 3
    assert np.all(drawn.numbers[drawn.source == 0] == atomic_numbers["Cs"])
    assert len(display_sites(crystal, images=False).frac) == 4


def test_drawing_returns_what_it_drew():
    crystal = cubic(5.64, [[0, 0, 0], [0.5, 0.5, 0.5]], ["Na", "Cl"])
    plt = pyplot()
    fig, ax = plt.subplots()
    drawn = draw_cell(ax, crystal, picture_colors(crystal))
    assert len(ax.patches) == len(drawn.frac) == 9
    plt.close(fig)


def test_grid_panels_have_equal_sizes(tmp_path):
    from nesf.data.examples import demo_crystals

    crystals = demo_crystals()[:6]
    captured = {}
    plt = pyplot()
    original = plt.close

    def keep(fig):  # the figure, before it is closed
        captured["fig"] = fig
        original(fig)

    plt.close = keep
    try:
        plot_grid(crystals, tmp_path / "grid.png", columns=3, title="six")
    finally:
        plt.close = original
    boxes = [ax.get_position() for ax in captured["fig"].axes if ax.get_label() != "<colorbar>"][:6]
    assert len({(round(b.width, 6), round(b.height, 6)) for b in boxes}) == 1
    assert (tmp_path / "grid.png").stat().st_size > 10_000


def test_strip_draws_every_crystal(tmp_path):
    crystals = [cubic(4.0, [[0, 0, 0]], ["Cu"], "a"), cubic(4.0, [[0.5, 0.5, 0.5]], ["Fe"], "b")]
    assert plot_strip(crystals, tmp_path / "strip.svg").exists()
