"""The training objective as a module (so that DDP can wrap it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nesf.data.batch import CrystalBatch
from nesf.models.autoencoder import NeSFModel
from nesf.models.config import TrainConfig
from nesf.training.sampling import FieldSamples


class NeSFObjective(nn.Module):
    """Loss of one batch: weighted position MSE (or Huber), species cross-entropy, lattice MSEs, KL.

    With ``latent_noise`` the codes are jittered before decoding (training only; see ``TrainConfig``).

    ``forward`` returns the total loss and a dict of the unweighted terms (floats).
    """

    def __init__(self, model: NeSFModel, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    def forward(self, batch: CrystalBatch, samples: FieldSamples) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # noqa: D102
        model, cfg = self.model, self.cfg
        lattice_inverse = torch.linalg.inv(batch.lattice)
        frac = torch.bmm(batch.cart, lattice_inverse)
        z, mu, logvar = model.encode(
            batch.cart, frac, batch.species, batch.mask, batch.lattice_params, sample=self.training
        )
        if self.training and cfg.latent_noise > 0:
            z = z + cfg.latent_noise * torch.randn_like(z) * z.detach().std(dim=0, keepdim=True)
        inverse = lattice_inverse if model.frame.periodic else None
        pos_lat = model.position_decoder.latent_part(z)
        pos = model.position_field(pos_lat, samples.pos_points, samples.pos_index, inverse)
        if cfg.position_huber > 0:
            loss_pos = 2.0 * F.huber_loss(pos, samples.pos_target, delta=cfg.position_huber)
        else:
            loss_pos = F.mse_loss(pos, samples.pos_target)
        spec_lat = model.species_decoder.latent_part(z)
        logits = model.species_field(spec_lat, samples.spec_points, samples.spec_index, inverse)
        loss_spec = F.cross_entropy(logits, samples.spec_target, label_smoothing=cfg.label_smoothing)
        lat_pred = model.lattice_normalized(z)
        lat_true = model.normalize_lattice(batch.lattice_params)
        loss_len = F.mse_loss(lat_pred[:, :3], lat_true[:, :3])
        loss_ang = F.mse_loss(lat_pred[:, 3:], lat_true[:, 3:])
        total = cfg.w_position * loss_pos + cfg.w_species * loss_spec + cfg.w_length * loss_len + cfg.w_angle * loss_ang
        terms = {"position": loss_pos, "species": loss_spec, "length": loss_len, "angle": loss_ang}
        if logvar is not None:
            kl = -0.5 * torch.mean(torch.sum(1 + logvar - mu * mu - torch.exp(logvar), dim=-1))
            total = total + cfg.w_kl * kl
            terms["kl"] = kl
        return total, {k: v.detach() for k, v in terms.items()}
