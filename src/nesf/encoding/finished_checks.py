"""The checks of finished decodes that follow the fits of checked codes: space group and precision.

:class:`FinishedChecks` is a part of :class:`nesf.encoding.checked._CheckedChunk`: after the
composition check and the fits, a crystal whose finished decode lacks its input's space group
(:attr:`~nesf.encoding.refine.RefineSettings.check_symmetry`), or whose atoms sit farther from
its input's than a tolerance (:attr:`~nesf.encoding.refine.RefineSettings.precision_tolerance`),
tries other codes. The helpers comparing a decode with its input (:func:`composition`,
:func:`composition_distance`, :func:`atom_distances`, :func:`atom_deviations`) live here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nesf.data.batch import CrystalBatch
from nesf.data.crystal import Crystal
from nesf.encoding.fit import fit_atoms_and_cell
from nesf.encoding.refine import fit_lattice, refine_latents
from nesf.fields.frame import Frame
from nesf.metrics.paper import pairwise_distances
from nesf.reconstruction.symmetry import REPORT_SYMPREC, space_groups

if TYPE_CHECKING:
    from nesf.encoding.checked import CheckedEncoder
    from nesf.encoding.refine import RefineSettings


class FinishedChecks:
    """The space-group and precision checks of one chunk's checked codes (a part of ``_CheckedChunk``).

    Reads and updates the chunk's state: ``o`` (the :class:`~nesf.encoding.checked.CheckedEncoder`),
    ``r`` (its refinement settings), ``crystals``, ``want`` (their compositions), ``z`` and
    ``decoded`` (the kept codes and their raw decodes), ``off`` (their distance from the input's
    composition), ``spent``, ``unit`` and ``last_decode`` (the work so far, the first and the last
    decode's), ``target`` (the normalised input cells), ``atom_fitted`` and ``counts``; and uses
    its ``fits_atoms``, ``_fit_work``, ``_step_cost``, ``_decode`` and ``_with_room``.
    """

    o: CheckedEncoder
    r: RefineSettings
    crystals: list[Crystal]
    want: list[dict[int, int]]
    z: torch.Tensor
    decoded: list[Any]
    off: list[tuple[int, int] | None]
    spent: np.ndarray
    unit: np.ndarray | None
    last_decode: np.ndarray
    target: torch.Tensor | None
    atom_fitted: set[int]
    counts: dict[str, int]
    _groups_in: dict[int, Any]  # the inputs' space groups, searched once (:meth:`_input_groups`)

    def _check_symmetry(self, before_fit: torch.Tensor) -> None:
        """Crystals whose finished decode lacks their input's space group try other codes.

        Only crystals decoded to their input's composition take part. The tries, in order: the
        cell fit alone of ``before_fit`` (the codes before the last fit) and half the atom fit's
        move, for crystals that keep an atom fit; then :attr:`RefineSettings.symmetry_restarts`
        restarts from ``before_fit``, each fitted as the last fit fits. The first code whose decode
        has the input's composition and, finished, its space group (spglib at
        :data:`REPORT_SYMPREC`) is kept (``"symmetry_recovered"``; ``"symmetry_lost"`` counts the
        crystals that tried). Each try costs a decode (a restart its steps and fit too) and is
        left out where the budget has no room for it.
        """
        o, r = self.o, self.r
        for key in ("symmetry_lost", "symmetry_recovered"):
            self.counts.setdefault(key, 0)
        idx = [i for i in range(len(self.crystals)) if self.off[i] == (0, 0)]
        if not idx:
            return
        want = self._input_groups(idx)
        got = space_groups(o.finish([self.decoded[i] for i in idx]), REPORT_SYMPREC)
        group = {i: w.number for i, w in zip(idx, want) if w is not None}
        lost = [i for i, g in zip(idx, got) if i in group and (g is None or g.number != group[i])]
        self.counts["symmetry_lost"] += len(lost)
        n_lost = len(lost)
        for k in range(-1, r.symmetry_restarts + 1):  # -1: the cell fit alone, 0: half the move
            todo = [i for i in lost if i in self.atom_fitted] if k < 1 else lost
            todo = self._with_room(todo) if k < 1 else self._with_room_for_restart(todo, k)
            if not todo:
                continue
            if k == -1:
                trial = fit_lattice(o.model, before_fit[todo], self.target[todo], r.lattice_fit)
            elif k == 0:
                middle = 0.5 * (before_fit[todo] + self.z[todo])
                trial = fit_lattice(o.model, middle, self.target[todo], r.lattice_fit)
            else:
                trial = self._restart_and_fit(todo, before_fit[todo], k)
            won = self._keep_if_grouped(todo, trial, group)
            lost = [i for i in lost if i not in won]
        self.counts["symmetry_recovered"] += n_lost - len(lost)

    def _check_precision(self, before_fit: torch.Tensor) -> None:
        """Crystals whose decoded atoms sit farther than the tolerance from their input's try other codes.

        Only crystals decoded to their input's composition take part; their atoms' distance from
        the input's is :func:`atom_deviations` of the decode as the user gets it (finished, where
        the encoder finishes decodes). Each of :attr:`RefineSettings.precision_restarts` restarts
        refines ``before_fit`` again with query draws of its own, the input atoms still farther
        than the tolerance weighed :attr:`RefineSettings.missed_atom_weight` times more, then
        fits it as the last fit fits; its code is kept where its crystal has the input's
        composition, atoms closer than the kept one's and, where the kept crystal has the input's
        space group, that group too (``"imprecise"`` counts the crystals that tried,
        ``"precision_improved"`` those that kept a restart's code). A crystal stops once its
        atoms come within the tolerance. Each try is left out where the budget has no room for it.
        """
        o, r = self.o, self.r
        for key in ("imprecise", "precision_improved"):
            self.counts.setdefault(key, 0)
        tol = r.precision_tolerance
        idx = [i for i in range(len(self.crystals)) if self.off[i] == (0, 0) and self.decoded[i].n_atoms]
        if not idx:
            return
        deviation, found = self._finished_deviations(idx, [self.decoded[i] for i in idx])
        dev = dict(zip(idx, deviation))
        todo = [i for i in idx if dev[i] > tol]
        self.counts["imprecise"] += len(todo)
        group: dict[int, int] = {}
        if found is not None and todo:  # crystals that have their input's group must keep it
            want = dict(zip(todo, self._input_groups(todo)))
            got = dict(zip(idx, found))
            for i in todo:
                if want[i] is not None and got[i] is not None and got[i].number == want[i].number:
                    group[i] = want[i].number
        improved: set[int] = set()
        offset = r.symmetry_restarts if r.check_symmetry else 0
        for k in range(1, r.precision_restarts + 1):
            todo = self._with_room_for_restart(todo, offset + k)
            if not todo:
                break
            sub = CrystalBatch.from_crystals([self.crystals[i] for i in todo], o.vocab).to(o.device)
            trial = self._restart_and_fit(todo, before_fit[todo], offset + k, self._far_weights(todo, sub, tol), sub)
            out, cost = self._decode(trial, todo)
            now, groups = self._finished_deviations(todo, out)
            still = []
            for j, i in enumerate(todo):
                self.spent[i] += cost[j]
                self.last_decode[i] = max(cost[j], 1.0)
                ok = composition_distance(composition(out[j]), self.want[i]) == (0, 0) and now[j] < dev[i]
                if ok and i in group:
                    ok = groups is not None and groups[j] is not None and groups[j].number == group[i]
                if ok:
                    self.z[i], self.decoded[i], dev[i] = trial[j], out[j], float(now[j])
                    improved.add(i)
                if dev[i] > tol:
                    still.append(i)
            todo = still
        self.counts["precision_improved"] += len(improved)

    def _input_groups(self, idx: list[int]) -> list:
        """The space groups of inputs ``idx`` (spglib at :data:`REPORT_SYMPREC`), each searched once per chunk."""
        known = self._groups_in
        new = [i for i in idx if i not in known]
        known.update(zip(new, space_groups([self.crystals[i] for i in new], REPORT_SYMPREC)))
        return [known[i] for i in idx]

    def _finished_deviations(self, idx: list[int], decoded: list[Crystal]) -> tuple[np.ndarray, list | None]:
        """:func:`atom_deviations` of ``decoded`` (crystals ``idx``) finished, and their space groups.

        Without a finishing step the raw decodes are measured and the groups are None.
        """
        o = self.o
        inputs = [self.crystals[i] for i in idx]
        if o.finish is None:
            return atom_deviations(inputs, decoded, o.model.frame), None
        finished = o.finish(list(decoded))
        return atom_deviations(inputs, finished, o.model.frame), space_groups(finished, REPORT_SYMPREC)

    def _far_weights(self, idx: list[int], batch: CrystalBatch, tol: float) -> torch.Tensor:
        """``[len(idx), N]`` query weights: input atoms farther than ``tol`` (A) from their decode weigh more."""
        weights = torch.ones(batch.mask.shape, device=self.o.device)
        inputs = [self.crystals[i] for i in idx]
        far = atom_distances(inputs, [self.decoded[i] for i in idx], self.o.model.frame)
        for j, distances in enumerate(far):
            extra = torch.as_tensor(distances > tol, dtype=weights.dtype, device=self.o.device)
            weights[j, : len(distances)] += (self.r.missed_atom_weight - 1) * extra
        return weights

    def _with_room_for_restart(self, idx: list[int], k: int) -> list[int]:
        """Crystals of ``idx`` whose budget has room for symmetry restart ``k``, its fit and its decode."""
        if self.r.max_cost <= 0:
            return idx
        settings = self.r.symmetry_restart(self.r.restarts + k)
        need = settings.steps * self._step_cost(settings) + self.last_decode
        if self.fits_atoms:
            need = need + self._fit_work(self.r.lattice_fit)
        room = [i for i in idx if self.r.max_cost * self.unit[i] - self.spent[i] >= need[i]]
        self.counts["budget_cut"] += len(idx) - len(room)
        return room

    def _restart_and_fit(
        self,
        idx: list[int],
        start: torch.Tensor,
        k: int,
        weights: torch.Tensor | None = None,
        sub: CrystalBatch | None = None,
    ) -> torch.Tensor:
        """Codes of crystals ``idx`` refined again from ``start`` (symmetry restart ``k``), then fitted.

        ``weights`` ``[len(idx), N]`` weigh the queries around each input atom (None: alike);
        ``sub`` is the batch of those crystals when already made.
        """
        o, r = self.o, self.r
        settings = r.symmetry_restart(r.restarts + k)  # query draws of their own
        if sub is None:
            sub = CrystalBatch.from_crystals([self.crystals[i] for i in idx], o.vocab).to(o.device)
        z = refine_latents(o.model, sub, start, o.train_cfg, settings, o.bbox, weights)
        self.spent[idx] += settings.steps * self._step_cost(settings)[idx]
        if not r.lattice_fit:
            return z
        if self.fits_atoms:
            self.spent[idx] += self._fit_work(r.lattice_fit)[idx]
            return fit_atoms_and_cell(o.model, z, sub, *o.polish_shells, r.lattice_fit, r.atom_fit_directions)
        return fit_lattice(o.model, z, self.target[idx], r.lattice_fit)

    def _keep_if_grouped(self, idx: list[int], trial: torch.Tensor, group: dict[int, int]) -> list[int]:
        """Decode ``trial`` codes of crystals ``idx``; keep each whose crystal has the input's composition and group.

        Returns the crystals that kept their trial code.
        """
        out, cost = self._decode(trial, idx)
        found = space_groups(self.o.finish(out), REPORT_SYMPREC)
        won = []
        for j, i in enumerate(idx):
            self.spent[i] += cost[j]
            self.last_decode[i] = max(cost[j], 1.0)
            same = composition_distance(composition(out[j]), self.want[i]) == (0, 0)
            if same and found[j] is not None and found[j].number == group[i]:
                self.z[i], self.decoded[i] = trial[j], out[j]
                won.append(i)
        return won


def atom_distances(true: Sequence[Crystal], decoded: Sequence[Crystal], frame: Frame) -> list[np.ndarray]:
    """Distance (A) from each atom of ``true[k]`` to the nearest atom of its element in ``decoded[k]``, ``[n_k]`` each.

    Pairs in the same setting; distances as :func:`nesf.metrics.paper.pairwise_distances`
    measures them (batched). Infinite where an element of a true crystal has no atom in its
    decoded one.
    """
    out = []
    for t, d, dist in zip(true, decoded, pairwise_distances(true, decoded, frame)):
        same = np.asarray(t.numbers)[:, None] == np.asarray(d.numbers)[None, :]
        out.append(np.where(same, dist, np.inf).min(axis=1, initial=np.inf))
    return out


def atom_deviations(true: Sequence[Crystal], decoded: Sequence[Crystal], frame: Frame) -> np.ndarray:
    """Mean of :func:`atom_distances` of each crystal ``[K]``; 0 for a true crystal with no atoms."""
    return np.array([d.mean() if len(d) else 0.0 for d in atom_distances(true, decoded, frame)])


def composition_distance(a: dict[int, int], b: dict[int, int]) -> tuple[int, int]:
    """How far composition ``a`` is from ``b``, as ``(count, atoms)``; ``(0, 0)`` when they agree.

    ``count`` is the difference of their atom counts, ``atoms`` the atoms by which they differ
    summed over the elements of either.
    """
    count = abs(sum(a.values()) - sum(b.values()))
    return count, sum(abs(a.get(e, 0) - b.get(e, 0)) for e in a.keys() | b.keys())


def composition(crystal: Crystal) -> dict[int, int]:
    """Atoms of each element (atomic number) in a crystal's cell."""
    numbers, counts = np.unique(np.asarray(crystal.numbers, dtype=np.int64), return_counts=True)
    return dict(zip(numbers.tolist(), counts.tolist()))
