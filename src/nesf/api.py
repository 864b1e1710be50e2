"""The user-facing model: ``NeSF.load(...)``, ``encode``, ``decode``, ``reconstruct``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from nesf import DEFAULT_MODEL
from nesf._memory import keep_freed_memory
from nesf.data.crystal import Crystal, make_valid_params, params_to_lattice
from nesf.data.domain import Domain
from nesf.data.prepared import prepare_crystals
from nesf.data.readers import from_objects
from nesf.data.setting import SettingTransform, canonical_setting, pin_origin
from nesf.data.vocab import SpeciesVocab
from nesf.encoding.checked import CheckedEncoder
from nesf.encoding.refine import RefineSettings
from nesf.errors import CheckpointError
from nesf.metrics.verdicts import StructureVerdict, make_verdicts
from nesf.models.autoencoder import NeSFModel
from nesf.models.config import ModelConfig, TrainConfig, config_from_dict
from nesf.models.defaults import NEURAL_SETTINGS, decoding_settings, refinement_settings
from nesf.reconstruction.reconstruct import reconstruct
from nesf.reconstruction.settings import ReconstructionSettings
from nesf.reconstruction.symmetry import FinishedOnce, finish_decoded
from nesf.registry import available_models, resolve_model_path, shipped_prior_path  # noqa: F401 - nesf.api's too
from nesf.training.checkpoint import load_checkpoint


def _as_crystals(structures: Any) -> list[Crystal]:
    """Objects, a path, or a list of paths -> crystals."""
    from nesf.data.readers import read_crystals

    if isinstance(structures, (str, Path)):
        return read_crystals(structures)
    if isinstance(structures, (list, tuple)) and structures and all(isinstance(s, (str, Path)) for s in structures):
        return [c for s in structures for c in read_crystals(s)]
    return from_objects(structures)


class NeSF:
    """A trained NeSF autoencoder.

    Args:
        model: the network.
        vocab: its species vocabulary.
        bbox: paper-frame particle domain ``[2, 3]`` (Angstrom), None in the periodic frame.
        settings: reconstruction settings used by :meth:`decode`.
        device: where to compute.
        refinement: how encoded codes are refined on their input's field (default:
            :class:`~nesf.encoding.refine.RefineSettings`; ``steps=0``: the plain encoder).
        train_cfg: the training configuration (query sampling and loss weights of the refinement).
    """

    def __init__(
        self,
        model: NeSFModel,
        vocab: SpeciesVocab,
        bbox: np.ndarray | None = None,
        settings: ReconstructionSettings | None = None,
        device: str | torch.device = "cpu",
        refinement: RefineSettings | None = None,
        train_cfg: TrainConfig | None = None,
    ) -> None:
        keep_freed_memory()
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.vocab = vocab
        self.bbox = None if bbox is None else np.asarray(bbox, dtype=np.float64)
        self.settings = settings or NEURAL_SETTINGS
        #: The reconstruction settings chosen explicitly (:meth:`with_settings`) rather than taken
        #: from the defaults or the checkpoint's ``decoding`` record; :meth:`for_sampling` keeps them.
        self.chosen_settings: frozenset[str] = frozenset()
        self.refinement = refinement or RefineSettings()
        self.train_cfg = train_cfg or TrainConfig()
        self.info: dict[str, Any] = {}
        #: Of the crystals last encoded: how many, how many were refined again, and how many of
        #: those came back with their input's composition (see ``RefineSettings.restarts``).
        self.restart_counts: dict[str, int] = {"crystals": 0, "restarted": 0, "recovered": 0}
        #: What the training data covered (None for checkpoints that predate recording it).
        self.domain: Domain | None = None

    @property
    def frame(self) -> str:
        """``"paper"`` or ``"periodic"``."""
        return self.model.frame.name

    @property
    def latent_dim(self) -> int:
        """Size of the latent code."""
        return self.model.cfg.latent_dim

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path_or_name: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> NeSF:
        """Load a checkpoint file or a shipped model by name (``weights_only=True``; default: the general ``mp``)."""
        path = resolve_model_path(path_or_name)
        ck = load_checkpoint(path, map_location="cpu")
        return cls.from_checkpoint(ck, device=device, source=str(path))

    @classmethod
    def from_checkpoint(cls, ck: dict, device: str | torch.device = "cpu", source: str = "<checkpoint>") -> NeSF:
        """Build from a loaded checkpoint dict."""
        kind = ck.get("kind", "nesf")
        if kind != "nesf":
            raise CheckpointError(
                f"{source}: a {kind} checkpoint, not a NeSF one (the command line opens both kinds; in Python use "
                "nesf.voxel.load_any)"
            )
        try:
            cfg = config_from_dict(ModelConfig, ck["model_config"])
            vocab = SpeciesVocab.from_dict(ck["vocab"])
            model = NeSFModel(cfg, len(vocab))
            model.load_state_dict(ck["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(f"{source}: inconsistent nesf checkpoint: {first}") from None
        bad = [k for k, v in ck["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(
                f"{source}: the weights hold NaN or infinite values ({bad[0]}{' and more' if len(bad) > 1 else ''}): "
                "a diverged training run? Use an earlier checkpoint (best.pt)"
            )
        trained = ck.get("trained_numbers")
        if trained:
            model.unseen_species = torch.tensor([z not in set(trained) for z in vocab.numbers])
        bbox = ck.get("bbox")
        try:
            train_cfg = config_from_dict(TrainConfig, ck["train_config"]) if ck.get("train_config") else None
        except (TypeError, ValueError):
            raise CheckpointError(f"{source}: inconsistent nesf checkpoint: unreadable training settings") from None
        settings = decoding_settings(ck.get("decoding"), source)
        refinement = refinement_settings(ck.get("refinement"), source)
        sampling = dict(ck.get("sampling") or {})
        decoding_settings(sampling, source)  # the same checks as the decoding record
        out = cls(
            model,
            vocab,
            None if bbox is None else np.asarray(bbox),
            settings,
            device=device,
            refinement=refinement,
            train_cfg=train_cfg,
        )
        domain = ck.get("domain")
        if isinstance(domain, dict):
            try:
                out.domain = Domain.from_dict(domain)
            except (KeyError, TypeError, ValueError, IndexError):
                raise CheckpointError(f"{source}: inconsistent nesf checkpoint: unreadable domain record") from None
        out.info = {
            "source": source,
            "epoch": ck.get("epoch"),
            "nesf_version": ck.get("nesf_version"),
            "sha256": ck.get("sha256"),
            "card": dict(ck.get("model_card") or {}),
            "decoding": dict(ck.get("decoding") or {}),
            "refinement": dict(ck.get("refinement") or {}),
            "search_probe": dict(ck.get("search_probe") or {}),
            "sampling": sampling,
        }
        return out

    def field_of(self, crystal: Crystal) -> tuple[Any, Crystal]:
        """The learned structure field of one crystal (in the model's frame), and the crystal it lives on.

        The field is bound to the crystal's cell in the setting the network sees (its canonical
        cell and origin for canonical models): draw it over the returned crystal.
        """
        inner, _ = self.to_model_setting([crystal])
        z = self._encode_in_setting(inner)[0]
        lattice = torch.as_tensor(inner[0].lattice, dtype=torch.float32, device=self.device).unsqueeze(0)
        return self.model.bind(z, lattice), inner[0]

    def check_domain(self, crystals: Sequence[Crystal]) -> list[list[str]]:
        """For each crystal (in the model's frame), the reasons it lies outside the training domain.

        Empty lists for crystals inside it, and for every crystal when the model has no
        recorded domain. Checked in the setting the network sees.
        """
        if self.domain is None:
            return [[] for _ in crystals]
        inner, _ = self.to_model_setting(crystals)
        return [self.domain.check(c) for c in inner]

    @property
    def card(self) -> dict[str, Any]:
        """The model card stored with exported models (data, preset, training, test metrics); may be empty."""
        return self.info.get("card", {})

    # ------------------------------------------------------------------ encode / decode
    @property
    def setting(self) -> str:
        """``"canonical"`` (crystals are brought to one cell and origin before encoding) or ``"as_given"``."""
        return self.model.cfg.setting

    def prepare(self, structures: Any) -> list[Crystal]:
        """Structures in the model's frame, in their own setting.

        ``structures``: pymatgen ``Structure`` / ASE ``Atoms`` / :class:`Crystal` objects (one or
        a list), or a file or folder path (anything :func:`nesf.read_crystals` reads), or a list
        of paths.

        Periodic frame: pymatgen's standard orientation of each cell, atoms wrapped into it. The
        cell and origin stay the input's; :meth:`encode_crystals` and
        :meth:`reconstruct_crystals` take care of the canonical setting. Crystals read from a set
        prepared in the model's own setting (``nesf prepare --model``) are taken as they are.
        """
        crystals = _as_crystals(structures)
        if crystals and all(c.info.get("prepared") == self.setting_key for c in crystals):
            return list(crystals)
        return prepare_crystals(crystals, self.frame)

    @property
    def setting_key(self) -> str:
        """The name of the setting the network sees crystals in (as ``nesf prepare`` records it)."""
        from nesf.data.prepared import setting_key

        cfg = self.model.cfg
        return setting_key(self.frame, cfg.setting, cfg.canonical_origin, cfg.primitive_cell)

    def to_model_setting(self, crystals: Sequence[Crystal]) -> tuple[list[Crystal], list[SettingTransform | None]]:
        """Crystals in the setting the network was trained in, and how to map results back.

        With the canonical setting each crystal is brought to its canonical cell and origin and
        its :class:`SettingTransform` is returned (the identity for crystals of a set prepared in
        that setting); otherwise crystals pass unchanged (transforms None).
        """
        if self.setting != "canonical":
            return list(crystals), [None] * len(crystals)
        cfg, key = self.model.cfg, self.setting_key
        pairs = [
            (c, SettingTransform(np.eye(3, dtype=np.int64), np.zeros(3)))
            if c.info.get("prepared") == key  # already there (a prepared set)
            else canonical_setting(c, cfg.canonical_origin, cfg.primitive_cell)
            for c in crystals
        ]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def encode_crystals(self, crystals: Sequence[Crystal], batch_size: int = 256) -> torch.Tensor:
        """Latent codes ``[B, D]`` of crystals in the model's frame (see :meth:`prepare`).

        Each code is the encoder's, refined on its crystal's own field as :attr:`refinement` says
        (:meth:`with_refinement`; ``steps=0`` keeps the encoder's code), and with restarts checked
        by decoding (:class:`~nesf.encoding.refine.RefineSettings`). The refinement draws its
        queries per crystal, seeded: the same crystal gives the same code, alone or in a file.
        """
        return self._encode_in_setting(self.to_model_setting(crystals)[0], batch_size)[0]

    def _encode_in_setting(
        self, crystals: Sequence[Crystal], batch_size: int = 256, progress: bool = False, finish: Any = None
    ) -> tuple[torch.Tensor, list[Crystal] | None]:
        """Codes ``[B, D]`` of crystals in the network's setting, and their decoded crystals when checked.

        The decoded crystals (in the network's setting, not yet finished: see
        :meth:`finish_crystals`) come back only when the refinement restarts, which decodes every
        code; otherwise None (see :class:`~nesf.encoding.checked.CheckedEncoder`). ``finish``:
        what the space-group check finishes decodes with (default :meth:`finish_crystals`).
        """
        # checks only compare compositions, which finishing (symmetrising, pinning the origin)
        # never changes: they decode raw, and only the crystals kept are finished, once
        decode = partial(self.decode_crystals, exact_cells=self.fits_cells, finish=False)
        r = self.refinement
        s = self.settings
        shells = (s.polish_radii, 0.5 * s.nms_radius) if s.polish_steps else None  # what the atom fit aims at
        finish = finish or partial(self.finish_crystals, exact_cells=self.fits_cells)  # the space-group check reads it
        encoder = CheckedEncoder(
            self.model, self.vocab, self.train_cfg, r, decode, self.bbox, self.device, shells, finish
        )
        codes, decoded, self.restart_counts = encoder.encode(crystals, batch_size, progress)
        return codes, decoded

    def encode(self, structures: Any) -> np.ndarray:
        """Latent codes ``[B, D]`` of pymatgen ``Structure`` / ASE ``Atoms`` objects.

        The codes are refined on their crystals' fields as in :meth:`encode_crystals`.

        Raises:
            UnknownElementError: a structure holds an element outside the model's vocabulary.
        """
        return self.encode_crystals(self.prepare(structures)).cpu().numpy()

    @property
    def fits_cells(self) -> bool:
        """Whether encoding fits each code's decoded cell to its input's (refinement with ``lattice_fit``)."""
        return bool(self.refinement.steps and self.refinement.lattice_fit)

    @torch.no_grad()
    def decode_crystals(
        self,
        latents: np.ndarray | torch.Tensor,
        ids: Sequence[str] | None = None,
        progress: bool = False,
        exact_cells: bool = False,
        finish: bool = True,
        field_queries: list[int] | None = None,
    ) -> list[Crystal]:
        """Crystals decoded from latents ``[B, D]`` with the reconstruction algorithm.

        ``exact_cells``: the codes' cells were fitted to their inputs' (round trips with the
        refinement's lattice fit); only then does symmetrisation refuse snaps that strain the
        cell (``symmetry_max_strain``): a cell decoded from any other code is only about 0.5 %
        right, which the limit would take for a lower symmetry.

        Each is snapped onto the space group found in it when :attr:`settings` say so
        (``symmetrize``; :func:`~nesf.reconstruction.symmetry.finish_decoded`), then, for models
        of the canonical setting, moved so that its atom nearest the origin sits on it
        (``pin_origin``; :func:`~nesf.data.setting.pin_origin`). ``finish=False`` leaves both
        out (:meth:`finish_crystals` applies them later; neither changes a crystal's composition).
        ``field_queries``: a list that receives each crystal's field queries (its share of the
        work; :class:`~nesf.reconstruction.reconstruct.ReconstructedAtoms`).
        """
        z_all = torch.as_tensor(np.asarray(latents) if not isinstance(latents, torch.Tensor) else latents)
        z_all = z_all.to(self.device, torch.float32)
        if z_all.ndim != 2 or z_all.shape[1] != self.latent_dim:
            raise ValueError(f"latents must have shape [B, {self.latent_dim}], got {list(z_all.shape)}")
        ids = list(ids) if ids is not None else [f"decoded-{i}" for i in range(len(z_all))]
        s = self.settings  # the cell-strain limit of symmetrisation is set in finish_crystals
        out: list[Crystal] = []
        with tqdm(total=len(z_all), desc="decode", unit="crystal", disable=not progress) as bar:
            for start in range(0, len(z_all), s.batch_size):
                z = z_all[start : start + s.batch_size]
                params = self.model.decode_lattice(z).double().cpu().numpy()
                lattice = params_to_lattice(make_valid_params(params))
                lat_t = torch.as_tensor(lattice, dtype=torch.float32, device=self.device)
                atoms = reconstruct(self.model.bind(z, lat_t), len(z), s, self.bbox)
                if field_queries is not None:
                    field_queries.extend(a.evaluations for a in atoms)
                info = {"setting": "canonical"} if self.setting == "canonical" else {}
                batch = [
                    Crystal(lattice[i], a.cart, self.vocab.decode(a.species), ids[start + i], dict(info))
                    for i, a in enumerate(atoms)
                ]
                out.extend(self.finish_crystals(batch, exact_cells) if finish else batch)
                bar.update(len(z))
        return out

    def finish_crystals(self, crystals: Sequence[Crystal], exact_cells: bool = False) -> list[Crystal]:
        """Decoded crystals (in the network's setting) symmetrised and origin-pinned as :attr:`settings` say.

        What :meth:`decode_crystals` does after the reconstruction algorithm; ``exact_cells`` as there.
        """
        s = self.settings if exact_cells else replace(self.settings, symmetry_max_strain=0.0)
        out = finish_decoded(crystals, s, periodic=self.frame == "periodic")
        if s.pin_origin and self.setting == "canonical":
            out = [pin_origin(c) for c in out]
        return out

    def decode(self, latents: np.ndarray | torch.Tensor) -> list:
        """Pymatgen ``Structure`` objects decoded from latents ``[B, D]``.

        A latent carries no input setting: models trained in the canonical setting decode
        crystals in their canonical cell and origin.
        """
        return [c.to_pymatgen() for c in self.decode_crystals(latents)]

    def reconstruct_crystals(self, crystals: Sequence[Crystal], progress: bool = False) -> list[Crystal]:
        """Round trip of crystals in the model's frame: encode then decode.

        Each reconstruction is returned in its input's cell and origin (with the canonical
        setting it is decoded in the canonical one and mapped back), so input and output overlay.
        """
        inner, transforms = self.to_model_setting(crystals)
        finish = FinishedOnce(partial(self.finish_crystals, exact_cells=self.fits_cells))
        z, decoded = self._encode_in_setting(inner, progress=progress, finish=finish)
        if decoded is None:
            decoded = self.decode_crystals(
                z, ids=[c.id for c in crystals], progress=progress, exact_cells=self.fits_cells
            )
        else:  # decoded while checking the codes: finished here, once (the space-group check's work reused)
            decoded = finish(decoded)
            decoded = [d if d.id == c.id else replace(d, id=c.id) for c, d in zip(crystals, decoded)]
        return [d if t is None else t.to_input(d) for t, d in zip(transforms, decoded)]

    def reconstruct(self, structures: Any, verdicts: bool = False, match: bool = True) -> Any:
        """Round trip of structures (objects or file paths, see :meth:`prepare`).

        Returns:
            pymatgen ``Structure`` objects in the inputs' cells and origins; with ``verdicts``
            also a list of :class:`nesf.metrics.verdicts.StructureVerdict` (matched, RMSE,
            in-domain and why not; ``match=False`` skips StructureMatcher).
        """
        crystals = self.prepare(structures)
        pred = self.reconstruct_crystals(crystals)
        structures_out = [c.to_pymatgen() for c in pred]
        if not verdicts:
            return structures_out
        return structures_out, self.verdicts(crystals, pred, match=match)

    def verdicts(
        self, crystals: Sequence[Crystal], pred: Sequence[Crystal], match: bool = True, n_jobs: int | None = 1
    ) -> list[StructureVerdict]:
        """Per-crystal verdicts of reconstructions ``pred`` of ``crystals`` (both in the model's frame)."""
        from nesf.metrics.accumulate import crystal_stats, position_errors
        from nesf.metrics.matcher import match_rmse

        rmse = match_rmse(crystals, pred, n_jobs=n_jobs) if match else None
        pos = position_errors(crystal_stats(crystals, pred, self.frame))
        return make_verdicts(crystals, pred, rmse, self.check_domain(crystals), pos)

    # ------------------------------------------------------------------ generation
    def prior(self, prior: Any = None) -> Any:
        """The latent prior to sample from.

        ``prior`` (a :class:`~nesf.generation.prior.LatentPrior` or a prior file), else the one
        shipped with this model, else N(0, I) for a VAE.

        Raises:
            CheckpointError: no prior is given or shipped and the model is not a VAE, or the
                prior was fitted to another model.
        """
        from nesf.generation.prior import LatentPrior, PriorConfig, load_prior

        if isinstance(prior, LatentPrior):
            return prior
        if prior is None:
            shipped = shipped_prior_path(self.info.get("source"))
            if shipped is not None:
                prior = shipped
            elif self.model.cfg.vae:
                return LatentPrior(PriorConfig(latent_dim=self.latent_dim, layers=0)).eval().requires_grad_(False)
            else:
                raise CheckpointError(
                    f"{self.info.get('source', 'this model')}: no latent prior; fit one with 'nesf fit-prior' "
                    "(or train with --vae)"
                )
        loaded, ck = load_prior(prior)
        if ck.get("vocab") != self.vocab.to_dict() or loaded.cfg.latent_dim != self.latent_dim:
            raise CheckpointError(f"{prior}: this prior was fitted to another model (vocabulary or latent size differ)")
        fitted_to, this = (ck.get("model_card") or {}).get("model_sha256"), self.info.get("sha256")
        if fitted_to and this and fitted_to != this:
            raise CheckpointError(
                f"{prior}: this prior was fitted to another version of the model (checkpoint SHA-256 "
                f"{fitted_to[:12]}..., this one {this[:12]}...); fit it again with 'nesf fit-prior'"
            )
        return loaded

    def sample_crystals(
        self,
        n: int,
        seed: int = 0,
        prior: Any = None,
        progress: bool = False,
        temperature: float | None = None,
        n_elements: int | str = "auto",
        max_draws: int | None = None,
        n_atoms: int | str = "auto",
    ) -> list[Crystal]:
        """``n`` new crystals: latent codes drawn from the prior (seeded), decoded (empty ones included).

        ``temperature`` scales the prior's starting noise (below 1: fewer, more typical crystals;
        default: the prior's own, e.g. 0.85 for the shipped ``mp`` prior). ``n_elements``: each
        crystal's number of elements, drawn from the histogram of the prior's training crystals
        where it records one (``"auto"``), fixed (an int), or left to the decodes (``"any"``);
        ``n_atoms`` likewise for the number of atoms per cell (drawn from the prior's make-up
        table where it records one, as the shipped ``perov_5`` prior does); see
        :mod:`nesf.generation.elements` (``max_draws``: codes decoded per crystal at most).
        """
        from nesf.generation.elements import MAX_DRAWS, atoms_spec, sample_matched, target_spec

        if n < 1:
            raise ValueError(f"the number of crystals to sample must be at least 1, got {n}")
        lat = self.prior(prior)
        target = target_spec(None if n_elements is None else str(n_elements), lat.cfg.element_counts)
        atoms = atoms_spec(None if n_atoms is None else str(n_atoms), getattr(lat.cfg, "makeup_counts", None))
        if target is not None or atoms is not None:
            model, draws = self.for_sampling(), max_draws or MAX_DRAWS
            return sample_matched(
                model, lat, n, target, seed, temperature, max_draws=draws, progress=progress, atoms=atoms
            )
        z = lat.sample(n, seed=seed, temperature=temperature)
        ids = [f"sample-{i:05d}" for i in range(n)]
        return self.for_sampling().decode_crystals(z, ids=ids, progress=progress)

    def sample(
        self,
        n: int,
        seed: int = 0,
        prior: Any = None,
        temperature: float | None = None,
        screen: float | None = None,
        n_elements: int | str = "auto",
        n_atoms: int | str = "auto",
    ) -> list:
        """``n`` new crystals as pymatgen ``Structure`` objects (decodes that found no atom are left out).

        ``screen``: keep only crystals whose static CHGNet formation energy is at most this many
        eV/atom (:func:`nesf.relax.screen.screen`, the relax extra); ``n`` crystals are still
        drawn, so fewer come back. ``n_elements``, ``n_atoms``: as :meth:`sample_crystals`.
        """
        drawn = self.sample_crystals(n, seed, prior, temperature=temperature, n_elements=n_elements, n_atoms=n_atoms)
        crystals = [c for c in drawn if c.n_atoms]
        if screen is not None:
            from nesf.relax.potential import require_chgnet
            from nesf.relax.screen import screen as energy_screen

            require_chgnet("NeSF.sample(screen=...)")
            keep, _ = energy_screen(crystals, screen)
            crystals = [c for c, k in zip(crystals, keep) if k]
        return [c.to_pymatgen() for c in crystals]

    # ------------------------------------------------------------------ design
    def predict(self, structures: Any, head: Any, reads: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """A property of structures predicted by a property head.

        Args:
            structures: objects or file paths (see :meth:`prepare`).
            head: a :class:`~nesf.design.head.PropertyHead` (reads latent codes), a
                :class:`~nesf.design.crystal_head.CrystalHead` (reads the crystals' site
                tables), a head file, or the target name of a head shipped for this model
                (``"heat_ref"`` with ``perov_5``).
            reads: for a target name, which shipped head: ``"auto"`` (the crystal head where
                one ships: the better predictor), ``"latent"`` or ``"crystal"``.

        Returns:
            The ensemble's mean and spread (standard deviation over members) ``[N]`` each, in
            the head's units (``head.card["units"]``).

        Raises:
            CheckpointError: no such head, or a latent head fitted to another model.
        """
        from nesf.design.workflow import predict

        return predict(self, structures, head, reads=reads)

    def with_settings(self, **changes: Any) -> NeSF:
        """A copy sharing the network, with other reconstruction settings."""
        other = self._copy(replace(self.settings, **changes), self.refinement)
        other.chosen_settings = self.chosen_settings | frozenset(changes)
        return other

    def with_refinement(self, **changes: Any) -> NeSF:
        """A copy sharing the network, with other latent-refinement settings (``steps=0``: the plain encoder)."""
        return self._copy(self.settings, replace(self.refinement, **changes))

    def _copy(self, settings: ReconstructionSettings, refinement: RefineSettings) -> NeSF:
        other = NeSF(self.model, self.vocab, self.bbox, settings, self.device, refinement, self.train_cfg)
        other.info = dict(self.info)
        other.domain = self.domain
        other.chosen_settings = self.chosen_settings
        return other

    def for_sampling(self) -> NeSF:
        """This model as it decodes free codes (prior samples).

        Polishing and symmetrisation are left out: both were chosen on round trips of real
        crystals, where they help; on 500 ``mp`` prior samples polishing lowered the structural
        validity from 99.8 to 97.0 % (atoms drawn together where a sampled field is vague), and
        symmetrisation snapped noisy cells onto high-symmetry groups (benchmarks/RESULTS.md,
        2026-12-03). A checkpoint's ``sampling`` record (settings chosen on its own samples:
        ``carbon_24``'s and ``perov_5``'s symmetrise them, 2026-12-06) is applied on top. Settings chosen explicitly
        (:meth:`with_settings`, ``--polish-steps``, ``--symmetrize``, ...) are kept as they are.
        """
        wanted = {"polish_steps": 0, "symmetrize": False} | self.info.get("sampling", {})
        off = {
            name: value
            for name, value in wanted.items()
            if name not in self.chosen_settings and getattr(self.settings, name) != value
        }
        if not off:
            return self
        other = self._copy(replace(self.settings, **off), self.refinement)
        return other
