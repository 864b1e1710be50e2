"""Checked codes: each refined latent code is decoded and refined again while its composition is off.

A code passes when its decoded crystal has its input's composition (atoms of each element in
the cell). Codes that fail are refined again, up to :attr:`RefineSettings.restarts` times, with
other query draws and the queries around the input atoms their decodes missed weighted up
(:func:`nesf.metrics.paper.missed_atoms`); where no restart passes, the code whose crystal comes
closest to the input's composition is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from nesf.data.batch import CrystalBatch
from nesf.data.crystal import Crystal
from nesf.data.vocab import SpeciesVocab
from nesf.encoding.refine import RefineSettings, fit_lattice, refine_latents
from nesf.metrics.paper import missed_atoms
from nesf.models.autoencoder import NeSFModel
from nesf.models.config import TrainConfig

#: Decodes codes ``[B, D]`` to crystals (in the network's setting), named by ``ids``.
Decoder = Callable[..., list[Crystal]]


@dataclass(frozen=True)
class CheckedEncoder:
    """Encodes crystals to refined latent codes, checked by decoding as :attr:`refinement` says.

    Attributes:
        model: the trained network.
        vocab: its species vocabulary.
        train_cfg: its training configuration (query sampling and loss weights of the refinement).
        refinement: how codes are refined and how often a failing code is refined again.
        decode: the model's decoder, called as ``decode(z, ids=ids)``.
        bbox: paper frame: the ``[2, 3]`` particle domain (Angstrom); None in the periodic frame.
        device: where the network computes.
    """

    model: NeSFModel
    vocab: SpeciesVocab
    train_cfg: TrainConfig
    refinement: RefineSettings
    decode: Decoder
    bbox: np.ndarray | None
    device: torch.device

    @torch.no_grad()
    def encode(
        self, crystals: Sequence[Crystal], batch_size: int = 256, progress: bool = False
    ) -> tuple[torch.Tensor, list[Crystal] | None, dict[str, int]]:
        """Codes ``[B, D]`` of crystals in the network's setting, their decoded crystals when checked, and counts.

        The decoded crystals (in the network's setting) come back only when the refinement
        restarts, which decodes every code; otherwise None. The counts say how many crystals
        were encoded, how many were refined again, and how many of those came back with their
        input's composition.
        """
        r = self.refinement
        checked = bool(r.steps and r.restarts)
        codes: list[torch.Tensor] = []
        decoded: list[Crystal] = []
        counts = {"crystals": len(crystals), "restarted": 0, "recovered": 0}
        step = min(batch_size, r.batch_size) if r.steps else batch_size
        desc = "encode + check" if checked else "encode"
        with tqdm(total=len(crystals), desc=desc, unit="crystal", disable=not progress) as bar:
            for start in range(0, len(crystals), step):
                chunk = crystals[start : start + step]
                batch = CrystalBatch.from_crystals(chunk, self.vocab).to(self.device)
                z0, _, _ = self.model.encode(batch.cart, batch.frac, batch.species, batch.mask, batch.lattice_params)
                if checked and r.check_encoder:
                    z, chunk_decoded = self._encoder_first(chunk, z0, counts)
                    decoded.extend(chunk_decoded)
                else:
                    z = refine_latents(self.model, batch, z0, self.train_cfg, r, self.bbox)
                    if checked:
                        z, chunk_decoded = self._restart(chunk, z0, z, counts)
                        decoded.extend(chunk_decoded)
                if r.steps and r.lattice_fit:
                    target = self.model.normalize_lattice(batch.lattice_params)
                    fitted = fit_lattice(self.model, z, target, r.lattice_fit)
                    if checked:
                        start_at = len(decoded) - len(chunk)
                        z, decoded[start_at:] = self._keep_fitted(chunk, z, fitted, decoded[start_at:], counts)
                    else:
                        z = fitted
                codes.append(z)
                bar.update(len(chunk))
        return torch.cat(codes), (decoded if checked else None), counts

    def _encoder_first(
        self, crystals: Sequence[Crystal], z0: torch.Tensor, counts: dict[str, int]
    ) -> tuple[torch.Tensor, list[Crystal]]:
        """Encoder codes ``z0 [B, D]`` decoded first; only those whose crystal misses its composition are refined.

        The crystals whose encoder code already decodes to their input's composition keep it
        (``counts["encoder_kept"]``); the others are refined and checked as without this step.
        Each crystal's code depends on that crystal alone, so the subset changes nothing else.

        Returns:
            The checked codes ``[B, D]`` and their decoded crystals.
        """
        decoded = self.decode(z0, ids=[c.id for c in crystals])
        todo = [i for i, (c, d) in enumerate(zip(crystals, decoded)) if composition(d) != composition(c)]
        counts["encoder_kept"] = counts.get("encoder_kept", 0) + len(crystals) - len(todo)
        z = z0.clone()
        if todo:
            sub = [crystals[i] for i in todo]
            batch = CrystalBatch.from_crystals(sub, self.vocab).to(self.device)
            zr = refine_latents(self.model, batch, z0[todo], self.train_cfg, self.refinement, self.bbox)
            zr, dr = self._restart(sub, z0[todo], zr, counts)
            z[todo] = zr
            for j, i in enumerate(todo):
                decoded[i] = dr[j]
        return z, decoded

    def _keep_fitted(
        self,
        crystals: Sequence[Crystal],
        z: torch.Tensor,
        fitted: torch.Tensor,
        decoded: list[Crystal],
        counts: dict[str, int],
    ) -> tuple[torch.Tensor, list[Crystal]]:
        """Checked codes ``z [B, D]`` replaced by their lattice-fitted versions where those decode no worse.

        A fitted code is kept when its crystal comes at least as close to the input's
        composition as the checked code's and is not empty where that one was not
        (``counts["lattice_fitted"]`` counts them), so the fit never costs an atom the check
        had won.

        Returns:
            The codes ``[B, D]`` and their decoded crystals.
        """
        trial = self.decode(fitted, ids=[c.id for c in crystals])
        z = z.clone()
        out = list(decoded)
        kept = 0
        for i, (c, d, t) in enumerate(zip(crystals, decoded, trial)):
            want = composition(c)
            no_worse = composition_distance(composition(t), want) <= composition_distance(composition(d), want)
            if no_worse and (t.n_atoms > 0 or d.n_atoms == 0):
                z[i], out[i] = fitted[i], t
                kept += 1
        counts["lattice_fitted"] = counts.get("lattice_fitted", 0) + kept
        return z, out

    def _restart(
        self, crystals: Sequence[Crystal], z0: torch.Tensor, z: torch.Tensor, counts: dict[str, int]
    ) -> tuple[torch.Tensor, list[Crystal]]:
        """Refined codes ``z [B, D]`` checked by decoding, refined again where they fail.

        A code passes when its decoded crystal has its input's composition (atoms of each
        element in the cell). Each restart starts from the code kept so far (or the encoder's
        code ``z0``, as :attr:`refinement` says) and weighs up the queries around the input
        atoms that an earlier decode of that crystal missed. Where no restart passes, the code
        whose crystal comes closest is kept: the nearest atom count first, then the fewest atoms
        of the wrong element (the earliest of equally close ones). Crystals holding an element
        the model never learned to predict cannot pass and are not restarted. ``counts`` gains
        the crystals refined again (``"restarted"``) and those that then passed (``"recovered"``).

        Returns:
            The checked codes ``[B, D]`` and their decoded crystals.
        """
        r = self.refinement
        frame = self.model.frame.name
        ids = [c.id for c in crystals]
        decoded = self.decode(z, ids=ids)
        want = [composition(c) for c in crystals]
        unseen = getattr(self.model, "unseen_species", None)
        never = set() if unseen is None else {n for n, u in zip(self.vocab.numbers, unseen.tolist()) if u}
        todo = [
            i
            for i, d in enumerate(decoded)
            if composition(d) != want[i] and not never.intersection(map(int, crystals[i].numbers))
        ]
        counts["restarted"] += len(todo)
        z = z.clone()
        # how far each kept crystal is from its input's composition
        off = {i: composition_distance(composition(decoded[i]), want[i]) for i in todo}
        stale = dict.fromkeys(todo, 0)  # restarts in a row that came no closer
        # the input atoms each crystal's decodes have missed so far (their queries weigh more)
        weigh = r.missed_atom_weight != 1
        missed = {}
        if weigh:
            first = missed_atoms([crystals[i] for i in todo], [decoded[i] for i in todo], frame)
            missed = dict(zip(todo, first))
        for k in range(1, r.restarts + 1):
            if not todo:
                break
            batch = CrystalBatch.from_crystals([crystals[i] for i in todo], self.vocab).to(self.device)
            weights = torch.ones(batch.mask.shape, device=self.device) if weigh else None
            for j, i in enumerate(todo if weigh else ()):
                extra = torch.as_tensor(missed[i], dtype=weights.dtype, device=self.device)
                weights[j, : len(extra)] += (r.missed_atom_weight - 1) * extra
            start = z0[todo] if r.restart_from == "encoder" else z[todo]
            zk = refine_latents(self.model, batch, start, self.train_cfg, r.restart(k), self.bbox, weights)
            dk = self.decode(zk, ids=[ids[i] for i in todo])
            missed_now = missed_atoms([crystals[i] for i in todo], dk, frame) if weigh else []
            still = []
            for j, i in enumerate(todo):
                distance = composition_distance(composition(dk[j]), want[i])
                stale[i] = 0 if distance < off[i] else stale[i] + 1
                if distance < off[i]:  # the closest so far (the first of equally close ones stays)
                    z[i], decoded[i], off[i] = zk[j], dk[j], distance
                if weigh:
                    missed[i] |= missed_now[j]
                if distance == (0, 0):
                    counts["recovered"] += 1
                elif not r.restart_patience or stale[i] < r.restart_patience:
                    still.append(i)
            todo = still
        return z, decoded


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
