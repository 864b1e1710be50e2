"""What a training checkpoint carries besides the weights, and how a run takes it up again.

An initial model's species layers remapped to a new vocabulary (fine-tuning), the optimiser
and loop counters of a run (resuming), and its learning curve as CSV.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch

from nesf.data.vocab import SpeciesVocab
from nesf.io.writers import atomic_write

#: Parameters indexed by species class, and the axis that is: the encoder's one-hot input
#: layer and the species decoder's output layer.
SPECIES_AXES = {"encoder.spec_mlp.0.weight": 1, "species_decoder.out.weight": 0, "species_decoder.out.bias": 0}


def remap_species(state: dict, old: SpeciesVocab, new: SpeciesVocab) -> dict:
    """A state dict for vocabulary ``new`` from one trained with ``old``.

    Species-indexed rows / columns of elements in both are copied; elements new to the model get
    zero input weights and an output bias below every trained one, so the model keeps predicting
    the elements it knows until training teaches it the new ones.
    """
    if old == new:
        return dict(state)
    out = dict(state)
    shared = [z for z in new.numbers if z in old.numbers]
    src = torch.as_tensor(old.encode(shared), dtype=torch.long)
    dst = torch.as_tensor(new.encode(shared), dtype=torch.long)
    for name, axis in SPECIES_AXES.items():
        if name not in state:
            continue
        value = state[name]
        shape = list(value.shape)
        shape[axis] = len(new)
        fresh = torch.zeros(shape, dtype=value.dtype)
        if name.endswith("bias"):
            fresh.fill_(float(value.min()) - 5.0)
        elif axis == 0:  # output weights of new elements: small random rows
            fresh.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(0))
        fresh.index_copy_(axis, dst, value.index_select(axis, src))
        out[name] = fresh
    return out


def training_state(trainer) -> dict:  # noqa: ANN001 - any trainer with the attributes below
    """Optimiser and loop counters of a trainer: the ``"training"`` part of a checkpoint."""
    state = {
        "optimizer": trainer.optimizer.state_dict(),
        "epoch": trainer.epoch,
        "step_in_epoch": trainer.step_in_epoch,
        "global_step": trainer.global_step,
        "best_val": trainer.best_val,
        "elapsed": trainer.elapsed,
    }
    if getattr(trainer, "ema", None) is not None:  # the checkpoint's weights are the average; these the raw ones
        state["raw_state_dict"] = trainer.model.state_dict()
    return state


def restore_training_state(trainer, ck: dict) -> None:  # noqa: ANN001
    """Load weights, optimiser, loop counters and history of checkpoint ``ck`` into ``trainer``."""
    tr = ck["training"]
    if getattr(trainer, "ema", None) is not None:
        if "raw_state_dict" not in tr:
            raise ValueError(
                "this checkpoint was trained without a moving average of the weights; cannot resume with one"
            )
        trainer.model.load_state_dict(tr["raw_state_dict"])
        trainer.ema = {k: v.detach().clone() for k, v in ck["state_dict"].items()}
    else:  # raw weights where the run kept an average too
        trainer.model.load_state_dict(tr.get("raw_state_dict", ck["state_dict"]))
    trainer.optimizer.load_state_dict(tr["optimizer"])
    trainer.epoch = int(tr["epoch"])
    trainer.step_in_epoch = int(tr["step_in_epoch"])
    trainer.global_step = int(tr["global_step"])
    trainer.best_val = float(tr["best_val"])
    trainer.elapsed = float(tr["elapsed"])
    trainer.history = list(ck.get("history", []))


def write_history_csv(path: Path, history: Sequence[dict]) -> Path:
    """The learning curve as CSV (one row per validation), atomically."""
    keys = list(history[0].keys())

    def write(p: Path) -> None:
        with open(p, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            for row in history:
                w.writerow(row)

    return atomic_write(path, write)
