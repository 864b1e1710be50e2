"""Voxel representation of crystals, after ICSG3D (Court et al., J. Chem. Inf. Model. 60, 4518 (2020)).

A crystal becomes two grids over its cell plus a margin of 25 % of the cell on every side,
i.e. the fractional box ``[-0.25, 1.25]^3`` of the crystal's own lattice, sampled at the
centres of ``d x d x d`` voxels:

* **density**: the sum over all atoms and their periodic images of isotropic Gaussians
  ``exp(-|r - r_i|^2 / (2 sigma_i^2))`` (peak value 1 for an isolated atom), with
  ``sigma_i = sigma_factor * R_cov(Z_i)``, ``R_cov`` the covalent radius of the element
  (Cordero et al., Dalton Trans. 2008, as tabulated by ``ase.data.covalent_radii``, which
  gives 2.0 A to the elements beyond Cm that have no measured value). The default factor 0.5
  keeps neighbouring atoms' blobs apart (bonds are about the sum of two covalent radii, i.e.
  four standard deviations) while larger atoms still give visibly wider blobs, which is what
  lets a network tell species apart from the density alone.
* **labels**: at every voxel, ``1 +`` the vocabulary class of the nearest atom whose sphere of
  radius ``label_factor * R_cov`` contains the voxel centre, or 0 (background) if none does.

Voxel ``(i, j, k)`` has its centre at fractional coordinates ``u = -0.25 + 1.5 (i + 0.5) / d``
(and likewise for ``j``, ``k``) along the lattice vectors a, b, c; the grid is skewed like the
cell. The periodic images that reach the box are listed per crystal (numpy preprocessing);
the grids are then computed with torch, vectorised over images and the voxels near each.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import permutations, product

import numpy as np
import torch

from nesf.data.crystal import Crystal
from nesf.data.vocab import SpeciesVocab

#: Fractional coordinates of the box edges along each lattice vector.
BOX_LOW = -0.25
BOX_HIGH = 1.25
BOX_SPAN = BOX_HIGH - BOX_LOW

#: Gaussians are cut off beyond this many standard deviations (exp(-8) = 3.4e-4 of the peak).
CUTOFF_SIGMAS = 4.0

#: Upper bound of (image, voxel) pairs computed at once (controls peak memory of voxelisation).
_CHUNK_ELEMENTS = 2_000_000


def covalent_radius(numbers: np.ndarray | Sequence[int]) -> np.ndarray:
    """Covalent radii ``[N]`` in Angstrom of atomic numbers ``[N]`` (Cordero 2008, via ASE; 2.0 for Z > 96)."""
    from ase.data import covalent_radii

    numbers = np.asarray(numbers, dtype=np.int64)
    return np.asarray(covalent_radii, dtype=np.float64)[np.clip(numbers, 1, len(covalent_radii) - 1)]


def voxel_centres(d: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.Tensor:
    """Fractional coordinates ``[d]`` of the voxel centres along one lattice vector."""
    return BOX_LOW + BOX_SPAN * (torch.arange(d, dtype=dtype, device=device) + 0.5) / d


def voxel_to_fractional(index: np.ndarray, d: int) -> np.ndarray:
    """(Possibly non-integer) voxel indices ``[..., 3]`` -> fractional coordinates ``[..., 3]``."""
    return BOX_LOW + BOX_SPAN * (np.asarray(index, dtype=np.float64) + 0.5) / d


def fractional_to_voxel(frac: np.ndarray, d: int) -> np.ndarray:
    """Fractional coordinates ``[..., 3]`` -> continuous voxel indices ``[..., 3]``."""
    return (np.asarray(frac, dtype=np.float64) - BOX_LOW) / BOX_SPAN * d - 0.5


def voxel_size(lattice: np.ndarray, d: int) -> np.ndarray:
    """Voxel edge lengths ``[3]`` in Angstrom along a, b, c for a ``[3, 3]`` lattice."""
    return BOX_SPAN * np.linalg.norm(np.asarray(lattice, dtype=np.float64), axis=-1) / d


def random_rotations(n: int, generator: torch.Generator, kind: str = "any") -> torch.Tensor:
    """Seeded random rotation matrices ``[n, 3, 3]`` (float64, proper: det = +1).

    Args:
        n: number of rotations.
        generator: the random stream (CPU ``torch.Generator``).
        kind: ``"any"``: uniform over all rotations (unit quaternions from normal samples);
            ``"cubic"``: one of the 24 rotations of the cube (signed permutation matrices),
            which map a cubic crystal onto itself up to a relabelling of its axes.
    """
    if kind == "any":
        q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
        q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
        w, x, y, z = q.unbind(1)
        rows = [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
        return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)
    if kind == "cubic":
        table = cube_rotations()
        return table[torch.randint(len(table), (n,), generator=generator)]
    raise ValueError(f"rotation kind must be 'any' or 'cubic', got {kind!r}")


def cube_rotations() -> torch.Tensor:
    """The 24 proper rotations of the cube ``[24, 3, 3]`` (float64)."""
    mats = []
    for perm in permutations(range(3)):
        for signs in product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[range(3), perm] = signs
            if np.linalg.det(m) > 0:
                mats.append(m)
    return torch.tensor(np.stack(mats))


def _images(crystal: Crystal, cutoff: float, rotation: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian positions ``[M, 3]`` and atom indices ``[M]`` of the images that reach the box.

    An image reaches the box if it lies within ``cutoff`` Angstrom of it, measured through the
    lattice-plane spacings (a superset of the exact criterion for skewed cells). With a
    ``rotation`` the images are first turned about the box centre.
    """
    lattice = crystal.lattice
    frac = crystal.frac % 1.0
    volume = abs(np.linalg.det(lattice))
    cross = np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]])
    spacing = volume / np.linalg.norm(cross, axis=1)  # [3] distances between lattice planes
    reach = cutoff / spacing  # [3] cutoff in fractional units
    centre = 0.5 * lattice.sum(axis=0)
    if rotation is None:
        n_max = np.ceil(-BOX_LOW + reach).astype(int) + 1
    else:  # a rotated image can come from anywhere within the box's circumsphere (+ cutoff)
        corners = np.array(list(product((BOX_LOW, BOX_HIGH), repeat=3))) @ lattice
        radius = np.linalg.norm(corners - centre, axis=1).max() + cutoff
        n_max = np.ceil(0.5 + radius / spacing).astype(int) + 1
    shifts = np.stack(np.meshgrid(*[np.arange(-n, n + 1) for n in n_max], indexing="ij"), axis=-1).reshape(-1, 3)
    cand = (frac[None, :, :] + shifts[:, None, :]).reshape(-1, 3)  # [S * N, 3]
    atom = np.tile(np.arange(crystal.n_atoms), len(shifts))
    cart = cand @ lattice
    if rotation is not None:
        cart = (cart - centre) @ np.asarray(rotation, dtype=np.float64).T + centre
        cand = np.linalg.solve(lattice.T, cart.T).T
    keep = np.all((cand >= BOX_LOW - reach) & (cand <= BOX_HIGH + reach), axis=1)
    return cart[keep], atom[keep]


def voxelize(
    crystals: Sequence[Crystal],
    d: int = 32,
    sigma_factor: float = 0.5,
    label_factor: float = 1.0,
    vocab: SpeciesVocab | None = None,
    rotations: torch.Tensor | np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Density and species-label grids of a batch of crystals.

    Each atom image is splatted onto the window of voxels within its cutoff
    (``max(4 sigma, label radius)``; the Gaussians are truncated there, at exp(-8) of their
    peak), so the cost grows with the number of (image, nearby voxel) pairs, not with
    images x voxels. The work is vectorised over images and window voxels; crystals are
    processed one after the other (their image counts and windows differ).

    Args:
        crystals: ``B`` crystals (any cell; atoms need not be wrapped).
        d: voxels per axis.
        sigma_factor: Gaussian width as a fraction of the covalent radius.
        label_factor: label-sphere radius as a fraction of the covalent radius.
        vocab: species vocabulary for the labels; None: no labels are computed.
        rotations: optional ``[B, 3, 3]`` rotations applied to the atoms (and all their periodic
            images) about the box centre before sampling, the sampling box staying in place
            (augmentation, see :func:`random_rotations`).
        device: where to compute.

    Returns:
        ``density`` ``[B, d, d, d]`` (float32, peak 1 per isolated atom) and ``labels``
        ``[B, d, d, d]`` (int64, 0 = background, ``1 + class`` otherwise) or None without a vocab.
        Axes 1, 2, 3 run along the lattice vectors a, b, c.

    Raises:
        UnknownElementError: an element is not in ``vocab``.
    """
    if d < 2:
        raise ValueError(f"the grid needs at least 2 voxels per axis, got d={d}")
    if sigma_factor <= 0 or label_factor <= 0:
        raise ValueError("sigma_factor and label_factor must be positive")
    crystals = list(crystals)
    if not crystals:
        raise ValueError("no crystals to voxelise")
    rot = None if rotations is None else np.asarray(torch.as_tensor(rotations).cpu(), dtype=np.float64)
    if rot is not None and rot.shape != (len(crystals), 3, 3):
        raise ValueError(f"rotations must have shape [{len(crystals)}, 3, 3], got {list(rot.shape)}")
    dev = torch.device(device)
    density = torch.zeros(len(crystals), d**3, device=dev)
    labels = torch.zeros(len(crystals), d**3, dtype=torch.long, device=dev) if vocab is not None else None
    for b, c in enumerate(crystals):
        classes = vocab.encode(c.numbers, c.id) + 1 if vocab is not None else None
        out = _splat(c, d, sigma_factor, label_factor, classes, None if rot is None else rot[b], dev)
        density[b] = out[0]
        if labels is not None:
            labels[b] = out[1]
    shape = (len(crystals), d, d, d)
    return density.reshape(shape), None if labels is None else labels.reshape(shape)


def _splat(
    crystal: Crystal,
    d: int,
    sigma_factor: float,
    label_factor: float,
    classes: np.ndarray | None,
    rotation: np.ndarray | None,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flat density ``[d^3]`` and labels ``[d^3]`` (or None) of one crystal; see :func:`voxelize`."""
    radii = covalent_radius(crystal.numbers)
    sigma = sigma_factor * radii
    label_r = label_factor * radii
    cut = np.maximum(CUTOFF_SIGMAS * sigma, label_r)  # [N] per-atom cutoff, A
    cart, atom = _images(crystal, float(cut.max()), rotation)
    lattice = crystal.lattice
    frac = np.linalg.solve(lattice.T, cart.T).T  # [M, 3] in the (unrotated) sampling frame
    cross = np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]])
    spacing = abs(np.linalg.det(lattice)) / np.linalg.norm(cross, axis=1)
    centre = (frac - BOX_LOW) / BOX_SPAN * d - 0.5  # [M, 3] continuous voxel index
    metric = torch.as_tensor(lattice @ lattice.T * (BOX_SPAN / d) ** 2, dtype=torch.float32, device=device)
    density = torch.zeros(d**3, dtype=torch.float32, device=device)
    none = torch.iinfo(torch.long).max
    best = torch.full((d**3,), none, dtype=torch.long, device=device) if classes is not None else None
    # atoms of one element share a cutoff, hence a window size: splat element by element
    for z in np.unique(crystal.numbers):
        sel = np.nonzero(crystal.numbers[atom] == z)[0]
        if len(sel) == 0:
            continue
        k = int(np.nonzero(crystal.numbers == z)[0][0])
        half = np.ceil(cut[k] / spacing * d / BOX_SPAN).astype(int)  # [3] window half-widths, voxels
        width = np.minimum(2 * half + 2, d)
        start = np.clip(np.floor(centre[sel]).astype(int) - half, 0, d - width)  # windows stay in the grid
        cls = None if classes is None else int(classes[k])
        step = max(1, _CHUNK_ELEMENTS // int(np.prod(width)))
        for i0 in range(0, len(sel), step):
            _splat_windows(
                torch.as_tensor(centre[sel[i0 : i0 + step]], dtype=torch.float32, device=device),
                torch.as_tensor(start[i0 : i0 + step], device=device),
                width,
                d,
                metric,
                (float(0.5 / sigma[k] ** 2), float(cut[k] ** 2), float(label_r[k] ** 2)),
                cls,
                density,
                best,
            )
    labels = None
    if best is not None:
        labels = torch.where(best == none, torch.zeros_like(best), best % 1024)
    return density, labels


def _splat_windows(
    centre: torch.Tensor,
    start: torch.Tensor,
    width: np.ndarray,
    d: int,
    metric: torch.Tensor,
    radii: tuple[float, float, float],
    cls: int | None,
    density: torch.Tensor,
    best: torch.Tensor | None,
) -> None:
    """Add ``m`` images of one element to the flat ``density`` ``[d^3]`` and label keys ``best`` ``[d^3]``.

    ``centre`` ``[m, 3]`` holds the images' continuous voxel indices, ``start`` ``[m, 3]`` the
    first voxel of each one's window and ``width`` ``[3]`` the window size; both outputs are
    updated in place. ``radii`` holds 1 / (2 sigma^2) (A^-2), the squared cutoff and the squared label radius (A^2).
    """
    inv2s2, cut2, label2 = radii
    idx = [start[:, k : k + 1] + torch.arange(int(width[k]), device=start.device) for k in range(3)]  # [m, w_k]
    x = (idx[0] - centre[:, 0:1])[:, :, None, None]  # offsets in voxels, broadcast to [m, w0, w1, w2]
    y = (idx[1] - centre[:, 1:2])[:, None, :, None]
    z = (idx[2] - centre[:, 2:3])[:, None, None, :]
    g = metric
    d2 = g[0, 0] * x * x + g[1, 1] * y * y + g[2, 2] * z * z  # [m, w0, w1, w2], A^2
    if bool(g[0, 1] != 0 or g[0, 2] != 0 or g[1, 2] != 0):
        d2 = d2 + 2.0 * (g[0, 1] * x * y + g[0, 2] * x * z + g[1, 2] * y * z)
    flat = (idx[0][:, :, None, None] * d + idx[1][:, None, :, None]) * d + idx[2][:, None, None, :]
    d2 = d2.reshape(-1)
    flat = flat.expand(len(centre), *[int(w) for w in width]).reshape(-1)
    inside = torch.nonzero(d2 <= cut2).squeeze(1)
    d2_in, flat_in = d2[inside], flat[inside]
    density.index_add_(0, flat_in, torch.exp(d2_in * -inv2s2))
    if best is not None and cls is not None:
        cover = d2_in <= label2
        # nearest covering atom per voxel: minimum of (quantised squared distance, class) keys
        key = (d2_in[cover].double() * 2.0**24).long() * 1024 + cls
        best.scatter_reduce_(0, flat_in[cover], key, reduce="amin")


__all__ = [
    "BOX_HIGH",
    "BOX_LOW",
    "BOX_SPAN",
    "covalent_radius",
    "cube_rotations",
    "fractional_to_voxel",
    "random_rotations",
    "voxel_centres",
    "voxel_size",
    "voxel_to_fractional",
    "voxelize",
]
