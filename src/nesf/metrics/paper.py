"""The paper's reconstruction metrics, pooled over a split, batched over crystals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nesf.data.crystal import Crystal
from nesf.fields.frame import Frame, get_frame
from nesf.fields.geometry import PeriodicGeometry, lll_reduce, shift_ranges

#: Keys of :func:`paper_metrics`, in report order.
PAPER_KEYS = (
    "n_structures",
    "atom_count_error_pct",
    "position_error_actual",
    "position_error_detected",
    "species_error_actual_pct",
    "species_error_detected_pct",
    "lattice_length_mae",
    "lattice_angle_mae_deg",
)


def pairwise_distances(true: Sequence[Crystal], pred: Sequence[Crystal], frame: str | Frame) -> list[np.ndarray]:
    """Distances ``[n_true, n_pred]`` (Angstrom) between true and detected atoms of each crystal.

    Paper frame: plain Cartesian distances. Periodic frame: minimum-image distances measured
    in the *true* cell, between true fractional positions and the detected fractional positions
    (detected atoms are expressed in their own, possibly predicted, cell), so that position
    errors do not mix with lattice errors (those are reported separately).
    """
    frame = get_frame(frame)
    out: list[np.ndarray | None] = [None] * len(true)
    step = 64
    # crystals batched with others of the same image search (one long, flat cell would
    # otherwise make every crystal of its batch try its hundreds of image shifts)
    reduced = lll_reduce(np.stack([t.lattice for t in true])) if frame.periodic and len(true) else None
    groups = _by_image_search(reduced) if reduced is not None else [list(range(len(true)))]
    chunks = [g[start : start + step] for g in groups for start in range(0, len(g), step)]
    for chunk in chunks:
        t_chunk, p_chunk = [true[i] for i in chunk], [pred[i] for i in chunk]
        b = len(t_chunk)
        nt = max(c.n_atoms for c in t_chunk)
        npd = max(max(c.n_atoms for c in p_chunk), 1)
        tc = np.zeros((b, nt, 3))
        pc = np.zeros((b, npd, 3))
        for i, (t, p) in enumerate(zip(t_chunk, p_chunk)):
            tc[i, : t.n_atoms] = t.cart
            if p.n_atoms:
                pc[i, : p.n_atoms] = p.frac @ t.lattice if frame.periodic else p.cart
        delta = torch.as_tensor(pc[:, None, :, :] - tc[:, :, None, :])  # [B, Nt, Np, 3]
        if frame.periodic:
            lattices = np.stack([t.lattice for t in t_chunk])
            geom = PeriodicGeometry.from_lattices(lattices, dtype=torch.float64, reduced=reduced[chunk])
            delta = geom.minimum_image(delta.reshape(b, nt * npd, 3)).reshape(b, nt, npd, 3)
        dist = torch.linalg.norm(delta, dim=-1).numpy()
        for i, (k, t, p) in enumerate(zip(chunk, t_chunk, p_chunk)):
            out[k] = dist[i, : t.n_atoms, : p.n_atoms]
    return out  # type: ignore[return-value]


def _by_image_search(reduced: np.ndarray) -> list[list[int]]:
    """Indices of cells (reduced bases ``[N, 3, 3]``) grouped by the range of image shifts they need, in order."""
    ranges = shift_ranges(reduced, half_cell=True)  # [N, 3]
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, r in enumerate(ranges):
        groups.setdefault(tuple(int(x) for x in r), []).append(i)
    return list(groups.values())


def largest_displacements(
    true: Sequence[Crystal], pred: Sequence[Crystal], frame: str | Frame, align: bool = True
) -> list[float | None]:
    """Largest distance (Angstrom) of a true atom to its nearest reconstructed atom, per crystal.

    With ``align`` the reconstruction is first moved by the rigid translation that best overlays
    it on the true crystal (the mean of the true-to-nearest displacement vectors, paired again
    after the move), as crystal structures are compared: where the origin is free, as along the
    polar axis of wurtzite, a uniform shift of every atom is no displacement. Without it the
    distances are those of the written cells. ``None`` for a crystal with no reconstructed atom.

    Args:
        true: the input crystals.
        pred: their reconstructions (fractional coordinates read in the true cell when periodic).
        frame: the model's frame (``"periodic"`` or ``"paper"``).
        align: remove the best rigid translation first.

    Returns:
        One distance or ``None`` per crystal.
    """
    frame = get_frame(frame)
    out: list[float | None] = []
    for t, p in zip(true, pred):
        if not p.n_atoms or not t.n_atoms:
            out.append(None)
            continue
        pc = p.frac @ t.lattice if frame.periodic else p.cart
        geom = PeriodicGeometry.from_lattices(t.lattice[None], dtype=torch.float64) if frame.periodic else None
        shift = np.zeros(3)
        for _ in range(2 if align else 1):
            delta = torch.as_tensor((pc + shift)[None, :, :] - t.cart[:, None, :])  # [Nt, Np, 3]
            if geom is not None:
                delta = geom.minimum_image(delta.reshape(1, -1, 3)).reshape(delta.shape)
            delta = delta.numpy()
            nearest = delta[np.arange(t.n_atoms), np.linalg.norm(delta, axis=-1).argmin(axis=1)]  # [Nt, 3]
            if align:
                shift = shift - nearest.mean(axis=0)
        out.append(float(np.linalg.norm(nearest, axis=-1).max()))
    return out


def missed_atoms(
    true: Sequence[Crystal], decoded: Sequence[Crystal], frame: str | Frame, tol: float = 0.5
) -> list[np.ndarray]:
    """For each crystal, ``[n_true]`` True for its atoms that its decoded crystal does not have.

    The atoms of a crystal and of its decoded crystal are paired one to one (distances as in
    :func:`pairwise_distances`; atoms of another element are never paired); an atom is missed
    when it has no partner within ``tol`` Angstrom.

    Args:
        true: the input crystals.
        decoded: the crystals decoded from their codes, in the same order and setting.
        frame: the field frame (how distances are measured).
        tol: the largest distance of a partner, Angstrom.

    Returns:
        One bool array per crystal, in the order of its atoms.
    """
    out = []
    for t, p, dist in zip(true, decoded, pairwise_distances(true, decoded, frame)):
        other = np.asarray(t.numbers)[:, None] != np.asarray(p.numbers)[None, :]
        cost = np.where(other, np.inf, dist)
        missed = np.ones(t.n_atoms, dtype=bool)
        if p.n_atoms:
            rows, cols = _assignment()(np.where(np.isinf(cost), 1e6, cost))
            missed[rows[cost[rows, cols] <= tol]] = False
        out.append(missed)
    return out


def paper_metrics(true: Sequence[Crystal], pred: Sequence[Crystal], frame: str | Frame) -> dict[str, float]:
    """The paper's metrics, pooled over all crystals as the paper does.

    * ``atom_count_error_pct``: share of crystals whose detected atom count is wrong.
    * ``position_error_actual``: mean over all true atoms of the distance to the nearest
      detected atom (A); ``position_error_detected``: mean over detected atoms of the distance
      to the nearest true atom. Crystals with no detected atom do not enter position errors.
    * ``species_error_actual_pct``: share of true atoms whose nearest detected atom has another
      species (a crystal with no detected atom counts all its atoms as misses);
      ``species_error_detected_pct``: share of detected atoms whose nearest true atom differs.
    * ``lattice_length_mae`` (A) and ``lattice_angle_mae_deg`` (degrees).
    """
    from nesf.metrics.accumulate import crystal_stats, paper_from_stats

    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true crystals but {len(pred)} reconstructions")
    if not true:
        raise ValueError("no crystals to evaluate")
    return paper_from_stats(crystal_stats(true, pred, frame).sum(axis=0), len(true))


def _assignment():  # noqa: ANN202
    """The ``linear_sum_assignment`` of scipy, imported when first needed (scipy.optimize costs start-up)."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment
