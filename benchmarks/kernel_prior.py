"""Is the flow prior what makes `mp` samples implausible? Samples of a kernel prior around real codes.

    python benchmarks/kernel_prior.py --model mp --train runs/mpdata/train_prim.pt --reference VAL.extxyz \
        [--codes 20000] [--n 500] [--bandwidth -0.85 0 0.3 0.6] [--seed 0] [--json OUT.json]

A kernel prior draws a training crystal's code (the encoder's own, ``--codes`` training crystals
drawn at random) and adds Gaussian noise of ``bandwidth`` standard deviations along each
principal direction the shipped flow prior models (its whitening). Bandwidth 0 decodes the
training codes themselves; a negative bandwidth ``-T`` samples the shipped flow prior at
temperature ``T`` instead (the baseline). Each set of ``--n`` codes is decoded as ``nesf sample``
decodes (:meth:`nesf.api.NeSF.for_sampling`) and scored with the quick figures of the generation
protocol against ``--reference`` (validation crystals); for the kernel prior, the share of
samples that StructureMatcher (CDVAE settings) matches to the training crystal whose code they
started from says how far the noise carried them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import write_json
from sample_decoding import describe, quick_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mp")
    ap.add_argument("--train", required=True, help="training crystals (e.g. a prepared set)")
    ap.add_argument("--reference", required=True, help="validation crystals")
    ap.add_argument("--codes", type=int, default=20000, help="training crystals encoded (drawn at random)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--bandwidth", type=float, nargs="+", default=[-0.85, 0.0, 0.3, 0.6])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from pymatgen.analysis.structure_matcher import StructureMatcher

    from nesf.api import NeSF
    from nesf.data.readers import read_crystals

    torch.set_num_threads(args.threads)
    base = NeSF.load(args.model)
    prior = base.prior()
    train = read_crystals(args.train)
    reference = read_crystals(args.reference)
    idx = np.sort(np.random.default_rng(args.seed).choice(len(train), min(args.codes, len(train)), replace=False))
    codes = base.with_refinement(steps=0, restarts=0).encode_crystals([train[i] for i in idx])
    matcher = StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)
    out = {"model": args.model, "train": args.train, "reference": args.reference, "codes": len(idx), "rows": []}
    ids = [f"sample-{i:05d}" for i in range(args.n)]
    for h in args.bandwidth:
        g = torch.Generator().manual_seed(args.seed)
        pick = torch.randint(len(codes), (args.n,), generator=g)
        if h < 0:
            z = prior.sample(args.n, seed=args.seed, temperature=-h)
        else:
            noise = torch.randn(args.n, prior.basis.shape[1], generator=g) * h
            z = codes[pick] + (noise * prior.scale) @ prior.basis.T
        t0 = time.perf_counter()
        crystals = base.for_sampling().decode_crystals(z, ids=ids)
        row = {"bandwidth": h, "decode_seconds": time.perf_counter() - t0}
        row |= describe(crystals) | quick_metrics(crystals, reference)
        if h >= 0:
            same = 0
            for c, j in zip(crystals, pick.tolist()):
                if c.n_atoms:
                    try:
                        same += bool(matcher.fit(c.to_pymatgen(), train[int(idx[j])].to_pymatgen()))
                    except ValueError:
                        pass
            row["matches_source_pct"] = 100.0 * same / args.n
        print(row, flush=True)
        out["rows"].append(row)
        write_json(args.json, out)


if __name__ == "__main__":
    main()
