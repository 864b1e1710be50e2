"""Model and training configuration (dataclasses saved inside checkpoints), and presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass
class ModelConfig:
    """Architecture of the NeSF autoencoder.

    Attributes:
        frame: ``"paper"`` (Cartesian queries over the data set's bounding box, as published)
            or ``"periodic"`` (queries in the unit cell, decoder exactly periodic in the lattice).
        latent_dim: size of the latent code.
        vae: add a VAE head (mean and softplus variance).
        encoder_atom_dims: widths of the per-atom position and species MLPs.
        encoder_shared_dims: widths of the shared per-atom MLP before max-pooling.
        encoder_head_dims: widths of the MLP from pooled features + lattice to the latent.
        position_dims: hidden widths of the position-field decoder.
        species_dims: hidden widths of the species-field decoder.
        lattice_hidden: hidden width of the lattice length and angle heads.
        query_encoding: paper frame: ``"pe"`` (sin, cos of pi 2^k x, k < pe_levels) or ``"raw"``.
        pe_levels: levels L of the paper-frame positional encoding (60 features for L = 10).
        pe_scale: Angstrom per unit of the positional-encoding input (queries are divided by it).
        fourier_k: periodic frame: frequencies k = 1..fourier_k of sin/cos(2 pi k u).
        norm: ``"batch"`` (BatchNorm over queries, as published) or ``"none"``.
        activation: ``"relu"`` or ``"silu"``.
        residual: residual connections between equal-width hidden layers of the decoders.
        structure_factors: periodic frame: also encode the crystal by learned-species-weighted
            structure factors ``F_c(h) = sum_j e_c(s_j) exp(2 pi i h . u_j)`` for integer ``h`` with
            ``|h_i| <= structure_factor_h`` (half of them; the other half are conjugates), a
            lossless, permutation-invariant summary of where the atoms are (0: off).
        structure_factor_h: largest Miller index of those structure factors.
        structure_factor_channels: learned species weightings ``e_c``.
        setting: ``"as_given"`` (crystals are read in the cell and origin they come with, as
            published) or ``"canonical"`` (periodic frame: every crystal, in training and at
            encoding, is first brought to one canonical cell and origin that depends only on
            the crystal, :func:`nesf.data.setting.canonical_setting`; reconstructions are
            written back in the input's own cell and origin).
        canonical_origin: which atoms may sit at the canonical origin: ``"rarest"`` (the rarest
            species, heavier first; the first canonical models) or ``"roomiest"`` (the atoms
            farthest from their nearest neighbour; the same kind of site across a family).
        primitive_cell: canonical setting: first reduce every crystal to a primitive cell
            (pymatgen), so that a conventional cell or a supercell is seen as its primitive
            crystal; reconstructions are repeated back to the input's cell.
        latent_every_layer: add a latent-dependent shift ``U_l z`` to every hidden layer of the
            field decoders (computed once per crystal; zero at initialisation), not only to the
            first layer as published.
        latent_tokens: split the latent code into this many tokens of ``latent_dim /
            latent_tokens`` numbers (0: one global code, as published). The encoder then pools
            the atoms into the tokens by cross-attention from learned queries (masked softmax
            over atoms: permutation invariant), and every query of the field decoders attends
            to its crystal's tokens; the attention's output joins the latent's first-layer
            contribution. The code stays one vector ``[B, latent_dim]`` for every API.
        token_attention_dim: width of the keys and values of that attention.
    """

    frame: str = "periodic"
    latent_dim: int = 192
    vae: bool = False
    encoder_atom_dims: tuple[int, ...] = (64, 128)
    encoder_shared_dims: tuple[int, ...] = (256, 512)
    encoder_head_dims: tuple[int, ...] = (256,)
    position_dims: tuple[int, ...] = (256, 256, 256, 256, 256, 256)
    species_dims: tuple[int, ...] = (256, 256, 256)
    lattice_hidden: int = 128
    query_encoding: str = "pe"
    pe_levels: int = 10
    pe_scale: float = 16.0
    fourier_k: int = 6
    norm: str = "none"
    activation: str = "silu"
    residual: bool = True
    structure_factors: bool = False
    structure_factor_h: int = 3
    structure_factor_channels: int = 4
    setting: str = "as_given"
    canonical_origin: str = "rarest"
    primitive_cell: bool = False
    latent_every_layer: bool = False
    latent_tokens: int = 0
    token_attention_dim: int = 32

    def __post_init__(self) -> None:
        if self.frame not in ("paper", "periodic"):
            raise ValueError(f"frame must be 'paper' or 'periodic', got {self.frame!r}")
        if self.norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {self.norm!r}")
        if self.activation not in ("relu", "silu"):
            raise ValueError(f"activation must be 'relu' or 'silu', got {self.activation!r}")
        if self.setting not in ("as_given", "canonical"):
            raise ValueError(f"setting must be 'as_given' or 'canonical', got {self.setting!r}")
        if self.canonical_origin not in ("rarest", "roomiest"):
            raise ValueError(f"canonical_origin must be 'rarest' or 'roomiest', got {self.canonical_origin!r}")
        if self.primitive_cell and self.setting != "canonical":
            raise ValueError("primitive_cell is part of the canonical setting (setting='canonical')")
        if self.setting == "canonical" and self.frame != "periodic":
            raise ValueError("the canonical setting needs the periodic frame (the paper frame is not periodic)")
        if self.latent_tokens < 0 or (self.latent_tokens and self.latent_dim % self.latent_tokens):
            raise ValueError(
                f"latent_tokens must be 0 or divide latent_dim ({self.latent_dim}), got {self.latent_tokens}"
            )
        if self.token_attention_dim < 1:
            raise ValueError(f"token_attention_dim must be positive, got {self.token_attention_dim}")
        if self.query_encoding not in ("pe", "raw"):
            raise ValueError(f"query_encoding must be 'pe' or 'raw', got {self.query_encoding!r}")
        for name in ("encoder_atom_dims", "encoder_shared_dims", "encoder_head_dims", "position_dims", "species_dims"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))


#: Parts of a model that training may be restricted to (``TrainConfig.train_only``) and the
#: top-level modules each one trains (``None``: all of them).
TRAINABLE_PARTS: dict[str, tuple[str, ...] | None] = {"all": None, "encoder": ("encoder",)}


@dataclass
class TrainConfig:
    """Training settings (sampling, loss weights, optimiser).

    Attributes:
        epochs: maximum number of epochs.
        batch_size: crystals per step (per process under DDP).
        lr: Adam learning rate.
        lr_schedule: ``"step"`` (multiply by ``lr_gamma`` every ``lr_step_epochs``, as published)
            or ``"cosine"`` (cosine decay per step from ``lr`` to ``lr * lr_min_factor`` over the
            run: over its epochs, or over its ``--minutes`` budget when that ends first; a
            time-based schedule depends on the machine's speed, an epoch-based one does not).
        lr_step_epochs: step schedule: decay every this many epochs (0: never).
        lr_gamma: step schedule: factor of each decay step.
        lr_min_factor: cosine schedule: final learning rate as a fraction of ``lr``.
        global_spacing: paper frame: spacing of the jittered global grid, Angstrom.
        global_jitter: Gaussian jitter of global points, Angstrom.
        uniform_per_crystal: periodic frame: uniform points per cell per step.
        local_grid: points per axis of the local grid around each atom.
        local_spacing: its spacing, Angstrom.
        local_jitter: its jitter, Angstrom.
        species_grid: points per axis of the species grid around each atom.
        species_spacing: its spacing, Angstrom.
        species_jitter: its jitter, Angstrom.
        species_per_atom: species points kept per atom per step (0: the whole grid).
        w_position, w_species, w_length, w_angle, w_kl: loss weights.
        ema_decay: keep an exponential moving average of the weights with this decay per step
            (0: off); validation, ``best.pt`` and the weights a checkpoint ships are the
            average's, the raw weights travel in its training state for ``--resume``. The decay
            warms up as ``min(ema_decay, (1 + step) / (10 + step))``.
        label_smoothing: species cross-entropy against targets smoothed by this share spread over
            all classes (0: the plain cross-entropy, as published); a guard against the species
            field's overfitting.
        position_huber: position loss: 0 for the mean squared error (as published), else a Huber
            loss with this threshold in Angstrom per component, scaled by 2 so that it equals the
            squared error below the threshold and grows linearly above it (queries near a
            boundary between two atoms' regions, where the target jumps, then weigh less).
        latent_noise: add Gaussian noise to every training code before it is decoded, with a
            standard deviation of this share of each latent dimension's spread over the batch
            (0: off). Codes near a crystal's code then decode to nearly that crystal, which is
            what a prior's samples, never exactly on a training code, rely on.
        normalize_lattice: standardise lattice lengths and angles in the loss (else Angstrom, radians).
        grad_clip: clip the gradient norm (0: off).
        origin_shift: periodic frame: move each training crystal's origin by a random fraction of
            its cell at every step (atoms wrapped back into the cell). The same crystal, so the
            augmentation is physically exact; it teaches the model that a crystal's field moves
            with its atoms. (A space group's own operations map a crystal onto itself, so for
            this permutation-invariant encoder they change nothing and are not offered.)
        train_only: ``"all"`` trains every weight; ``"encoder"`` freezes the field decoders and
            lattice heads and trains the encoder alone on the same loss (amortised inference:
            with the decoder fixed, the loss's optimum for each crystal is the code that latent
            refinement searches for, so the encoder learns to give that code in one pass).
    """

    epochs: int = 3200
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "step"
    lr_step_epochs: int = 640
    lr_gamma: float = 0.5
    lr_min_factor: float = 0.02
    global_spacing: float = 1.0
    global_jitter: float = 0.5
    uniform_per_crystal: int = 384
    local_grid: int = 4
    local_spacing: float = 0.3
    local_jitter: float = 0.15
    species_grid: int = 6
    species_spacing: float = 0.1
    species_jitter: float = 0.05
    species_per_atom: int = 0
    w_position: float = 10.0
    w_species: float = 0.1
    w_length: float = 1.0
    w_angle: float = 1.0
    w_kl: float = 0.001
    label_smoothing: float = 0.0
    position_huber: float = 0.0
    latent_noise: float = 0.0
    ema_decay: float = 0.0
    normalize_lattice: bool = False
    grad_clip: float = 0.0
    origin_shift: bool = False
    train_only: str = "all"

    def __post_init__(self) -> None:
        if self.train_only not in TRAINABLE_PARTS:
            raise ValueError(f"train_only must be one of {', '.join(TRAINABLE_PARTS)}, got {self.train_only!r}")
        if self.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"lr_schedule must be 'step' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.position_huber >= 0.0:
            raise ValueError(f"position_huber must be >= 0 (0: squared error), got {self.position_huber}")
        if not self.latent_noise >= 0.0:
            raise ValueError(f"latent_noise must be >= 0 (0: off), got {self.latent_noise}")

    def learning_rate(self, progress: float, epoch: int) -> float:
        """Learning rate at ``progress`` (0 to 1, fraction of the run done) in epoch ``epoch`` (0-based)."""
        if self.lr_schedule == "cosine":
            progress = min(1.0, max(0.0, progress))
            floor = self.lr * self.lr_min_factor
            return floor + 0.5 * (self.lr - floor) * (1.0 + math.cos(math.pi * progress))
        if self.lr_step_epochs > 0:
            return self.lr * self.lr_gamma ** (epoch // self.lr_step_epochs)
        return self.lr


def paper_preset() -> tuple[ModelConfig, TrainConfig]:
    """The published configuration (paper frame, BatchNorm MLPs, positional encoding L = 10)."""
    model = ModelConfig(
        frame="paper",
        position_dims=(256, 128, 128, 128, 128, 128, 128, 128),
        species_dims=(256, 128),
        query_encoding="pe",
        pe_levels=10,
        norm="batch",
        activation="relu",
        residual=False,
    )
    return model, TrainConfig()


def default_preset() -> tuple[ModelConfig, TrainConfig]:
    """This project's default: periodic frame, canonical setting, a latent set of 8 tokens.

    Queries live in the unit cell only, so far fewer are needed per crystal than the paper's
    bounding-box grid: 256 uniform points per cell, a 2^3 local grid and 16 of the 216
    species-grid points per atom. Decoders of 4 x 256 (position) and 2 x 256 (species), SiLU,
    residual. The 192 latent numbers form 8 tokens of 24 that the encoder fills by attention over
    the atoms and every field query attends to (``latent_tokens``); the weights' moving average
    (decay 0.999) is what validation sees and checkpoints ship, and the species targets are
    smoothed by 0.1. Evidence (benchmarks/RESULTS.md): at an equal 10-minute CPU budget on lim_l6
    4 x 256 beat the paper preset and 6 x 256; on 67k Materials Project crystals at an equal GPU
    budget the tokens reached 46 % validation match against 35 % for one global code, 36 % for
    the latent at every layer and 41 % for wider decoders with it; species label smoothing cut
    the species error of perov_5 by a third. Batches of 32 crystals and a learning rate that
    follows a cosine from 2e-3 down to 4e-5 over the run's epochs (100 unless ``--epochs`` says
    otherwise): at an equal 30-minute CPU budget on lim_l6 this reached an 85 % validation match
    against 57 % with batches of 64 from 1e-3 (positions had underfit).
    """
    model = ModelConfig(
        position_dims=(256,) * 4,
        species_dims=(256,) * 2,
        setting="canonical",
        canonical_origin="roomiest",
        latent_tokens=8,
    )
    train = TrainConfig(
        epochs=100,
        batch_size=32,
        lr=2e-3,
        lr_schedule="cosine",
        uniform_per_crystal=256,
        local_grid=2,
        local_spacing=0.5,
        local_jitter=0.25,
        species_per_atom=16,
        w_position=10.0,
        w_species=1.0,
        normalize_lattice=True,
        grad_clip=1.0,
        ema_decay=0.999,
        label_smoothing=0.1,
    )
    return model, train


PRESETS = {"paper": paper_preset, "default": default_preset}


def get_preset(name: str, frame: str | None = None) -> tuple[ModelConfig, TrainConfig]:
    """A preset by name, optionally with another frame."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    model, train = PRESETS[name]()
    if frame is not None and frame != model.frame:
        model = replace(model, frame=frame, setting="as_given" if frame == "paper" else model.setting)
    return model, train


def config_to_dict(cfg: Any) -> dict:
    """Dataclass -> plain dict (tuples become lists, so ``weights_only`` loading accepts it)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def config_from_dict(cls: type, d: dict) -> Any:
    """Plain dict -> dataclass, ignoring unknown keys (forward compatibility)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in names})


__all__ = [
    "ModelConfig",
    "TrainConfig",
    "PRESETS",
    "config_from_dict",
    "config_to_dict",
    "default_preset",
    "get_preset",
    "paper_preset",
]
