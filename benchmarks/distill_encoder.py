"""Distil checked codes into the encoder: fine-tune a model's encoder so that its one-pass code is the checked one.

    nesf encode --model M TRAIN.extxyz --out CODES.npz          # checked codes (the default path)
    python benchmarks/distill_encoder.py --model M --data TRAIN.extxyz --codes CODES.npz \
        --out M_distilled.pt [--loss code|field] [--minutes 8] [--lr 1e-4] [--holdout 200]
    nesf evaluate --model M_distilled.pt VAL.extxyz --refine-steps 0     # judge on validation data

Only the encoder's weights move; the decoders and lattice heads stay as they are, so every code
the model wrote before still decodes the same. Two targets:

- ``code``: the squared distance to the checked code, each latent dimension scaled by its spread
  over the training codes;
- ``field``: the decoded field of the encoder's code against the field of the checked code at the
  training queries (position field squared error in units of 0.1 A, species distributions by
  KL divergence, normalised lattice parameters), so that directions of the code the decoder
  ignores cost nothing.

A share of the crystals (``--holdout``) is kept aside; the weights with the lowest loss on them
are saved. The result is an experiment (see ``benchmarks/RESULTS.md``): the saved checkpoint is
the model with another encoder, not a shipped model.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F


def main() -> None:  # noqa: PLR0915 - one experiment, read top to bottom
    from nesf import NeSF
    from nesf.api import resolve_model_path
    from nesf.data.batch import CrystalBatch
    from nesf.fields.frame import get_frame
    from nesf.training.checkpoint import load_checkpoint, save_checkpoint
    from nesf.training.sampling import QuerySampler

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint or shipped model name")
    ap.add_argument("--data", required=True, help="the crystals the codes were written for")
    ap.add_argument("--codes", nargs="+", required=True, help=".npz files with 'latents' and 'ids' (nesf encode)")
    ap.add_argument("--out", required=True, help="checkpoint to write")
    ap.add_argument("--loss", choices=("code", "field"), default="code")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--holdout", type=int, default=200, help="crystals kept aside to pick the weights")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    nesf = NeSF.load(a.model)
    model = nesf.model
    crystals, _ = nesf.to_model_setting(nesf.prepare(a.data))
    by_id: dict[str, np.ndarray] = {}
    for path in a.codes:
        with np.load(path) as f:
            by_id.update({str(i): z for i, z in zip(f["ids"], f["latents"])})
    crystals = [c for c in crystals if c.id in by_id]
    if len(crystals) <= a.holdout:
        raise SystemExit(f"{len(crystals)} crystals have codes; need more than --holdout {a.holdout}")
    target = torch.as_tensor(np.stack([by_id[c.id] for c in crystals]), dtype=torch.float32)
    data = CrystalBatch.from_crystals(crystals, nesf.vocab)
    perm = torch.randperm(len(crystals), generator=torch.Generator().manual_seed(a.seed))
    hold, train = perm[: a.holdout], perm[a.holdout :]
    scale = target[train].std(0).clamp(min=1e-3)
    sampler = QuerySampler(nesf.train_cfg, get_frame(model.cfg.frame), None)
    for name, par in model.named_parameters():
        par.requires_grad_(name.startswith("encoder."))
    opt = torch.optim.Adam(model.encoder.parameters(), lr=a.lr)

    def encode(idx: torch.Tensor) -> torch.Tensor:
        b = data.select(idx)
        return model.encode(b.cart, b.frac, b.species, b.mask, b.lattice_params)[0]

    def loss_of(idx: torch.Tensor, z: torch.Tensor, seed: int) -> torch.Tensor:
        if a.loss == "code":
            return (((z - target[idx]) / scale) ** 2).mean()
        b = data.select(idx)
        q = sampler.sample(b, torch.Generator().manual_seed(seed))
        inv = torch.linalg.inv(b.lattice)

        def fields(code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            pos = model.position_field(model.position_decoder.latent_part(code), q.pos_points, q.pos_index, inv)
            spec = model.species_field(model.species_decoder.latent_part(code), q.spec_points, q.spec_index, inv)
            return pos, F.log_softmax(spec, -1), model.lattice_normalized(code)

        with torch.no_grad():
            pos_t, spec_t, lat_t = fields(target[idx])
        pos, spec, lat = fields(z)
        kl = F.kl_div(spec, spec_t, log_target=True, reduction="batchmean")
        return F.mse_loss(pos, pos_t) / 0.01 + kl + 10.0 * F.mse_loss(lat, lat_t)

    @torch.no_grad()
    def held_out() -> float:
        model.eval()
        chunks = [hold[i : i + 50] for i in range(0, len(hold), 50)]
        value = sum(float(loss_of(c, encode(c), 777 + k)) * len(c) for k, c in enumerate(chunks)) / len(hold)
        model.train()
        return value

    model.train()
    best = before = held_out()
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    print(f"{len(train)} training and {len(hold)} held-out crystals; held-out {a.loss} loss before {before:.4f}")
    start, step, epoch = time.time(), 0, 0
    gen = torch.Generator().manual_seed(a.seed + 1)
    while time.time() - start < a.minutes * 60:
        order = train[torch.randperm(len(train), generator=gen)]
        for s in range(0, len(order) - a.batch_size + 1, a.batch_size):
            idx = order[s : s + a.batch_size]
            loss = loss_of(idx, encode(idx), 1000 + step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if time.time() - start > a.minutes * 60:
                break
        epoch += 1
        value = held_out()
        if value < best:
            best, best_state = value, {k: v.detach().clone() for k, v in model.state_dict().items()}
        print(
            f"epoch {epoch} ({time.time() - start:.0f} s, {step} steps): training loss {loss.item():.4f}, "
            f"held-out {value:.4f}",
            flush=True,
        )
    print(f"held-out {a.loss} loss {before:.4f} -> {best:.4f} (best epoch kept)")
    model.load_state_dict(best_state)
    ck = load_checkpoint(resolve_model_path(a.model))
    ck["state_dict"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ck["distilled"] = {"loss": a.loss, "crystals": len(train), "held_out_before": before, "held_out_after": best}
    save_checkpoint(a.out, ck)  # new hashes and format tags
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
