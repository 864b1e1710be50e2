"""Latent priors fitted several ways to the same codes, judged by the crystals their samples decode to.

    python benchmarks/prior_fits.py --model perov_5 --train runs/data/perov_5/train.extxyz \
        --reference runs/data/perov_5/heldout.extxyz [--n 2000] [--seed 0] \
        [--variant NAME:FIELD=VALUE,...] [--full --preset perov_5 [--fingerprint-cache DIR]] [--json OUT.json] \
        [--save DIR]

The training crystals are encoded once (the encoder's own codes, as ``nesf fit-prior`` does), or
their codes read from ``--codes`` (``nesf encode TRAIN --refine-steps 0 --out CODES.npz``).
Each variant is a :class:`nesf.generation.prior.PriorConfig` with some fields changed
(``epochs``, ``hidden``, ``layers``, ``variance_kept``, ``lr``, ``batch_size``, ``steps``,
``temperature``) and fitted to those codes with seed ``--seed`` (``shipped:`` takes the model's
shipped prior instead, ``shipped:steps=256`` that prior sampled with other settings). ``--n``
codes are drawn from each (seed ``--seed``) and decoded as ``nesf sample`` decodes them. Each
variant gets the quick figures of the generation protocol against the reference (validity,
Wasserstein distances of density and of the number of elements over valid samples; see
``sample_decoding.py``), the same number-of-elements distance against the training crystals
(a larger, less noisy reference), the share of samples whose number of atoms no training
crystal has, and the fitting time; ``--full`` adds the coverage figures (COV-R / COV-P with the
preset's cut-offs). The training crystals' own codes decoded give the ceiling (row ``train
codes``). Choose on validation data; keep test splits for figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from _common import parse_changes, write_json
from sample_decoding import add_coverage_args, coverage, describe, quick_metrics


def n_elements(crystals: list) -> list[int]:
    return [len(set(c.numbers.tolist())) for c in crystals if c.n_atoms]


def judge(crystals: list, reference: list, training: list) -> dict:
    """Quick protocol figures against the reference, and against the training crystals."""
    from scipy.stats import wasserstein_distance

    counts = {c.n_atoms for c in training}
    row = {**describe(crystals), **quick_metrics(crystals, reference)}
    row["n_elements_emd_train"] = float(wasserstein_distance(n_elements(crystals), n_elements(training)))
    row["atom_count_unseen_pct"] = 100.0 * float(np.mean([c.n_atoms not in counts for c in crystals]))
    hist = np.bincount(n_elements(crystals), minlength=8)[1:8]
    row["elements_histogram_1_to_7"] = [int(v) for v in hist]
    return row


def main() -> None:
    from nesf.generation.prior import PriorConfig

    prior_fields = {f.name for f in fields(PriorConfig)} - {"latent_dim", "components"}
    defaults = {k: v for k, v in PriorConfig(latent_dim=1).__dict__.items() if k in prior_fields}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="shipped model name or checkpoint")
    ap.add_argument("--train", required=True, help="the model's training crystals")
    ap.add_argument("--reference", required=True, help="reference crystals (validation data)")
    ap.add_argument("--codes", default=None, help="the training codes: .npz of 'nesf encode --refine-steps 0'")
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget of each fit (default: none)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", action="append", default=None, help="name:field=value,... (repeatable)")
    add_coverage_args(ap, "perov_5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--save", default=None, help="write each fitted prior to SAVE/NAME.pt (a prior file)")
    args = ap.parse_args()

    import torch

    from nesf.api import NeSF
    from nesf.data.readers import read_crystals
    from nesf.generation.prior import fit_prior, save_prior

    torch.set_num_threads(args.threads)
    base = NeSF.load(args.model)
    sampler = base.for_sampling()
    training, reference = read_crystals(args.train), read_crystals(args.reference)
    t0 = time.perf_counter()
    if args.codes:
        codes = torch.from_numpy(np.load(args.codes)["latents"]).float()
        if codes.shape[0] != len(training):
            raise SystemExit(f"{args.codes}: {codes.shape[0]} codes for {len(training)} training crystals")
    else:
        encoder = base.with_refinement(steps=0) if hasattr(base, "with_refinement") else base
        codes = encoder.encode_crystals(encoder.prepare(training))
        print(f"encoded {len(training)} training crystals in {time.perf_counter() - t0:.0f} s")
    out = {"model": args.model, "train": args.train, "reference": args.reference, "n": args.n, "seed": args.seed}
    out["reference_stats"] = describe(reference)
    rows = []
    ceiling = sampler.decode_crystals(codes[: args.n], ids=[c.id for c in training[: args.n]])
    rows.append({"name": "train codes", "changes": {}, **judge(ceiling, reference, training)})
    for name, changes in [parse_changes(v, defaults) for v in (args.variant or ["shipped:"])]:
        draw = {k: changes.pop(k) for k in ("steps", "temperature") if k in changes}
        t0 = time.perf_counter()
        if name.startswith("shipped"):
            if changes:
                raise SystemExit(f"{name}: the shipped prior takes only steps= and temperature=")
            prior, record = base.prior(None), {}
        else:
            cfg = replace(PriorConfig(latent_dim=codes.shape[1]), **changes)
            prior, record = fit_prior(codes, cfg, seed=args.seed, minutes=args.minutes, progress=False)
            if args.save:
                card = {"model": args.model, "model_sha256": base.info.get("sha256"), "data": args.train}
                card |= {"n_crystals": len(training), "codes": "encoder", "seed": args.seed, **record}
                card["command"] = "python benchmarks/prior_fits.py " + " ".join(sys.argv[1:])
                save_prior(Path(args.save) / f"{name}.pt", prior, base.vocab.to_dict(), card, args.seed)
        fit_s = time.perf_counter() - t0
        z = prior.sample(args.n, seed=args.seed, **draw)
        crystals = sampler.decode_crystals(z, ids=[f"sample-{i:05d}" for i in range(args.n)])
        row = {"name": name, "changes": {**changes, **draw}, "fit_seconds": fit_s}
        row |= judge(crystals, reference, training) | coverage(crystals, reference, args)
        row["final_loss"] = record.get("final_loss")
        rows.append(row)
        print(
            f"{name:16s} comp {row['comp_validity_pct']:6.2f}  density {row['density_emd']:.3f}  "
            f"#elem {row['n_elements_emd']:.3f} (train {row['n_elements_emd_train']:.3f})  "
            f"odd counts {row['atom_count_unseen_pct']:.1f} %  elements {row['elements_histogram_1_to_7']}  "
            f"fit {fit_s:.0f} s"
            + (f"  COV-R {row['cov_recall_pct']:.2f}  COV-P {row['cov_precision_pct']:.2f}" if args.full else ""),
            flush=True,
        )
    out["variants"] = rows
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
