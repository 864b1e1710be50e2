"""Element colours of one picture: Jmol's (as VESTA and ASE use them), kept apart from each other.

Jmol's colours make some elements of one crystal hard to tell apart (Cl, Mg and Ni are all
green; Cu and Fe both orange-brown). :func:`element_colors` keeps each element's Jmol colour
where it can and moves the others, deterministically, so that no two elements of one picture
lie closer than :data:`MIN_DELTA_E` in CIE Lab by the CIEDE2000 colour difference (D65 white).
CIEDE2000 rather than the plain Lab distance (CIE76) because the latter overrates differences
of saturated colours: Jmol's Cl and Mg greens are 19.7 apart by CIE76 but 7.4 by CIEDE2000,
which matches how alike they look. A difference of about 1 is just noticeable; 15 separates,
e.g., Jmol's red O from its orange Fe (10.9 apart) with room to spare. Up to about 40 elements
fit in one picture at that distance; beyond, the farthest colour left is taken.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: The smallest CIEDE2000 colour difference between two elements of one picture.
MIN_DELTA_E = 15.0

#: sRGB levels of the candidate colours an element may move to (a 9 x 9 x 9 grid).
_LEVELS = np.linspace(0.0, 1.0, 9)

#: Moved colours stay darker than this CIE lightness (white is 100), to show on a white page.
_MAX_LIGHTNESS = 92.0


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE Lab ``[N, 3]`` (D65 white) of sRGB colours ``[N, 3]`` with channels in [0, 1]."""
    rgb = np.clip(np.asarray(rgb, dtype=float).reshape(-1, 3), 0.0, 1.0)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    to_xyz = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
    )
    xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
    eps, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > eps, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour differences of Lab colours ``[..., 3]`` (broadcast against each other)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=float), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=float), -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p, h2p = np.degrees(np.arctan2(b1, a1p)) % 360, np.degrees(np.arctan2(b2, a2p)) % 360
    grey = c1p * c2p == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(grey, 0.0, dh)
    d_l, d_c = L2 - L1, c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_mean, cp_mean, h_sum = (L1 + L2) / 2, (c1p + c2p) / 2, h1p + h2p
    h_mean = np.where(np.abs(h1p - h2p) > 180, np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2), h_sum / 2)
    h_mean = np.where(grey, h_sum, h_mean)
    t = (
        1
        - 0.17 * np.cos(np.radians(h_mean - 30))
        + 0.24 * np.cos(np.radians(2 * h_mean))
        + 0.32 * np.cos(np.radians(3 * h_mean + 6))
        - 0.20 * np.cos(np.radians(4 * h_mean - 63))
    )
    rotation = 30 * np.exp(-(((h_mean - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / np.sqrt(20 + (l_mean - 50) ** 2)
    s_c, s_h = 1 + 0.045 * cp_mean, 1 + 0.015 * cp_mean * t
    r_t = -np.sin(np.radians(2 * rotation)) * r_c
    return np.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h))


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour differences ``[N, M]`` between sRGB colours ``a [N, 3]`` and ``b [M, 3]``."""
    return ciede2000(srgb_to_lab(a)[:, None, :], srgb_to_lab(b)[None, :, :])


def jmol_color(z: int) -> tuple[float, float, float]:
    """Jmol's colour of element ``z`` (sRGB in [0, 1]; ASE's table, which VESTA's closely follows)."""
    from ase.data.colors import jmol_colors

    return tuple(float(v) for v in jmol_colors[int(z)])


def _candidates() -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.meshgrid(_LEVELS, _LEVELS, _LEVELS, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = srgb_to_lab(grid)
    keep = lab[:, 0] <= _MAX_LIGHTNESS  # not lost against the white page
    return grid[keep], lab[keep]


def element_colors(
    numbers: Iterable[int], min_delta_e: float = MIN_DELTA_E, base: dict[int, tuple[float, float, float]] | None = None
) -> dict[int, tuple[float, float, float]]:
    """Colours of the elements ``numbers`` of one picture, no two closer than ``min_delta_e``.

    Elements are placed in order of atomic number: each keeps its Jmol colour unless that lies
    within ``min_delta_e`` of an element already placed; then it takes the colour of a fixed
    sRGB grid nearest (in Lab) to its Jmol colour among those far enough from every element
    placed. The same set of elements always gives the same colours.

    Args:
        numbers: atomic numbers (repeats and any order).
        min_delta_e: the smallest CIEDE2000 difference between two of the colours.
        base: colours already given (kept as they are; the new elements are placed after them).

    Returns:
        ``{Z: (r, g, b)}`` with channels in [0, 1].
    """
    zs = sorted({int(z) for z in numbers})
    grid, grid_lab = _candidates()
    placed: dict[int, tuple[float, float, float]] = dict(base or {})
    placed_lab = srgb_to_lab(np.array(list(placed.values()))) if placed else np.zeros((0, 3))
    for z in (z for z in zs if z not in placed):
        own = jmol_color(z)
        own_lab = srgb_to_lab(np.array(own))
        if len(placed_lab) and ciede2000(placed_lab, own_lab).min() < min_delta_e:
            spare = ciede2000(grid_lab[:, None, :], placed_lab[None, :, :]).min(axis=1)
            far = np.flatnonzero(spare >= min_delta_e)
            if len(far):  # the nearest far-enough candidate (first of equals: deterministic)
                k = far[np.argmin(ciede2000(grid_lab[far], own_lab))]
            else:  # more elements than the colour space holds at this distance: the most distant one
                k = int(np.argmax(spare))
            own, own_lab = tuple(float(v) for v in grid[k]), grid_lab[k : k + 1]
        placed[z] = own
        placed_lab = np.vstack([placed_lab, own_lab.reshape(1, 3)])
    return placed


def closest_pair(colors: dict[int, tuple[float, float, float]]) -> float:
    """The smallest CIEDE2000 difference between two colours of ``colors`` (inf for fewer than two)."""
    if len(colors) < 2:
        return float("inf")
    values = np.array(list(colors.values()))
    d = delta_e(values, values)
    return float(d[np.triu_indices(len(values), 1)].min())


__all__ = ["MIN_DELTA_E", "ciede2000", "closest_pair", "delta_e", "element_colors", "jmol_color", "srgb_to_lab"]
