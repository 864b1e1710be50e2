"""Atoms from a density grid: peaks, sub-voxel refinement, periodic merging, species votes.

The inverse of :mod:`nesf.voxel.grid` as ICSG3D did it: every local maximum of the density above
a threshold is an atom candidate; its position is refined to sub-voxel precision, converted to
fractional coordinates of the (predicted) lattice, wrapped into the cell and merged with its
periodic duplicates from the margin of the box; its species is the majority vote of the U-Net's
voxel labels around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import product

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from nesf.data.crystal import Crystal
from nesf.data.vocab import SpeciesVocab
from nesf.voxel.grid import voxel_to_fractional

#: Offsets ``[27, 3]`` of a voxel's 3 x 3 x 3 neighbourhood.
_NEIGHBOURS = np.array(list(product((-1, 0, 1), repeat=3)), dtype=np.float64)
#: Least-squares fit of a quadratic in 3D (10 coefficients) to the 27 neighbourhood values.
_DESIGN = np.column_stack(
    [
        np.ones(27),
        _NEIGHBOURS,
        _NEIGHBOURS**2,
        _NEIGHBOURS[:, 0] * _NEIGHBOURS[:, 1],
        _NEIGHBOURS[:, 0] * _NEIGHBOURS[:, 2],
        _NEIGHBOURS[:, 1] * _NEIGHBOURS[:, 2],
    ]
)
_FIT = np.linalg.pinv(_DESIGN)  # [10, 27]
#: Periodic shifts ``[27, 3]`` used for minimum-image merging.
_SHIFTS = np.array(list(product((-1, 0, 1), repeat=3)), dtype=np.float64)


@dataclass
class ExtractionSettings:
    """How a density grid becomes atoms.

    Attributes:
        threshold: smallest density of a peak (an isolated atom's peak is 1).
        merge_tol: peaks closer than this (minimum image, Angstrom) are one atom.
        margin_voxels: peaks up to this many voxels outside the cell are kept (then wrapped into
            it and merged with their duplicates), so atoms on cell faces are not lost.
        vote_radius: species vote over the ``(2 r + 1)^3`` voxels around each peak.
        keep_one: a crystal whose density has no peak above ``threshold`` keeps its highest
            local maximum in the cell, so that every decoded crystal is a valid structure.
        batch_size: crystals decoded together.
    """

    threshold: float = 0.25
    merge_tol: float = 0.5
    margin_voxels: float = 1.0
    vote_radius: int = 1
    keep_one: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.merge_tol < 0 or self.margin_voxels < 0 or self.vote_radius < 0:
            raise ValueError("merge_tol, margin_voxels and vote_radius must not be negative")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")

    def to_dict(self) -> dict:
        """Plain dict (for JSON and checkpoints)."""
        return asdict(self)


def find_peaks(density: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of one density grid, refined to sub-voxel precision.

    A voxel is a peak if it is the maximum of its 3 x 3 x 3 neighbourhood and above
    ``threshold``; connected peak voxels (plateaus) count once, at their centre of mass. The
    position is then refined by a least-squares quadratic fit to the logarithm of the 27
    neighbourhood values (exact for a Gaussian, isotropic or not); where the fit has no maximum
    within one voxel, the density-weighted centroid of the neighbourhood is used instead.

    Args:
        density: ``[d, d, d]`` density.
        threshold: smallest peak value.

    Returns:
        Peak positions ``[n, 3]`` in continuous voxel indices and peak heights ``[n]``.
    """
    density = np.asarray(density, dtype=np.float64)
    is_max = (density == ndimage.maximum_filter(density, size=3, mode="nearest")) & (density > threshold)
    labels, n = ndimage.label(is_max, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.zeros((0, 3)), np.zeros(0)
    centres = np.asarray(ndimage.center_of_mass(is_max, labels, range(1, n + 1)), dtype=np.float64).reshape(-1, 3)
    d = np.array(density.shape)
    base = np.clip(np.rint(centres).astype(int), 1, d - 2)  # neighbourhood stays inside the grid
    heights = density[tuple(np.rint(centres).astype(int).T)]
    values = density[tuple((base[:, None, :] + _NEIGHBOURS.astype(int)[None]).transpose(2, 0, 1))]  # [n, 27]
    positive = np.all(values > 0, axis=1)
    coef = np.log(np.where(values > 0, values, 1.0)) @ _FIT.T  # [n, 10]
    grad = coef[:, 1:4]
    hess = np.empty((len(coef), 3, 3))
    hess[:, [0, 1, 2], [0, 1, 2]] = 2.0 * coef[:, 4:7]
    hess[:, 0, 1] = hess[:, 1, 0] = coef[:, 7]
    hess[:, 0, 2] = hess[:, 2, 0] = coef[:, 8]
    hess[:, 1, 2] = hess[:, 2, 1] = coef[:, 9]
    ok = positive & np.all(np.linalg.eigvalsh(hess) < 0, axis=1)
    offset = np.zeros_like(centres)
    if np.any(ok):
        offset[ok] = -np.linalg.solve(hess[ok], grad[ok][:, :, None])[:, :, 0]
    ok &= np.all(np.abs(offset) <= 1.0, axis=1)
    weights = np.clip(values, 0.0, None)
    centroid = (weights @ _NEIGHBOURS) / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    positions = np.where(ok[:, None], base + offset, base + centroid)
    edge = np.any((np.rint(centres) < 1) | (np.rint(centres) > d - 2), axis=1)  # no full neighbourhood
    positions[edge] = centres[edge]
    return positions, heights


def merge_periodic(
    frac: np.ndarray, heights: np.ndarray, lattice: np.ndarray, tol: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Merge points that are periodic duplicates or lie within ``tol`` of each other.

    Greedy, highest peak first: a peak takes every not yet taken peak within ``tol`` Angstrom
    (minimum image through the 27 neighbouring cells, found with a ``cKDTree``); the atom is at
    the height-weighted mean of the group's aligned images, wrapped into ``[0, 1)``.

    Args:
        frac: ``[n, 3]`` fractional coordinates (any cell image).
        heights: ``[n]`` peak heights (merging order and weights).
        lattice: ``[3, 3]`` cell (rows a, b, c), Angstrom.
        tol: merging distance, Angstrom.

    Returns:
        Merged fractional coordinates ``[m, 3]`` in ``[0, 1)`` and, per merged atom, the indices
        of the input points it took.
    """
    frac = np.asarray(frac, dtype=np.float64) % 1.0
    if len(frac) == 0:
        return np.zeros((0, 3)), []
    images = (frac[None, :, :] + _SHIFTS[:, None, :]).reshape(-1, 3)  # [27 n, 3]
    tree = cKDTree(images @ lattice)
    cart = frac @ lattice
    taken = np.zeros(len(frac), dtype=bool)
    out, groups = [], []
    for i in np.argsort(-heights, kind="stable"):
        if taken[i]:
            continue
        near = np.asarray(tree.query_ball_point(cart[i], r=tol), dtype=np.int64)
        members: dict[int, np.ndarray] = {}
        dist = np.linalg.norm(images[near] @ lattice - cart[i], axis=1)
        for k in near[np.argsort(dist, kind="stable")]:  # nearest image of each point first
            j = int(k % len(frac))
            if taken[j] or j in members:
                continue
            members[j] = images[k]
        if i not in members:
            members[int(i)] = frac[i]
        idx = np.array(list(members.keys()))
        taken[idx] = True
        w = heights[idx]
        pos = (w[:, None] * np.stack(list(members.values()))).sum(axis=0) / max(float(w.sum()), 1e-12)
        pos = pos % 1.0
        pos[pos >= 1.0 - 1e-12] = 0.0
        out.append(pos)
        groups.append(idx)
    return np.stack(out), groups


def vote_species(
    labels: np.ndarray, voxels: np.ndarray, radius: int, foreground: np.ndarray | None = None
) -> np.ndarray:
    """Species class (0-based vocabulary index) of atoms by majority vote of voxel labels.

    Args:
        labels: ``[d, d, d]`` voxel labels (0 = background, ``1 + class``).
        voxels: ``[m, k, 3]`` integer voxel positions of each atom's peaks (or ``[m, 3]``).
        radius: the vote covers the ``(2 r + 1)^3`` voxels around each peak; background is ignored.
        foreground: optional ``[d, d, d]`` most likely non-background label of each voxel (from
            a segmentation network); an atom whose neighbourhood is all background takes the
            majority of these instead.

    Returns:
        ``[m]`` class indices (without the background offset). Without ``foreground``, an
        all-background neighbourhood takes the label of the nearest foreground voxel of the grid
        (class 0 if the grid has none).
    """
    labels = np.asarray(labels)
    voxels = np.asarray(voxels).reshape(len(voxels), -1, 3)
    d = np.array(labels.shape)
    r = np.arange(-radius, radius + 1)
    offsets = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    out = np.zeros(len(voxels), dtype=np.int64)
    nearest = None
    for a, vox in enumerate(voxels):
        pts = np.unique(np.clip((vox[:, None, :] + offsets[None]).reshape(-1, 3), 0, d - 1), axis=0)
        lab = labels[tuple(pts.T)]
        lab = lab[lab > 0]
        if len(lab) == 0 and foreground is not None:
            lab = np.asarray(foreground)[tuple(pts.T)]
            lab = lab[lab > 0]
        if len(lab):
            out[a] = int(np.argmax(np.bincount(lab))) - 1
            continue
        if nearest is None:
            if np.any(labels > 0):
                nearest = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
            else:
                nearest = np.zeros((3, *labels.shape), dtype=np.int64)
        centre = tuple(np.clip(np.rint(vox.mean(axis=0)).astype(int), 0, d - 1))
        out[a] = max(int(labels[tuple(nearest[(slice(None), *centre)])]) - 1, 0)
    return out


def extract_crystals(
    density: np.ndarray,
    lattices: np.ndarray,
    vocab: SpeciesVocab,
    labels: np.ndarray,
    foreground: np.ndarray | None = None,
    settings: ExtractionSettings | None = None,
    ids: Sequence[str] | None = None,
) -> list[Crystal]:
    """Crystals from density grids, their cells and voxel labels.

    Args:
        density: ``[B, d, d, d]`` densities over the box ``[-0.25, 1.25]^3`` of each cell.
        lattices: ``[B, 3, 3]`` cells (rows a, b, c), Angstrom: the predicted lattices.
        vocab: species vocabulary (label ``1 + i`` is ``vocab.numbers[i]``).
        labels: ``[B, d, d, d]`` voxel labels (0 = background).
        foreground: optional ``[B, d, d, d]`` most likely non-background label per voxel
            (fallback of the species vote where a peak's neighbourhood is labelled background).
        settings: extraction settings.
        ids: crystal ids.

    Returns:
        ``B`` crystals with their atoms inside the cell. A crystal without any peak above the
        threshold has no atoms, or with ``settings.keep_one`` its highest local maximum.
    """
    s = settings or ExtractionSettings()
    density = np.asarray(density)
    labels = np.asarray(labels)
    lattices = np.asarray(lattices, dtype=np.float64).reshape(-1, 3, 3)
    if density.ndim != 4 or density.shape[1:] != (density.shape[1],) * 3:
        raise ValueError(f"density must have shape [B, d, d, d], got {list(density.shape)}")
    if labels.shape != density.shape or len(lattices) != len(density):
        raise ValueError("density, labels and lattices must describe the same crystals")
    d = density.shape[1]
    ids = list(ids) if ids is not None else [f"decoded-{i}" for i in range(len(density))]
    margin = s.margin_voxels * 1.5 / d
    out = []
    for b in range(len(density)):
        vox, heights = find_peaks(density[b], s.threshold)
        frac = voxel_to_fractional(vox, d)
        keep = np.all((frac >= -margin) & (frac < 1.0 + margin), axis=1)
        if not np.any(keep) and s.keep_one:
            vox, heights = find_peaks(density[b], -np.inf)
            frac = voxel_to_fractional(vox, d)
            inside = np.all((frac >= -margin) & (frac < 1.0 + margin), axis=1)
            keep = np.zeros(len(vox), dtype=bool)
            if np.any(inside):
                keep[np.flatnonzero(inside)[np.argmax(heights[inside])]] = True
            else:  # every local maximum lies in the margin: the densest voxel of the cell
                vox, heights = _densest_in_cell(density[b])
                frac = voxel_to_fractional(vox, d)
                keep = np.ones(1, dtype=bool)
        vox, heights, frac = vox[keep], heights[keep], frac[keep]
        lattice = lattices[b]
        merged, groups = merge_periodic(frac, heights, lattice, s.merge_tol)
        numbers = np.zeros(0, dtype=np.int64)
        if len(merged):
            classes = np.zeros(len(merged), dtype=np.int64)
            for a, group in enumerate(groups):
                classes[a] = vote_species(
                    labels[b],
                    np.rint(vox[group])[None].astype(int),
                    s.vote_radius,
                    None if foreground is None else foreground[b],
                )[0]
            numbers = vocab.decode(classes)
        out.append(Crystal(lattice.copy(), merged @ lattice, numbers, ids[b]))
    return out


def _densest_in_cell(density: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel ``[1, 3]`` and value ``[1]`` of the highest density among voxels centred in ``[0, 1)^3``."""
    d = density.shape[0]
    inside = np.flatnonzero((voxel_to_fractional(np.arange(d), d) >= 0) & (voxel_to_fractional(np.arange(d), d) < 1))
    block = density[np.ix_(inside, inside, inside)]
    k = np.unravel_index(int(np.argmax(block)), block.shape)
    vox = inside[np.array(k)].astype(np.float64)[None]
    return vox, np.array([block[k]])


__all__ = ["ExtractionSettings", "extract_crystals", "find_peaks", "merge_periodic", "vote_species"]
