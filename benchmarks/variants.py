"""Named model variants for the ablation scripts: changes on top of the default preset."""

from __future__ import annotations

WIDE = {"position_dims": (384,) * 6, "species_dims": (384,) * 3}

#: name -> (ModelConfig changes, TrainConfig changes) on top of the default preset.
VARIANTS: dict[str, tuple[dict, dict]] = {
    "default": ({}, {}),
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
