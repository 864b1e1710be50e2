"""Checked codes: each latent code is decoded, and refined again while its composition is off.

A code passes when its decoded crystal has its input's composition (atoms of each element in
the cell). Each code is refined and decoded; codes that fail are refined again up to
:attr:`RefineSettings.restarts` times, with other query draws and the queries around the input
atoms their decodes missed weighted up (:func:`nesf.metrics.paper.missed_atoms`); where no code
passes, the one whose crystal comes closest to the input's composition is kept. With
:attr:`RefineSettings.check_encoder` (or a budget) the encoder's own code is decoded first, and
with ``check_encoder`` a crystal whose encoder code passes keeps it; with
:attr:`RefineSettings.encoder_fallback` the encoder's code is decoded after a first refinement
that fails, and kept where it comes closer (then restarts only where it does not pass). Last, the kept codes are
fitted to their inputs' cells and decoded once more; a fitted code is kept where it decodes no
worse. With :attr:`RefineSettings.check_symmetry`, a crystal whose finished decode lacks its
input's space group then tries other codes, and with :attr:`RefineSettings.precision_tolerance`
a crystal whose finished atoms sit farther than that from its input's does too
(:mod:`nesf.encoding.finished_checks`).

Refinements take Adam steps or Gauss-Newton steps (:attr:`RefineSettings.solver`,
:attr:`RefineSettings.restart_solver`); with ``restart_from="last"`` each restart starts from the
code the one before reached, a chain of short refinements each checked by a decode (the fast
preset, :mod:`nesf.encoding.presets`).

The work is bounded per crystal (:attr:`RefineSettings.max_cost`): it is counted in field
queries (a decode's particle moves, polishing and species votes; a refinement step's queries,
their backward pass counted as two forward ones) and a refinement is shortened, or left out,
where it and the decode that checks it would take a crystal beyond ``max_cost`` times the work
of decoding its encoder's code. The count depends only on the crystal and the settings, so the
same input gives the same codes on any machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from nesf.data.batch import CrystalBatch
from nesf.data.crystal import Crystal
from nesf.data.vocab import SpeciesVocab
from nesf.encoding import fit
from nesf.encoding.finished_checks import FinishedChecks, atom_deviations, composition, composition_distance
from nesf.encoding.fit import fit_atoms_and_cell
from nesf.encoding.refine import RefineSettings, fit_lattice, refine_latents
from nesf.metrics.paper import missed_atoms
from nesf.models.autoencoder import NeSFModel
from nesf.models.config import TrainConfig

#: Decodes codes ``[B, D]`` to crystals (in the network's setting), called as
#: ``decode(z, ids=ids, field_queries=counts)``; ``counts`` (a list) receives each crystal's field queries.
Decoder = Callable[..., list[Crystal]]

#: Refinements are cut to a multiple of this many steps when the budget is short, and one
#: shorter than this is not started (a few steps of a cosine schedule barely move a code).
BUDGET_STEP_QUANTUM = 5

#: The cost of a species-field query relative to a position-field query (the species decoder
#: has half the layers of the position decoder).
SPECIES_QUERY_COST = 0.5

#: A backward pass through the decoders costs about two forward passes.
BACKWARD_FACTOR = 2.0

#: A Gauss-Newton refinement step (:attr:`RefineSettings.solver`) costs about this many Adam
#: steps: three backward passes over the position queries with a code per query, and each
#: crystal's normal equations (0.034 against 0.008 s per crystal and step, `mp`, one core).
GAUSS_NEWTON_STEP_FACTOR = 4.0


@dataclass(frozen=True)
class CheckedEncoder:
    """Encodes crystals to refined latent codes, checked by decoding as :attr:`refinement` says.

    Attributes:
        model: the trained network.
        vocab: its species vocabulary.
        train_cfg: its training configuration (query sampling and loss weights of the refinement).
        refinement: how codes are refined and how often a failing code is refined again.
        decode: the model's decoder (see :data:`Decoder`); its crystals need not be finished
            (symmetrised), as only their compositions and atoms are compared.
        bbox: paper frame: the ``[2, 3]`` particle domain (Angstrom); None in the periodic frame.
        device: where the network computes.
        polish_shells: the decoder's polishing shells, ``(radii in A, gate in A)``, which the
            atom fit (:attr:`RefineSettings.atom_fit`) aims at; None: no atom fit.
        finish: finishes decoded crystals as the decoder does (symmetrises them), for the
            space-group check (:attr:`RefineSettings.check_symmetry`); None: no such check.
    """

    model: NeSFModel
    vocab: SpeciesVocab
    train_cfg: TrainConfig
    refinement: RefineSettings
    decode: Decoder
    bbox: np.ndarray | None
    device: torch.device
    polish_shells: tuple[tuple[float, ...], float] | None = None
    finish: Callable[[list[Crystal]], list[Crystal]] | None = None

    @torch.no_grad()
    def encode(
        self, crystals: Sequence[Crystal], batch_size: int = 256, progress: bool = False
    ) -> tuple[torch.Tensor, list[Crystal] | None, dict[str, int]]:
        """Codes ``[B, D]`` of crystals in the network's setting, their decoded crystals when checked, and counts.

        The decoded crystals (in the network's setting, as :attr:`decode` gives them) come back
        only when the codes are checked (refinement with restarts), which decodes every code;
        otherwise None. The counts say how many crystals were encoded, how many were refined
        again, how many of those came back with their input's composition, and, when checked,
        how many kept the encoder's code (``"encoder_kept"``), how many refinements and lattice
        fits the budget shortened or left out (``"budget_cut"``), how many kept their
        lattice-fitted code (``"lattice_fitted"``), with the space-group check how many tried
        other codes and how many won their group back (``"symmetry_lost"``,
        ``"symmetry_recovered"``), and the mean and largest work per crystal in units of its first
        decode (``"cost_per_crystal_x100"``, ``"cost_max_x100"``, times 100).
        """
        r = self.refinement
        checked = bool(r.steps and r.restarts)
        codes: list[torch.Tensor] = []
        decoded: list[Crystal] = []
        counts = {"crystals": len(crystals), "restarted": 0, "recovered": 0}
        if checked:
            counts.update(encoder_kept=0, budget_cut=0)
        cost_total, cost_max = 0.0, 0.0
        step = min(batch_size, r.batch_size) if r.steps else batch_size
        desc = "encode + check" if checked else "encode"
        with tqdm(total=len(crystals), desc=desc, unit="crystal", disable=not progress) as bar:
            for start in range(0, len(crystals), step):
                chunk = crystals[start : start + step]
                batch = CrystalBatch.from_crystals(chunk, self.vocab).to(self.device)
                z0, _, _ = self.model.encode(batch.cart, batch.frac, batch.species, batch.mask, batch.lattice_params)
                if checked:
                    z, chunk_decoded, cost = _CheckedChunk(self, chunk, batch, z0, counts).run()
                    decoded.extend(chunk_decoded)
                    cost_total += float(cost.sum())
                    cost_max = max(cost_max, float(cost.max(initial=0.0)))
                else:
                    z = refine_latents(self.model, batch, z0, self.train_cfg, r, self.bbox)
                    if r.steps and r.lattice_fit:
                        target = self.model.normalize_lattice(batch.lattice_params)
                        z = fit_lattice(self.model, z, target, r.lattice_fit)
                codes.append(z)
                bar.update(len(chunk))
        if checked and crystals:
            counts["cost_per_crystal_x100"] = round(100 * cost_total / len(crystals))
            counts["cost_max_x100"] = round(100 * cost_max)
        return torch.cat(codes), (decoded if checked else None), counts


class _CheckedChunk(FinishedChecks):
    """The checked codes of one chunk of crystals: decodes, refinements, restarts and their cost."""

    def __init__(
        self,
        owner: CheckedEncoder,
        crystals: Sequence[Crystal],
        batch: CrystalBatch,
        z0: torch.Tensor,
        counts: dict[str, int],
    ) -> None:
        self.o, self.r = owner, owner.refinement
        self.crystals, self.z0, self.counts = list(crystals), z0, counts
        self.ids = [c.id for c in crystals]
        self.want = [composition(c) for c in crystals]
        n = len(crystals)
        self.z = z0.clone()
        self.z_last = z0.clone()  # each crystal's last tried code (restarts from "last")
        self.decoded: list[Crystal | None] = [None] * n
        self.off: list[tuple[int, int] | None] = [None] * n  # distance of the kept crystal from the input's
        self.spent = np.zeros(n)  # field queries so far
        self.unit: np.ndarray | None = None  # field queries of the crystal's first (one-pass) decode
        self.last_decode = np.ones(n)  # field queries of the crystal's last decode (the next one's estimate)
        self.target = owner.model.normalize_lattice(batch.lattice_params) if self.r.lattice_fit else None
        self.batch = batch
        weigh = self.r.missed_atom_weight != 1
        self.missed: dict[int, np.ndarray] | None = {} if weigh else None
        numbers = [np.asarray(c.numbers) for c in crystals]
        self.n_atoms = n_atoms = np.array([len(x) for x in numbers], dtype=np.float64)
        cfg = owner.train_cfg
        local = math.prod([cfg.local_grid] * 3)
        uniform = self.r.uniform_queries or cfg.uniform_per_crystal
        # field queries of one refinement step of each crystal (forward and backward)
        self.step_cost = (1.0 + BACKWARD_FACTOR) * (
            uniform + local * n_atoms + SPECIES_QUERY_COST * self.r.species_per_atom * n_atoms
        )
        unseen = getattr(owner.model, "unseen_species", None)
        never = set() if unseen is None else {k for k, u in zip(owner.vocab.numbers, unseen.tolist()) if u}
        self.hopeless = [bool(never.intersection(map(int, x))) for x in numbers]
        self.atom_fitted: set[int] = set()  # crystals that keep an atom fit
        self._groups_in: dict[int, object] = {}  # the inputs' space groups, once searched (FinishedChecks)

    # ------------------------------------------------------------------ steps
    def run(self) -> tuple[torch.Tensor, list[Crystal], np.ndarray]:
        """Codes ``[B, D]``, their decoded crystals and each crystal's cost in one-pass decodes ``[B]``."""
        r, n = self.r, len(self.crystals)
        bounded = r.max_cost > 0
        todo = list(range(n))
        done_fitting: list[int] = []  # crystals whose kept code needs no last fit
        prefitted: list[int] = []  # crystals that keep their encoder's code fitted to their atoms
        if r.check_encoder or bounded:  # the encoder's code first: the one-pass work is the unit
            first, atoms_first = self.z0, False
            if r.check_encoder and r.fit_encoder_code and r.lattice_fit:
                atoms_first = r.fit_encoder_atoms and self.fits_atoms
                first = self._fit_encoder_code(atoms_first)
            self._try(todo, first, first=True)
            if r.check_encoder:
                kept = [i for i in todo if self.off[i] == (0, 0)]
                self.counts["encoder_kept"] += len(kept)
                todo = [i for i in todo if self.off[i] != (0, 0)]
                if first is not self.z0 and (atoms_first or not self.fits_atoms):
                    done_fitting = kept
                if atoms_first:
                    prefitted = kept
                    self.atom_fitted.update(kept)
                    self.counts["atoms_fitted"] = self.counts.get("atoms_fitted", 0) + len(kept)
        todo = self._refine(todo, self.z0, r, first=True)
        todo = [i for i in todo if self.off[i] != (0, 0) and not self.hopeless[i]]
        if r.encoder_fallback and not (r.check_encoder or bounded) and todo:
            self._try(todo, self.z0[todo], first=False)  # kept where closer than the refined code
            back = [i for i in todo if self.off[i] == (0, 0)]
            self.counts["encoder_kept"] += len(back)
            todo = [i for i in todo if i not in back]
        self.counts["restarted"] += len(todo)
        stale = dict.fromkeys(todo, 0)  # restarts in a row that came no closer
        for k in range(1, r.restarts + 1):
            if not todo:
                break
            start = {"encoder": self.z0, "last": self.z_last}.get(r.restart_from, self.z)
            before = {i: self.off[i] for i in todo}
            done = self._refine(todo, start, r.restart(k), first=False)
            still = []
            for i in todo:
                if i not in done:  # the budget left no room for this restart
                    continue
                if self.off[i] == (0, 0):
                    self.counts["recovered"] += 1
                    continue
                stale[i] = 0 if self.off[i] < before[i] else stale[i] + 1
                if not r.restart_patience or stale[i] < r.restart_patience:
                    still.append(i)
            todo = still
        before_fit = self.z.clone()
        before_fit[prefitted] = self.z0[prefitted]  # their codes before the atom fit
        if r.lattice_fit:
            self._keep_fitted(skip=done_fitting)
        if r.check_symmetry and self.o.finish is not None:
            self._check_symmetry(before_fit)
        if r.precision_tolerance > 0 and r.precision_restarts and self.o.model.frame.periodic:
            self._check_precision(before_fit)
        return self.z, list(self.decoded), self.spent / (np.ones(n) if self.unit is None else self.unit)

    def _fit_encoder_code(self, atoms: bool) -> torch.Tensor:
        """The encoder's codes ``[B, D]`` fitted to their inputs' cells, and with ``atoms`` their atoms too."""
        o, iterations = self.o, self.r.lattice_fit
        if not atoms:
            return fit_lattice(o.model, self.z0, self.target, iterations)
        self.spent += self._fit_work(iterations)
        return fit_atoms_and_cell(
            o.model, self.z0, self.batch, *o.polish_shells, iterations, self.r.atom_fit_directions
        )

    def _keep_fitted(self, skip: Sequence[int] = ()) -> None:
        """The kept codes moved to decode their inputs' cells (and atoms), where that decodes no worse.

        A fitted code is kept when its crystal comes at least as close to the input's composition
        as the unfitted code's and is not empty where that one was not (``"lattice_fitted"``
        counts them), so the fit never costs an atom the check had won. With the atom fit
        (:attr:`RefineSettings.atom_fit`), crystals whose codes passed the check are fitted to
        their atoms too; one whose fitted code fails its check tries half the move
        (``"fit_halved"`` counts those kept), then the cell fit alone, each checked by one more
        decode (``"atoms_fitted"`` counts the crystals that keep an atom fit). Crystals whose
        codes failed the check get the cell fit alone. With a
        budget (``max_cost``) only crystals with room left for each decode are fitted. Fitting
        before the checks instead lost 10 of the first 500 `mp` test crystals
        (benchmarks/RESULTS.md, 2026-12-05). Crystals of ``skip`` (encoder codes fitted before
        their check, :attr:`RefineSettings.fit_encoder_code`) stay as they are.
        """
        skip = set(skip)
        todo = self._with_room([i for i in range(len(self.crystals)) if i not in skip])
        o, iterations = self.o, self.r.lattice_fit
        if todo and self.fits_atoms:
            passed = [i for i in todo if self.off[i] == (0, 0)]  # a code short of an atom has no sink to fit
            if passed:
                failed = self._fit_atoms(passed, iterations)
                todo = [i for i in todo if i not in passed or i in failed]
        if todo:  # the cell alone
            self._keep_if_no_worse(todo, fit_lattice(o.model, self.z[todo], self.target[todo], iterations))

    @property
    def fits_atoms(self) -> bool:
        """Whether the last fit fits atoms too (:attr:`RefineSettings.atom_fit`, a periodic model with polishing)."""
        return bool(self.r.atom_fit and self.o.polish_shells is not None and self.o.model.frame.periodic)

    def _fit_atoms(self, idx: list[int], iterations: int) -> list[int]:
        """The atom fit of crystals ``idx``, then half its move where it fails; returns the crystals neither kept.

        Crystals whose budget has room for a decode but not for the fit are returned unfitted;
        those left without room for a decode after a failed fit are not returned.
        """
        o = self.o
        radii, gate = o.polish_shells
        work = self._fit_work(iterations)
        skipped: list[int] = []  # room for a decode but not for the fit too: the cell fit alone
        if self.r.max_cost > 0:
            room = [i for i in idx if self.r.max_cost * self.unit[i] - self.spent[i] >= work[i] + self.last_decode[i]]
            skipped, idx = [i for i in idx if i not in room], room
            self.counts["budget_cut"] += len(skipped)
        if not idx:
            return skipped
        sub = self.batch
        if len(idx) < len(self.crystals):
            sub = CrystalBatch.from_crystals([self.crystals[i] for i in idx], o.vocab).to(o.device)
        fitted = fit_atoms_and_cell(o.model, self.z[idx], sub, radii, gate, iterations, self.r.atom_fit_directions)
        self.spent[idx] += work[idx]
        failed = self._with_room(self._keep_if_no_worse(idx, fitted, closer=True))
        if failed:
            rows = [idx.index(i) for i in failed]
            half = fit_lattice(o.model, 0.5 * (self.z[failed] + fitted[rows]), self.target[failed], iterations)
            still = self._with_room(self._keep_if_no_worse(failed, half, closer=True))
            self.counts["fit_halved"] = self.counts.get("fit_halved", 0) + len(failed) - len(still)
            failed = still
        self.counts["atoms_fitted"] = self.counts.get("atoms_fitted", 0) + len(idx) - len(failed)
        self.atom_fitted.update(set(idx) - set(failed))
        return failed + skipped

    def _fit_work(self, iterations: int) -> np.ndarray:
        """Field queries of each crystal's atom fit ``[B]``.

        Per iteration, one forward and three backward passes over the shell queries of every atom
        and the free points.
        """
        queries = self.n_atoms * len(self.o.polish_shells[0]) * self.r.atom_fit_directions + fit.FREE_GRID**3
        return iterations * (1.0 + 3 * BACKWARD_FACTOR) * queries

    def _step_cost(self, settings: RefineSettings) -> np.ndarray:
        """Field queries of one refinement step of each crystal ``[B]`` with ``settings``' solver."""
        return self.step_cost * (GAUSS_NEWTON_STEP_FACTOR if settings.solver == "gauss_newton" else 1.0)

    def _with_room(self, idx: list[int]) -> list[int]:
        """Crystals of ``idx`` with room in the budget for one more decode (all without a budget)."""
        if self.r.max_cost <= 0:
            return idx
        room = [i for i in idx if self.r.max_cost * self.unit[i] - self.spent[i] >= self.last_decode[i]]
        self.counts["budget_cut"] += len(idx) - len(room)
        return room

    def _keep_if_no_worse(self, idx: list[int], fitted: torch.Tensor, closer: bool = False) -> list[int]:
        """Decode ``fitted`` codes of crystals ``idx`` and keep each that decodes no worse; returns the others.

        No worse: as close to the input's composition, and not empty where the kept crystal was
        not; with ``closer`` also with its atoms no farther from the input's on average
        (:func:`atom_deviations`).
        """
        trial, cost = self._decode(fitted, idx)
        if closer:  # all crystals at once: one batched distance computation for each side
            inputs, frame = [self.crystals[i] for i in idx], self.o.model.frame
            farther = atom_deviations(inputs, trial, frame) > atom_deviations(
                inputs, [self.decoded[i] for i in idx], frame
            )
        failed = []
        for j, (i, t) in enumerate(zip(idx, trial)):
            self.spent[i] += cost[j]
            no_worse = composition_distance(composition(t), self.want[i]) <= self.off[i]
            no_worse = no_worse and (t.n_atoms > 0 or self.decoded[i].n_atoms == 0)
            if no_worse and closer:
                no_worse = not farther[j]
            if no_worse:
                self.z[i], self.decoded[i] = fitted[j], t
                self.counts["lattice_fitted"] = self.counts.get("lattice_fitted", 0) + 1
            else:
                failed.append(i)
        return failed

    def _refine(self, todo: list[int], start: torch.Tensor, settings: RefineSettings, first: bool) -> list[int]:
        """Refine the codes of crystals ``todo`` from ``start`` ``[B, D]``, decode them and keep the closest.

        Each crystal takes as many of ``settings.steps`` as its budget leaves room for, with the
        decode that checks them (in whole quanta; none below one quantum). Returns the crystals
        that were refined.
        """
        r = self.r
        step_cost = self._step_cost(settings)
        groups: dict[int, list[int]] = {}
        for i in todo:
            steps = settings.steps
            if r.max_cost > 0:
                # room for the steps, the decode that checks them and the lattice fit's own check
                checks = 2 if r.lattice_fit else 1
                room = r.max_cost * self.unit[i] - self.spent[i] - checks * self.last_decode[i]
                fits = int(max(room, 0.0) // step_cost[i])
                if fits < steps:
                    self.counts["budget_cut"] += 1
                    steps = (fits // BUDGET_STEP_QUANTUM) * BUDGET_STEP_QUANTUM
            if steps >= min(BUDGET_STEP_QUANTUM, settings.steps):
                groups.setdefault(steps, []).append(i)
        done: list[int] = []
        for steps, idx in sorted(groups.items()):
            sub = CrystalBatch.from_crystals([self.crystals[i] for i in idx], self.o.vocab).to(self.o.device)
            zk = refine_latents(
                self.o.model,
                sub,
                start[idx],
                self.o.train_cfg,
                replace(settings, steps=steps),
                self.o.bbox,
                None if first else self._weights(idx, sub),
            )
            self.spent[idx] += steps * step_cost[idx]
            self._try(idx, zk, first=first)
            done.extend(idx)
        return done

    def _try(self, idx: list[int], z: torch.Tensor, first: bool) -> None:
        """Decode codes ``z`` of crystals ``idx``; keep each where its crystal comes closer to the input's.

        A first refinement replaces the encoder's code also where it comes only as close (it
        has been refined on the crystal's own field); a restart only where it comes closer (the
        first of equally close codes stays).
        """
        out, cost = self._decode(z, idx)
        if self.unit is None:  # the first decode of every crystal of the chunk
            self.unit = np.maximum(cost, 1.0)
        self.z_last[idx] = z
        for j, i in enumerate(idx):
            self.spent[i] += cost[j]
            self.last_decode[i] = max(cost[j], 1.0)
            distance = composition_distance(composition(out[j]), self.want[i])
            if self.off[i] is None or distance < self.off[i] or (first and distance == self.off[i]):
                self.z[i], self.decoded[i], self.off[i] = z[j], out[j], distance
        if self.missed is not None:  # only crystals still off are refined again with these weights
            off = [j for j, i in enumerate(idx) if self.off[i] != (0, 0)]
            inputs = [self.crystals[idx[j]] for j in off]
            missed_now = missed_atoms(inputs, [out[j] for j in off], self.o.model.frame.name)
            for j, now in zip(off, missed_now):
                i = idx[j]
                self.missed[i] = self.missed[i] | now if i in self.missed else now

    def _decode(self, z: torch.Tensor, idx: list[int]) -> tuple[list[Crystal], np.ndarray]:
        """Crystals decoded from codes ``z`` of crystals ``idx``, and each one's field queries ``[len(idx)]``."""
        queries: list[int] = []
        out = self.o.decode(z, ids=[self.ids[i] for i in idx], field_queries=queries)
        return out, np.asarray(queries, dtype=np.float64)

    def _weights(self, idx: list[int], batch: CrystalBatch) -> torch.Tensor | None:
        """``[len(idx), N]`` query weights: the input atoms missed so far weigh ``missed_atom_weight`` times more."""
        if self.missed is None:
            return None
        weights = torch.ones(batch.mask.shape, device=self.o.device)
        for j, i in enumerate(idx):
            extra = torch.as_tensor(self.missed.get(i, np.zeros(0, dtype=bool)), dtype=weights.dtype)
            weights[j, : len(extra)] += (self.r.missed_atom_weight - 1) * extra.to(self.o.device)
        return weights
