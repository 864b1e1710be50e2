"""Training: data preparation, the step loop, validation, checkpoints, budgets, resume, DDP.

Joining a DDP process group is :mod:`nesf.training.distributed`; what a checkpoint carries
besides the weights (species remapping, optimiser and loop state, history) is :mod:`nesf.training.state`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from nesf._memory import keep_freed_memory
from nesf.data.batch import CrystalBatch, bounding_box
from nesf.data.crystal import Crystal
from nesf.data.domain import Domain
from nesf.data.vocab import SpeciesVocab
from nesf.fields.frame import get_frame
from nesf.models.autoencoder import NeSFModel
from nesf.models.config import ModelConfig, TrainConfig, config_from_dict, config_to_dict
from nesf.training.checkpoint import load_checkpoint, remove_stale_temporaries, save_checkpoint
from nesf.training.distributed import init_distributed
from nesf.training.objective import NeSFObjective
from nesf.training.sampling import QuerySampler
from nesf.training.state import remap_species, restore_training_state, training_state, write_history_csv
from nesf.viz.curves import plot_learning_curve


def lattice_normalization(crystals: Sequence[Crystal], normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std ``[6]`` of lattice parameters (A, rad); zeros and ones when not normalising."""
    if not normalize:
        return torch.zeros(6), torch.ones(6)
    params = np.stack([c.lattice_params for c in crystals])
    mean = params.mean(axis=0)
    std = np.maximum(params.std(axis=0), np.array([0.1, 0.1, 0.1, 0.02, 0.02, 0.02]))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


ALL_ELEMENTS = tuple(range(1, 95))  # H..Pu

#: Options that may extend an initial model (``--init``): the latent at every layer (its new
#: parameters start at zero, so the extended model computes exactly what the initial one did)
#: and the primitive-cell reduction of the canonical setting (a change of the crystals it sees).
EXTENSIONS = {"latent_every_layer", "primitive_cell"}


def make_vocab(crystals: Sequence[Crystal], kind: str = "data") -> SpeciesVocab:
    """A species vocabulary: ``"data"`` (the elements of ``crystals``) or ``"all"`` (H to Pu).

    With ``"all"`` a trained model accepts crystals with elements it never saw (their species
    cannot have been learned, but their positions can).
    """
    if kind == "data":
        return SpeciesVocab.from_crystals(crystals)
    if kind == "all":
        return SpeciesVocab(tuple(sorted(set(ALL_ELEMENTS) | set(SpeciesVocab.from_crystals(crystals).numbers))))
    raise ValueError(f"vocabulary must be 'data' or 'all', got {kind!r}")


@dataclass
class TrainResult:
    """What a training run produced."""

    out_dir: Path
    epochs: int
    steps: int
    best_val: float
    history: list[dict] = field(default_factory=list)


class Trainer:
    """Trains a :class:`NeSFModel` on crystals; see :func:`train` for the arguments."""

    def __init__(
        self,
        train: Sequence[Crystal],
        val: Sequence[Crystal],
        out_dir: str | Path,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = True,
        init: str | Path | None = None,
        vocab: str = "data",
        setting: str | None = None,
        extend: dict | None = None,
        resume: str | Path | None = None,
    ) -> None:
        keep_freed_memory()
        self.out_dir = Path(out_dir)
        if init is not None and resume is not None:
            raise ValueError("init and resume exclude each other (resume continues its own run)")
        init_ck = load_checkpoint(init, map_location="cpu") if init is not None else None
        resume_ck = load_checkpoint(resume, map_location="cpu") if resume is not None else None
        if init_ck is not None and init_ck.get("kind", "nesf") != "nesf":
            raise ValueError(f"{init}: a {init_ck['kind']} checkpoint cannot initialise a NeSF model")
        if resume_ck is not None:  # a resumed run keeps its own architecture and training settings
            model_cfg = config_from_dict(ModelConfig, resume_ck["model_config"])
            train_cfg = config_from_dict(TrainConfig, resume_ck["train_config"])
        if init_ck is not None:  # fine-tuning: the architecture is the initial model's
            model_cfg = config_from_dict(ModelConfig, init_ck["model_config"])
        if init_ck is not None and extend:
            unknown = set(extend) - EXTENSIONS
            if unknown:
                raise ValueError(f"--init: {', '.join(sorted(unknown))} cannot extend an initial model")
            model_cfg = replace(model_cfg, **extend)
        if setting is not None and setting != model_cfg.setting:
            # a model brought to the canonical setting now uses the current origin rule
            model_cfg = replace(model_cfg, setting=setting, canonical_origin="roomiest")
        self.model_cfg = model_cfg
        self.cfg = train_cfg
        self.seed = seed
        self.dist = init_distributed(device)
        if device.startswith("cuda") and self.dist.world > 1:
            device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(device)
        self.device = torch.device(device)
        self.progress = progress and self.dist.main
        self.frame = get_frame(model_cfg.frame)
        if train_cfg.origin_shift and not self.frame.periodic:
            raise ValueError("origin shifts need the periodic frame (the paper frame's box is not periodic)")
        if train_cfg.origin_shift and model_cfg.setting == "canonical":
            raise ValueError("origin shifts and the canonical setting exclude each other (it fixes the origin)")
        how = (model_cfg.frame, model_cfg.setting, model_cfg.canonical_origin, model_cfg.primitive_cell)
        train = self._prepared(train, "training", how)
        val = self._prepared(val, "validation", how)
        if not train or not val:
            raise ValueError("training needs at least one training and one validation crystal")
        self.vocab = make_vocab(list(train), vocab)
        if resume_ck is not None:  # the run's own species classes (it may have been started with --vocab all)
            self.vocab = SpeciesVocab.from_dict(resume_ck["vocab"])
        self.domain = Domain.from_crystals(train)
        self.trained_numbers = list(SpeciesVocab.from_crystals(train).numbers)
        if init_ck is not None:
            start = SpeciesVocab.from_dict(init_ck["vocab"])
            if vocab == "data" and set(self.vocab.numbers) <= set(start.numbers):
                self.vocab = start  # keep the species layers of the initial model
        # a fine-tuned model has also learned what its initial model was trained on, and a
        # resumed run keeps what its first part inherited
        lineage = init_ck if init_ck is not None else resume_ck
        if lineage is not None:
            inherited = set(lineage.get("trained_numbers") or ()) & set(self.vocab.numbers)
            self.trained_numbers = sorted(set(self.trained_numbers) | inherited)
            if init_ck is not None and init_ck.get("domain"):
                self.domain = self.domain.merged(Domain.from_dict(init_ck["domain"]))
        val = self._drop_unseen_elements(set(self.trained_numbers), val)
        self.bbox = None if self.frame.periodic else bounding_box(train, margin=train_cfg.global_spacing)
        mean, std = lattice_normalization(train, train_cfg.normalize_lattice)
        torch.manual_seed(seed)
        self.model = NeSFModel(model_cfg, len(self.vocab), mean, std).to(self.device)
        self.init_from = None
        if init_ck is not None:
            state = remap_species(init_ck["state_dict"], SpeciesVocab.from_dict(init_ck["vocab"]), self.vocab)
            self.init_from = {"checkpoint": Path(init).name, **self._load_matching(state)}
        self.objective = NeSFObjective(self.model, train_cfg)
        self.train_data = CrystalBatch.from_crystals(train, self.vocab)
        self.val_data = CrystalBatch.from_crystals(val, self.vocab)
        if self.frame.periodic:  # LLL reduction once per crystal, not per step
            _ = self.train_data.geometry, self.val_data.geometry
        self.sampler = QuerySampler(train_cfg, self.frame, self.bbox)
        self.trainable = self.model.trainable_parameters(train_cfg.train_only)
        self.optimizer = torch.optim.Adam(self.trainable, lr=train_cfg.lr)
        #: moving average of the floating-point weights (name -> tensor), or None when off
        self.ema: dict[str, torch.Tensor] | None = (
            {k: v.detach().clone() for k, v in self.model.state_dict().items()} if train_cfg.ema_decay > 0 else None
        )
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.best_val = math.inf
        self.history: list[dict] = []
        self.elapsed = 0.0
        if self.dist.world > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.objective, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        else:
            self.ddp = None
        if resume is not None:
            self.resume_from(resume)

    def _prepared(self, crystals: Sequence[Crystal], role: str, how: tuple[str, str, str, bool]) -> list[Crystal]:
        """The crystals in the model's setting; says so when it has to bring them there.

        Bringing tens of thousands of crystals to the canonical (primitive) setting takes many
        minutes; ``nesf prepare`` does it once, in parallel, for every later run.
        """
        from nesf.data.prepared import prepare_set, setting_key

        key = setting_key(*how)
        if all(c.info.get("prepared") == key for c in crystals):
            return list(crystals)
        given = {str(c.info.get("prepared")) for c in crystals if c.info.get("prepared")}
        if self.dist.main and (given or len(crystals) >= 1000):  # a set prepared for another setting, or a large one
            was = f" (prepared in setting {', '.join(sorted(given))})" if given else ""
            print(
                f"{role}: bringing {len(crystals)} crystals{was} to the model's setting {key}; "
                f"'nesf prepare --origin {how[2]}{' --primitive' if how[3] else ''}' does this once for every run"
            )
        return prepare_set(crystals, *how, progress=self.progress and len(crystals) >= 1000)

    def _drop_unseen_elements(self, seen: set[int], val: Sequence[Crystal]) -> list[Crystal]:
        """Validation crystals with elements absent from the training data are dropped, and said so.

        ``seen``: the atomic numbers of the training data (and, when fine-tuning, of the initial
        model's). An element only in validation cannot be learned, and its crystals would only
        measure that.
        """
        kept = [c for c in val if {int(z) for z in c.numbers} <= seen]
        if len(kept) < len(val) and self.dist.main:
            from ase.data import chemical_symbols

            extra = sorted({int(z) for c in val for z in c.numbers} - seen)
            names = ", ".join(chemical_symbols[z] for z in extra)
            print(
                f"validation: dropped {len(val) - len(kept)} of {len(val)} crystals holding elements absent "
                f"from the training data ({names})"
            )
        if not kept:
            raise ValueError("no validation crystal is left: every one holds an element absent from training")
        return kept

    def _load_matching(self, state: dict) -> dict:
        """Copy the parameters of ``state`` whose names and shapes match (lattice normalisation excluded)."""
        own = self.model.state_dict()
        skip = {"lattice_mean", "lattice_std"}
        take = {k: v for k, v in state.items() if k in own and k not in skip and own[k].shape == v.shape}
        self.model.load_state_dict(take, strict=False)
        return {"loaded": len(take), "of": len(own)}

    # ------------------------------------------------------------------ state
    def payload(self, with_training: bool = True) -> dict:
        """Checkpoint content (plain data + tensors only)."""
        data = {
            "model_config": config_to_dict(self.model_cfg),
            "train_config": config_to_dict(self.cfg),
            "vocab": self.vocab.to_dict(),
            "frame": self.frame.name,
            "bbox": None if self.bbox is None else self.bbox.tolist(),
            "state_dict": self.ema if self.ema is not None else self.model.state_dict(),
            "seed": self.seed,
            "trained_numbers": self.trained_numbers,
            "domain": self.domain.to_dict(),
            "init_from": self.init_from,
            "epoch": self.epoch,
            "history": self.history,
        }
        if with_training:
            data["training"] = training_state(self)
        return data

    def resume_from(self, path: str | Path) -> None:
        """Continue exactly where the checkpoint at ``path`` stopped."""
        ck = load_checkpoint(path, map_location=self.device)
        if "training" not in ck:
            raise ValueError(f"{path}: has no training state to resume from")
        if ck["model_config"] != config_to_dict(self.model_cfg):
            raise ValueError(f"{path}: was trained with another model configuration; cannot resume")
        if SpeciesVocab.from_dict(ck["vocab"]) != self.vocab:
            raise ValueError(f"{path}: was trained with another species vocabulary; cannot resume")
        restore_training_state(self, ck)
        # what the run's initial model contributed (elements, domain) stays with the run
        if ck.get("domain"):
            self.domain = Domain.from_dict(ck["domain"])
        self.init_from = ck.get("init_from", self.init_from)

    # ------------------------------------------------------------------ steps
    def _epoch_batches(self, epoch: int) -> list[torch.Tensor]:
        """This process's batches of an epoch (same permutation on every rank, padded to lock-step)."""
        n = len(self.train_data)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * epoch)
        perm = torch.randperm(n, generator=g)
        per_step = self.cfg.batch_size * self.dist.world
        n_steps = max(1, math.ceil(n / per_step))
        perm = perm.repeat(math.ceil(n_steps * per_step / n))[: n_steps * per_step]  # wrap around to fill
        steps = perm.reshape(n_steps, self.dist.world, self.cfg.batch_size)
        return [steps[s, self.dist.rank] for s in range(n_steps)]

    def _step_generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 7_368_787 + 104_729 * step + self.dist.rank)

    def set_learning_rate(self, total_steps: int, time_fraction: float = 0.0) -> float:
        """Apply the schedule's learning rate for the coming step.

        Progress is the fraction of ``total_steps`` done, or of the time budget when that is
        further along; without a time budget the rate is a pure function of the step (resumable).
        """
        progress = max(self.global_step / max(1, total_steps), time_fraction)
        lr = self.cfg.learning_rate(progress, self.epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, index: torch.Tensor) -> dict[str, float]:
        """One optimisation step on crystals ``index``; returns the loss terms."""
        self.objective.train()
        batch = self.train_data.select(index)
        if self.cfg.origin_shift:  # own stream: the query sampling stays as without the shift
            gen = self._step_generator(self.global_step + 1_000_003)
            batch = batch.shift_origin(torch.rand(len(batch), 3, generator=gen, dtype=torch.float64))
        batch = batch.to(self.device)
        samples = self.sampler.sample(batch, self._step_generator(self.global_step))
        torch.manual_seed(self.seed + 31 * self.global_step)  # VAE noise, resumable
        module = self.ddp if self.ddp is not None else self.objective
        loss, terms = module(batch, samples)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        out = {k: float(v) for k, v in terms.items()}
        out["loss"] = float(loss.detach())
        out["queries"] = float(samples.pos_points.shape[0] + samples.spec_points.shape[0])
        return out

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Move the weights' average towards the current weights (buffers are copied)."""
        decay = min(self.cfg.ema_decay, (1.0 + self.global_step) / (10.0 + self.global_step))
        for name, value in self.model.state_dict().items():
            avg = self.ema[name]
            if avg.is_floating_point():
                avg.mul_(decay).add_(value.detach(), alpha=1.0 - decay)
            else:
                avg.copy_(value)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean loss terms over the validation set (fixed sampling seed: comparable across epochs).

        With a moving average of the weights, the average is what is validated.
        """
        if self.ema is not None:
            raw = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.model.load_state_dict(self.ema)
            try:
                return self._validate()
            finally:
                self.model.load_state_dict(raw)
        return self._validate()

    @torch.no_grad()
    def _validate(self) -> dict[str, float]:
        self.objective.eval()
        n = len(self.val_data)
        sums: dict[str, float] = {}
        for k, start in enumerate(range(0, n, self.cfg.batch_size)):
            index = torch.arange(start, min(start + self.cfg.batch_size, n))
            batch = self.val_data.select(index).to(self.device)
            samples = self.sampler.sample(batch, torch.Generator().manual_seed(12345 + k))
            loss, terms = self.objective(batch, samples)
            w = len(index) / n
            for key, v in {"loss": loss, **terms}.items():
                sums[key] = sums.get(key, 0.0) + w * float(v)
        return sums

    # ------------------------------------------------------------------ the run
    def run(
        self, epochs: int | None = None, minutes: float | None = None, save_every_minutes: float = 5.0
    ) -> TrainResult:
        """Train until ``epochs`` (total, counting resumed ones) or ``minutes`` (this run) are used up.

        ``last.pt`` is also written every ``save_every_minutes`` and when the run is interrupted
        (Ctrl-C), so a killed run loses at most that much work.
        """
        try:
            return self._run(epochs, minutes, save_every_minutes)
        except KeyboardInterrupt:
            if self.dist.main and self.global_step > 0:
                save_checkpoint(self.out_dir / "last.pt", self.payload())
            raise

    def _run(self, epochs: int | None, minutes: float | None, save_every_minutes: float) -> TrainResult:
        max_epochs = epochs if epochs is not None else self.cfg.epochs
        last_save = run_start = time.monotonic()
        deadline = time.monotonic() + 60.0 * minutes if minutes else math.inf
        if self.dist.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for stale in remove_stale_temporaries(self.out_dir):
                print(f"removed {stale.name}, a temporary checkpoint file left by an interrupted run")
            budget = f"up to epoch {max_epochs}" + (f" or {minutes:g} minutes, whichever ends first" if minutes else "")
            done = f" (resuming after epoch {self.epoch})" if self.epoch else ""
            print(
                f"training {len(self.train_data)} crystals, validating on {len(self.val_data)}: {budget}{done}; "
                f"{math.ceil(len(self.train_data) / (self.cfg.batch_size * self.dist.world))} steps per epoch"
            )
        stop = False
        while self.epoch < max_epochs and not stop:
            batches = self._epoch_batches(self.epoch)
            sums: dict[str, float] = {}
            count = 0
            t_epoch = time.monotonic()
            bar = tqdm(
                total=len(batches),
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch + 1}/{max_epochs}",
                unit="step",
                disable=not self.progress,
                leave=False,
            )
            while self.step_in_epoch < len(batches):
                t0 = time.monotonic()
                used = (t0 - run_start) / (60.0 * minutes) if minutes else 0.0
                self.set_learning_rate(max_epochs * len(batches), used)
                terms = self.train_step(batches[self.step_in_epoch])
                dt = time.monotonic() - t0
                self.elapsed += dt
                self.step_in_epoch += 1
                self.global_step += 1
                count += 1
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(loss=f"{terms['loss']:.4f}", qps=f"{terms['queries'] * self.dist.world / dt:,.0f}")
                bar.update(1)
                if self.dist.main and time.monotonic() - last_save > 60.0 * save_every_minutes:
                    save_checkpoint(self.out_dir / "last.pt", self.payload())
                    last_save = time.monotonic()
                if self._should_stop(time.monotonic() > deadline):
                    stop = True
                    break
            bar.close()
            epoch_done = self.step_in_epoch >= len(batches)
            if epoch_done:
                self.epoch += 1
                self.step_in_epoch = 0
            self._end_of_period(sums, count, time.monotonic() - t_epoch, epoch_done, len(batches))
        if self.dist.world > 1:
            dist.barrier()
        return TrainResult(self.out_dir, self.epoch, self.global_step, self.best_val, self.history)

    def _should_stop(self, local: bool) -> bool:
        if self.dist.world == 1:
            return local
        flag = torch.tensor([1.0 if local else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def _end_of_period(
        self, sums: dict[str, float], count: int, seconds: float, epoch_done: bool, n_batches: int
    ) -> None:
        """Validate, record, and write checkpoints and curves (main process only)."""
        if self.dist.main and count > 0:
            val = self.validate()
            row = {
                "epoch": self.epoch if epoch_done else self.epoch + self.step_in_epoch / n_batches,
                "step": self.global_step,
                "train_loss": sums["loss"] / count,
                "train_position": sums["position"] / count,
                "train_species": sums["species"] / count,
                "train_lattice": (sums["length"] + sums["angle"]) / count,
                "val_loss": val["loss"],
                "val_position": val["position"],
                "val_species": val["species"],
                "val_lattice": val["length"] + val["angle"],
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": self.elapsed,
                "queries_per_s": sums["queries"] * self.dist.world / max(seconds, 1e-9),
            }
            self.history.append(row)
            improved = val["loss"] < self.best_val
            if improved:
                self.best_val = val["loss"]
            payload = self.payload()
            save_checkpoint(self.out_dir / "last.pt", payload)
            if improved:
                save_checkpoint(self.out_dir / "best.pt", payload)
            write_history_csv(self.out_dir / "history.csv", self.history)
            plot_learning_curve(self.history, self.out_dir / "learning_curve.png")
            warning = overfitting_warning(self.history)
            if warning:
                print(warning)
            if self.progress:
                tqdm.write(
                    f"epoch {row['epoch']:.2f}: train {row['train_loss']:.4f}  val {row['val_loss']:.4f}"
                    f"  (position {val['position']:.4f}, species {val['species']:.4f})"
                    f"  {row['queries_per_s']:,.0f} queries/s" + ("  *best*" if improved else "")
                )
        if self.dist.world > 1:
            dist.barrier()


def overfitting_warning(history: Sequence[dict], patience: int = 3) -> str | None:
    """A line when validation loss rose for ``patience`` validations in a row while training loss fell."""
    if len(history) <= patience:
        return None
    recent = history[-(patience + 1) :]
    val = [h["val_loss"] for h in recent]
    train = [h["train_loss"] for h in recent]
    if all(b > a for a, b in zip(val, val[1:])) and train[-1] < train[0]:
        return (
            f"warning: validation loss rose for {patience} validations in a row ({val[0]:.4f} -> {val[-1]:.4f}) "
            f"while training loss fell ({train[0]:.4f} -> {train[-1]:.4f}): the model may be overfitting; "
            "best.pt keeps the lowest validation loss"
        )
    return None


def train(
    train: Sequence[Crystal],
    val: Sequence[Crystal],
    out_dir: str | Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    epochs: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    resume: bool = False,
    progress: bool = True,
    init: str | Path | None = None,
    vocab: str = "data",
    setting: str | None = None,
    extend: dict | None = None,
) -> TrainResult:
    """Train a NeSF autoencoder.

    Args:
        train: training crystals.
        val: validation crystals (checkpoint selection by validation loss).
        out_dir: folder for ``last.pt``, ``best.pt``, ``history.csv`` and ``learning_curve.png``.
        model_cfg: architecture.
        train_cfg: sampling, loss and optimiser settings.
        epochs: total epochs (default ``train_cfg.epochs``).
        minutes: wall-clock budget of this run.
        seed: random seed (initialisation, shuffling, sampling).
        device: ``"cpu"`` or ``"cuda"``.
        resume: continue from ``out_dir/last.pt``.
        progress: progress bar on stderr.
        init: start from this checkpoint's weights (fine-tuning; its architecture replaces
            ``model_cfg``; its vocabulary is kept when it covers the data and ``vocab`` is
            ``"data"``, else its species layers are remapped to the new vocabulary; fresh
            optimiser and schedule).
        vocab: ``"data"`` (elements of ``train`` + ``val``) or ``"all"`` (H to Pu).
        setting: ``"as_given"`` or ``"canonical"`` cells (see :class:`ModelConfig`); None keeps
            ``model_cfg``'s (or, with ``init``, the initial model's).
        extend: with ``init``, architecture options of :data:`EXTENSIONS` to add to the initial
            model (e.g. ``{"latent_every_layer": True}``).
    """
    trainer = Trainer(
        train,
        val,
        out_dir,
        model_cfg,
        train_cfg,
        seed=seed,
        device=device,
        progress=progress,
        init=init,
        vocab=vocab,
        setting=setting,
        extend=extend,
        resume=Path(out_dir) / "last.pt" if resume else None,
    )
    return trainer.run(epochs=epochs, minutes=minutes)


__all__ = ["Trainer", "TrainResult", "make_vocab", "remap_species", "train"]
