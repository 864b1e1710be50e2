"""How coverage depends on the reference set: held-out crystals vs training crystals of equal size.

    python benchmarks/reference_size.py --model perov_5 --data perov_5
        [--prior P] [--n 2000] [--subsets 5] [--seed 0] [--jobs 1] [--json OUT.json]

COV-P counts the generated crystals that have a reference crystal within the cut-offs, so it
grows with the size of the reference set. Our held-out parts of CDVAE's data are a tenth of the
published test splits. This benchmark samples ``--n`` crystals once, fingerprints them, the
training part and the held-out part of DATA once, and scores the samples against:

- the held-out part (as ``generation.py`` does);
- ``--subsets`` disjoint random subsets of the training part, each the size of the held-out
  part: if the samples merely repeated training crystals, coverage against these would exceed
  coverage against the held-out part; if the two agree, the prior generalises as far as this
  measure sees, and coverage against a larger reference estimates what a test split of the
  published size would give;
- the whole training part (a reference about the size of the published test split).

Data as in ``generation.py``: the seeded 90 % / 10 % split of CDVAE's val.csv. Appends an
entry to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from _common import append_result, write_json
from ablate import splits
from nesf.api import NeSF
from nesf.generation.prior import load_prior
from nesf.metrics.generation import PRESETS, Fingerprints, coverage, fingerprints


def _rows(fp: Fingerprints, idx: np.ndarray) -> Fingerprints:
    return Fingerprints(fp.struct[idx], fp.comp[idx])


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="shipped model name or checkpoint")
    ap.add_argument("--data", required=True, choices=("perov_5", "carbon_24"))
    ap.add_argument("--prior", default=None, help="a prior file (default: the model's shipped prior)")
    ap.add_argument("--n", type=int, default=2000, help="crystals to sample (default 2000)")
    ap.add_argument("--subsets", type=int, default=5, help="disjoint training subsets of the held-out size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="processes for the fingerprints")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, heldout = splits(args.data, Path("."))
    model = NeSF.load(args.model)
    prior = load_prior(args.prior)[0] if args.prior else None
    t0 = time.perf_counter()
    crystals = model.sample_crystals(args.n, seed=args.seed, prior=prior, progress=True)
    generated = [c for c in crystals if c.n_atoms]
    gen_fp = fingerprints(generated, jobs=args.jobs)
    train_fp = fingerprints(train, jobs=args.jobs)
    held_fp = fingerprints(heldout, jobs=args.jobs)
    struct_cut, comp_cut = PRESETS[args.data]
    share = len(generated) / len(crystals)  # a decode without atoms covers nothing

    def score(ref: Fingerprints) -> dict[str, float]:
        recall, precision = coverage(gen_fp, ref, struct_cut, comp_cut)
        return {"cov_recall_pct": recall, "cov_precision_pct": precision * share}

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(train))
    size = len(heldout)
    n_sub = min(args.subsets, len(train) // size)
    subsets = [score(_rows(train_fp, order[k * size : (k + 1) * size])) for k in range(n_sub)]
    result = {
        "model": str(args.model),
        "data": args.data,
        "n_generated": len(crystals),
        "n_failed": len(crystals) - len(generated),
        "seed": args.seed,
        "n_heldout": size,
        "n_train": len(train),
        "heldout": score(held_fp),
        "train_subsets": subsets,
        "train_all": score(train_fp),
        "seconds": time.perf_counter() - t0,
    }
    write_json(args.json, result)
    sub_p = [s["cov_precision_pct"] for s in subsets]
    sub_r = [s["cov_recall_pct"] for s in subsets]
    lines = [
        f"- {len(crystals)} samples of `{args.model}` with "
        f"{'its shipped prior' if prior is None else args.prior}, seed {args.seed}; "
        f"{result['seconds'] / 60:.1f} min with {args.jobs} process(es) for the fingerprints",
        "",
        "| reference | crystals | COV-R % | COV-P % |",
        "|---|---|---|---|",
        f"| held-out part | {size} | {result['heldout']['cov_recall_pct']:.2f} | "
        f"{result['heldout']['cov_precision_pct']:.2f} |",
        f"| {n_sub} disjoint training subsets of the same size (min-max) | {size} each | "
        f"{min(sub_r):.2f}-{max(sub_r):.2f} | {min(sub_p):.2f}-{max(sub_p):.2f} |",
        f"| the whole training part | {len(train)} | {result['train_all']['cov_recall_pct']:.2f} | "
        f"{result['train_all']['cov_precision_pct']:.2f} |",
    ]
    append_result(f"Coverage and the reference set, {args.data}, {len(crystals)} samples", lines)
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
