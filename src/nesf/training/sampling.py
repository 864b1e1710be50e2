"""Query points for training: where the structure field is sampled at each step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from nesf.data.batch import CrystalBatch
from nesf.fields.exact import ExactField
from nesf.fields.frame import Frame, box_grid
from nesf.models.config import TrainConfig
from nesf.reconstruction.reconstruct import species_offsets


@dataclass
class FieldSamples:
    """Flat query points with exact targets for one batch.

    Attributes:
        pos_points: ``[Tp, 3]`` position-field queries (global + local), Angstrom.
        pos_index: ``[Tp]`` crystal of each query.
        pos_target: ``[Tp, 3]`` exact displacement to the nearest atom, Angstrom.
        spec_points: ``[Ts, 3]`` species-field queries.
        spec_index: ``[Ts]`` crystal of each.
        spec_target: ``[Ts]`` species class of the nearest atom.
        pos_atom: ``[Tp]`` the atom (index within its crystal) a local query was drawn around,
            -1 for global queries.
        spec_atom: ``[Ts]`` the atom a species query was drawn around.
    """

    pos_points: torch.Tensor
    pos_index: torch.Tensor
    pos_target: torch.Tensor
    spec_points: torch.Tensor
    spec_index: torch.Tensor
    spec_target: torch.Tensor
    pos_atom: torch.Tensor | None = None
    spec_atom: torch.Tensor | None = None


class QuerySampler:
    """The published sampling scheme, for both frames, batched (no loops over crystals or atoms).

    * global: paper frame, a grid of ``global_spacing`` over the data set's bounding box, each
      point jittered (Gaussian ``global_jitter``); periodic frame, ``uniform_per_crystal``
      uniform points in each cell;
    * local: a ``local_grid``^3 grid of ``local_spacing`` around every atom, jittered;
    * species: a ``species_grid``^3 grid of ``species_spacing`` around every atom, jittered
      (optionally ``species_per_atom`` of its points drawn at random per atom).

    Args:
        cfg: training configuration.
        frame: the field frame.
        bbox: ``[2, 3]`` data-set bounding box (paper frame), Angstrom.
        shared_jitter: draw one jitter (and one choice of species points), applied around every
            atom of every crystal of the batch alike, instead of one per atom: a crystal's queries
            then form the same set whatever order its atoms come in and whatever other crystals
            share its batch (latent refinement needs both; training prefers independent draws).
    """

    def __init__(self, cfg: TrainConfig, frame: Frame, bbox: np.ndarray | None, shared_jitter: bool = False) -> None:
        self.cfg = cfg
        self.frame = frame
        self.shared_jitter = shared_jitter
        if not frame.periodic:
            if bbox is None:
                raise ValueError("the paper frame samples over a bounding box; none given")
            self.global_grid = torch.as_tensor(box_grid(np.asarray(bbox), cfg.global_spacing), dtype=torch.float32)
        self.local_offsets = species_offsets(cfg.local_grid, cfg.local_spacing, torch.float32, torch.device("cpu"))
        self.species_offsets = species_offsets(
            cfg.species_grid, cfg.species_spacing, torch.float32, torch.device("cpu")
        )

    def sample(self, batch: CrystalBatch, generator: torch.Generator) -> FieldSamples:
        """Draw queries for ``batch`` and compute their exact targets."""
        cfg = self.cfg
        dev, dtype = batch.cart.device, batch.cart.dtype
        b, n = batch.mask.shape

        lead = 1 if self.shared_jitter else b  # one draw for all crystals, or one per crystal

        def noise(shape: tuple[int, ...], sigma: float) -> torch.Tensor:
            draw = torch.randn((lead, *shape[1:]), generator=generator, dtype=dtype)
            return draw.to(dev).expand(shape) * sigma

        # global points [B, G, 3]
        if self.frame.periodic:
            u = torch.rand((lead, cfg.uniform_per_crystal, 3), generator=generator, dtype=dtype)
            glob = torch.bmm(u.to(dev).expand(b, -1, -1), batch.lattice)
        else:
            grid = self.global_grid.to(device=dev, dtype=dtype)
            glob = grid.unsqueeze(0) + noise((b, grid.shape[0], 3), cfg.global_jitter)
        # local points [B, N*L, 3]
        loc_off = self.local_offsets.to(device=dev, dtype=dtype)
        nl = loc_off.shape[0]
        per = 1 if self.shared_jitter else n  # jitters drawn per atom, or one per crystal for all its atoms
        local = batch.cart.unsqueeze(2) + loc_off + noise((b, per, nl, 3), cfg.local_jitter)
        local_mask = batch.mask.unsqueeze(2).expand(b, n, nl)
        pos_pts = torch.cat([glob, local.reshape(b, n * nl, 3)], dim=1)
        pos_mask = torch.cat(
            [torch.ones(b, glob.shape[1], dtype=torch.bool, device=dev), local_mask.reshape(b, n * nl)], dim=1
        )
        # species points [B, N*S, 3]
        sp_off = self.species_offsets.to(device=dev, dtype=dtype)
        if cfg.species_per_atom and cfg.species_per_atom < sp_off.shape[0]:
            keys = torch.rand((lead, per, sp_off.shape[0]), generator=generator).to(dev).expand(b, per, -1)
            pick = keys.argsort(dim=-1)[..., : cfg.species_per_atom].expand(b, n, -1)  # [B, N, k]
            sp = sp_off[pick]  # [B, N, k, 3]
        else:
            sp = sp_off.expand(b, n, -1, -1)
        ns = sp.shape[2]
        spec = batch.cart.unsqueeze(2) + sp + noise((b, per, ns, 3), cfg.species_jitter)
        spec_mask = batch.mask.unsqueeze(2).expand(b, n, ns).reshape(b, n * ns)
        spec = spec.reshape(b, n * ns, 3)

        field = ExactField(batch, self.frame)
        with torch.no_grad():
            disp, _ = field.nearest(pos_pts)
            _, atom = field.nearest(spec)
            spec_label = torch.gather(batch.species, 1, atom)
        index = torch.arange(b, device=dev).unsqueeze(1)
        atom_ids = torch.arange(n, device=dev)  # the atom each local / species query was drawn around
        pos_atom = torch.cat([torch.full((glob.shape[1],), -1, device=dev), atom_ids.repeat_interleave(nl)])
        spec_atom = atom_ids.repeat_interleave(ns)
        return FieldSamples(
            pos_points=pos_pts[pos_mask],
            pos_index=index.expand_as(pos_mask)[pos_mask],
            pos_target=disp[pos_mask],
            spec_points=spec[spec_mask],
            spec_index=index.expand_as(spec_mask)[spec_mask],
            spec_target=spec_label[spec_mask],
            pos_atom=pos_atom.expand_as(pos_mask)[pos_mask],
            spec_atom=spec_atom.expand_as(spec_mask)[spec_mask],
        )
