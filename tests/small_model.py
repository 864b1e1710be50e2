"""A tiny model and training configuration for fast tests (shared by several test files)."""

from __future__ import annotations

from nesf.models.config import ModelConfig, TrainConfig

SMALL_MODEL = dict(
    latent_dim=16,
    encoder_atom_dims=(16, 16),
    encoder_shared_dims=(32,),
    encoder_head_dims=(32,),
    position_dims=(32, 32),
    species_dims=(32,),
    fourier_k=3,
    pe_levels=3,
)
SMALL_TRAIN = dict(
    batch_size=4, uniform_per_crystal=24, local_grid=2, species_grid=3, species_per_atom=6, global_spacing=2.0
)


def small_configs(
    frame: str = "periodic", norm: str = "none", activation: str = "silu", setting: str = "as_given"
) -> tuple[ModelConfig, TrainConfig]:
    """Tiny model and training configs (normalised lattice targets).

    ``small_configs("paper", "batch", "relu")`` has the published decoder design.
    """
    model = ModelConfig(frame=frame, norm=norm, activation=activation, setting=setting, **SMALL_MODEL)
    return model, TrainConfig(normalize_lattice=True, **SMALL_TRAIN)
