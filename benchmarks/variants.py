"""Named model variants for the ablation scripts: changes on top of the default preset.

``default`` is the default preset itself (since 2026-11-30 15:00 batches of 32 from 2e-3; before,
batches of 64 from 1e-3, now ``default_batch64_lr1e-3``); names starting ``default_`` set their
batch size and learning rate (and position loss) on top of it. Every other variant starts from
``plain``: the default preset as it was before the latent tokens, the weights' moving average,
species label smoothing, batches of 32 and the learning rate 2e-3 joined it (2026-11-30), so
that a name means the same model in every row of the ablation table, whatever the default
preset becomes.
"""

from __future__ import annotations

WIDE = {"position_dims": (384,) * 6, "species_dims": (384,) * 3}

#: what turns today's default preset back into the plain one
PLAIN_MODEL = {"latent_tokens": 0}
PLAIN_TRAIN = {"ema_decay": 0.0, "label_smoothing": 0.0, "batch_size": 64, "lr": 1e-3}

#: name -> (ModelConfig changes, TrainConfig changes) on top of ``plain``.
_ON_PLAIN: dict[str, tuple[dict, dict]] = {
    "plain": ({}, {}),
    "as_given": ({"setting": "as_given"}, {}),
    "as_given_shift": ({"setting": "as_given"}, {"origin_shift": True}),
    "latent_every_layer": ({"latent_every_layer": True}, {}),
    "latent_every_layer_lr2e-3": ({"latent_every_layer": True}, {"lr": 2e-3}),
    "structure_factors": ({"structure_factors": True}, {}),
    "wide_decoder": ({"position_dims": (384,) * 4, "species_dims": (384,) * 2}, {}),
    "more_queries": ({}, {"uniform_per_crystal": 512, "local_grid": 3}),
    "batch_32": ({}, {"batch_size": 32}),
    "tokens_8": ({"latent_tokens": 8}, {}),
    "tokens_8_every_layer": ({"latent_tokens": 8, "latent_every_layer": True}, {}),
    "ema_0.999": ({}, {"ema_decay": 0.999}),
    "label_smoothing_0.1": ({}, {"label_smoothing": 0.1}),
    "ema_label_smoothing": ({}, {"ema_decay": 0.999, "label_smoothing": 0.1}),
    "wide_6x384_every_layer": ({**WIDE, "latent_every_layer": True}, {}),
    "tokens_8_wide_every_layer": ({**WIDE, "latent_tokens": 8, "latent_every_layer": True}, {}),
}

#: name -> (ModelConfig changes, TrainConfig changes) on top of today's default preset; each
#: names its batch size and learning rate, so that it means the same run whatever the preset's are.
_ON_DEFAULT: dict[str, tuple[dict, dict]] = {
    "default_batch64_lr1e-3": ({}, {"batch_size": 64, "lr": 1e-3}),
    "default_lr3e-3": ({}, {"batch_size": 64, "lr": 3e-3}),
    "default_batch32_lr2e-3": ({}, {"batch_size": 32, "lr": 2e-3}),
    "default_batch32_lr2e-3_huber0.1": ({}, {"batch_size": 32, "lr": 2e-3, "position_huber": 0.1}),
}

#: name -> (ModelConfig changes, TrainConfig changes) on top of the default preset.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
    **_ON_DEFAULT,
    **{name: ({**PLAIN_MODEL, **m}, {**PLAIN_TRAIN, **t}) for name, (m, t) in _ON_PLAIN.items()},
}
