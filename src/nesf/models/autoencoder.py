"""The NeSF autoencoder: PointNet encoder, neural structure-field decoders, lattice heads."""

from __future__ import annotations

import torch
from torch import nn

from nesf.fields.frame import get_frame
from nesf.fields.geometry import PeriodicGeometry
from nesf.models.config import TRAINABLE_PARTS, ModelConfig
from nesf.models.encoder import PointNetEncoder
from nesf.models.layers import FourierCellEncoding, PositionalEncoding, QueryConditionedMLP, mlp

#: Queries evaluated at once when a bound field is asked about many points.
_QUERY_CHUNK = 131_072


class NeSFModel(nn.Module):
    """Crystal autoencoder whose decoder is a neural structure field.

    Args:
        cfg: architecture.
        n_species: number of species classes.
        lattice_mean: ``[6]`` mean of (a, b, c in A; angles in rad) used to normalise the lattice.
        lattice_std: ``[6]`` their standard deviations (ones and zero mean: no normalisation).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        n_species: int,
        lattice_mean: torch.Tensor | None = None,
        lattice_std: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_species = n_species
        self.frame = get_frame(cfg.frame)
        self.encoder = PointNetEncoder(cfg, n_species)
        if self.frame.periodic:
            self.query_encoding: nn.Module | None = FourierCellEncoding(cfg.fourier_k)
            qdim = self.query_encoding.out_dim  # type: ignore[union-attr]
        elif cfg.query_encoding == "pe":
            self.query_encoding = PositionalEncoding(cfg.pe_levels, cfg.pe_scale)
            qdim = self.query_encoding.out_dim  # type: ignore[union-attr]
        else:
            self.query_encoding = None
            qdim = 3
        kw = {
            "norm": cfg.norm,
            "act": cfg.activation,
            "residual": cfg.residual,
            "latent_every_layer": cfg.latent_every_layer,
            "tokens": cfg.latent_tokens,
            "attention_dim": cfg.token_attention_dim,
        }
        self.position_decoder = QueryConditionedMLP(cfg.latent_dim, qdim, cfg.position_dims, 3, **kw)
        self.species_decoder = QueryConditionedMLP(cfg.latent_dim, qdim, cfg.species_dims, n_species, **kw)
        self.length_head = mlp((cfg.latent_dim, cfg.lattice_hidden, 3), cfg.activation, last_act=False)
        self.angle_head = mlp((cfg.latent_dim, cfg.lattice_hidden, 3), cfg.activation, last_act=False)
        mean = lattice_mean if lattice_mean is not None else torch.zeros(6)
        std = lattice_std if lattice_std is not None else torch.ones(6)
        self.register_buffer("lattice_mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("lattice_std", torch.as_tensor(std, dtype=torch.float32).clone())
        #: ``[S]`` bool, True for species classes absent from the training data: decoding never
        #: predicts those (set from the checkpoint's ``trained_numbers``; None: allow all).
        self.unseen_species: torch.Tensor | None = None

    # ------------------------------------------------------------------ encoder side
    def trainable_parameters(self, part: str = "all") -> list[nn.Parameter]:
        """The parameters training updates (``part``: a key of :data:`TRAINABLE_PARTS`); the others are frozen."""
        modules = TRAINABLE_PARTS[part]
        for name, param in self.named_parameters():
            param.requires_grad_(modules is None or name.split(".")[0] in modules)
        return [p for p in self.parameters() if p.requires_grad]

    def normalize_lattice(self, params: torch.Tensor) -> torch.Tensor:
        """``[B, 6]`` (A, rad) -> normalised lattice parameters."""
        return (params - self.lattice_mean) / self.lattice_std

    def encode(
        self,
        cart: torch.Tensor,
        frac: torch.Tensor,
        species: torch.Tensor,
        mask: torch.Tensor,
        lattice_params: torch.Tensor,
        sample: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Latent ``z`` ``[B, D]``, its mean and log-variance (VAE; None otherwise).

        ``sample`` draws ``z`` from the posterior (training); otherwise ``z`` is the mean.
        """
        mu, logvar = self.encoder(cart, frac, species, mask, self.normalize_lattice(lattice_params))
        if sample and logvar is not None:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return z, mu, logvar

    # ------------------------------------------------------------------ decoder side
    def lattice_normalized(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised lattice prediction ``[B, 6]``."""
        return torch.cat([self.length_head(z), self.angle_head(z)], dim=-1)

    def decode_lattice(self, z: torch.Tensor) -> torch.Tensor:
        """Lattice parameters ``[B, 6]``: a, b, c (A), alpha, beta, gamma (rad)."""
        params = self.lattice_normalized(z) * self.lattice_std + self.lattice_mean
        lengths = params[:, :3].clamp(min=0.5)
        angles = params[:, 3:].clamp(min=0.35, max=2.8)
        return torch.cat([lengths, angles], dim=-1)

    def query_features(self, points: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor | None) -> torch.Tensor:
        """Decoder input features ``[T, F]`` of Cartesian queries ``[T, 3]`` (A).

        Periodic frame: Fourier features of the fractional coordinates in the crystal's cell
        (``inverse`` ``[B, 3, 3]`` maps Cartesian to fractional). Paper frame: positional encoding.
        """
        if self.frame.periodic:
            assert inverse is not None, "the periodic frame needs the cells' inverse matrices"
            u = torch.bmm(points.unsqueeze(1), inverse.index_select(0, index)).squeeze(1)
            return self.query_encoding(u)  # type: ignore[misc]
        if self.query_encoding is not None:
            return self.query_encoding(points)
        return points / self.cfg.pe_scale

    def position_field(
        self, latent_part: torch.Tensor, points: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor | None
    ) -> torch.Tensor:
        """Displacement to the nearest atom ``[T, 3]`` (A) at queries ``[T, 3]`` of crystals ``index``."""
        return self.position_decoder(latent_part, index, self.query_features(points, index, inverse))

    def species_field(
        self, latent_part: torch.Tensor, points: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor | None
    ) -> torch.Tensor:
        """Species logits ``[T, S]`` at queries ``[T, 3]``."""
        return self.species_decoder(latent_part, index, self.query_features(points, index, inverse))

    def bind(self, z: torch.Tensor, lattice: torch.Tensor) -> NeuralField:
        """The fields of latents ``z`` ``[B, D]`` in cells ``lattice`` ``[B, 3, 3]`` (A), for reconstruction."""
        return NeuralField(self, z, lattice)


class NeuralField:
    """A trained structure field bound to ``B`` latents; same contract as the exact field.

    The latent's contribution to each decoder's first layer is computed once here, so asking
    about many points costs only the query-dependent part.
    """

    def __init__(self, model: NeSFModel, z: torch.Tensor, lattice: torch.Tensor) -> None:
        self.model = model
        self.frame = model.frame
        self.n_species = model.n_species
        self.lattice = lattice
        self.inverse = torch.linalg.inv(lattice) if model.frame.periodic else None
        self._geometry = PeriodicGeometry.from_lattices(lattice, dtype=lattice.dtype) if model.frame.periodic else None
        with torch.no_grad():
            self._pos_latent = model.position_decoder.latent_part(z)
            self._spec_latent = model.species_decoder.latent_part(z)
        self.dtype = z.dtype
        self.device = z.device

    @property
    def geometry(self) -> PeriodicGeometry | None:
        """Periodic geometry of the cells (None in the paper frame)."""
        return self._geometry

    @torch.no_grad()
    def _chunked(self, decode, latent: torch.Tensor, points: torch.Tensor, crystal: torch.Tensor, width: int):  # noqa: ANN001, ANN202
        out = [
            decode(latent, points[i : i + _QUERY_CHUNK], crystal[i : i + _QUERY_CHUNK], self.inverse)
            for i in range(0, points.shape[0], _QUERY_CHUNK)
        ]
        return torch.cat(out) if out else points.new_zeros((0, width))

    def position_flat(self, points: torch.Tensor, crystal: torch.Tensor) -> torch.Tensor:
        """Displacements ``[P, 3]`` at flat points ``[P, 3]`` of crystals ``crystal`` ``[P]``."""
        return self._chunked(self.model.position_field, self._pos_latent, points, crystal, 3)

    def species_logits_flat(self, points: torch.Tensor, crystal: torch.Tensor) -> torch.Tensor:
        """Species logits ``[P, S]`` at flat points (classes never seen in training masked to -inf)."""
        logits = self._chunked(self.model.species_field, self._spec_latent, points, crystal, self.n_species)
        mask = self.model.unseen_species
        return logits if mask is None else logits.masked_fill(mask.to(logits.device), float("-inf"))

    def _flat(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, q, _ = points.shape
        crystal = torch.arange(b, device=points.device).repeat_interleave(q)
        return points.reshape(b * q, 3), crystal

    def position(self, points: torch.Tensor) -> torch.Tensor:
        """Position field ``[B, Q, 3] -> [B, Q, 3]`` (A)."""
        flat, crystal = self._flat(points)
        return self.position_flat(flat, crystal).reshape(points.shape)

    def species(self, points: torch.Tensor) -> torch.Tensor:
        """Species logits ``[B, Q, 3] -> [B, Q, S]``."""
        flat, crystal = self._flat(points)
        return self.species_logits_flat(flat, crystal).reshape(points.shape[0], points.shape[1], -1)

    def species_labels(self, points: torch.Tensor) -> torch.Tensor:
        """Arg-max species class ``[B, Q]``."""
        return self.species(points).argmax(dim=-1)
