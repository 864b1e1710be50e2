"""Generation benchmark: sample N crystals from a model's latent prior and score them by the CDVAE protocol.

    python benchmarks/generation.py --model perov_5 --data perov_5 [--prior P | --epochs E]
        [--n 10000] [--temperature T] [--seed 0] [--threads 1] [--jobs 1] [--json OUT.json] [--out DIR]
        [--screen EV --draws M]

Steps, each timed: fit a latent prior to the model's codes of the training part of DATA (unless
``--prior`` names one), draw ``--n`` codes and decode them, and score the decoded crystals
against the held-out part of DATA with ``nesf.metrics.generation`` (validity, COV-R / COV-P with
the data set's published cut-offs, Wasserstein distances of density and number of elements).
With ``--screen EV`` (as ``nesf sample --screen``), ``--draws`` codes are drawn and decoded,
and the first ``--n`` whose static CHGNet formation energy is at most EV eV/atom are scored.
The same metrics for the training crystals themselves against the held-out part are reported
beside them: what a generator that reproduced the data distribution exactly would score against
this reference set (its coverage precision is bounded by how densely the few reference crystals
cover the compositions). Appends an entry to ``benchmarks/RESULTS.md``.

Data: ``perov_5`` and ``carbon_24``, the seeded 90 % / 10 % split of CDVAE's val.csv that
``nesf split --seed 0`` makes (training / held-out), as in ``ablate.py``.
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
from nesf.generation.prior import PriorConfig, default_epochs, fit_prior, load_prior, save_prior
from nesf.io.writers import write_extxyz
from nesf.metrics.generation import generation_metrics

KEYS = (
    ("struct_validity_pct", "struct. %", "{:.2f}"),
    ("comp_validity_pct", "comp. %", "{:.2f}"),
    ("cov_recall_pct", "COV-R %", "{:.2f}"),
    ("cov_precision_pct", "COV-P %", "{:.2f}"),
    ("density_emd", "density", "{:.4f}"),
    ("n_elements_emd", "#elem", "{:.4f}"),
)


def row(name: str, m: dict) -> str:
    """One Markdown table row of generation metrics."""
    cells = ["-" if m.get(k) is None else fmt.format(m[k]) for k, _, fmt in KEYS]
    return f"| {name} | {m['n_generated']} | " + " | ".join(cells) + " |"


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="shipped model name or checkpoint")
    ap.add_argument("--data", required=True, choices=("perov_5", "carbon_24"))
    ap.add_argument("--prior", default=None, help="a prior from 'nesf fit-prior' (default: fit one here)")
    ap.add_argument(
        "--epochs", type=int, default=None, help="prior training epochs when fitting one (default: as nesf fit-prior)"
    )
    ap.add_argument("--n", type=int, default=10000, help="crystals to sample (default 10000, as published)")
    ap.add_argument("--temperature", type=float, default=None, help="default: the prior's own (1 if fitted here)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--screen", type=float, default=None, help="keep samples within EV eV/atom of the elements")
    ap.add_argument("--draws", type=int, default=None, help="with --screen: codes drawn (default 2.5 x --n)")
    ap.add_argument("--fingerprint-cache", default=None, help="folder to keep and reuse fingerprints (default: none)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for encoding, the prior and decoding")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the fingerprints")
    ap.add_argument("--json", default=None)
    ap.add_argument("--out", default=None, help="folder for the prior, samples.extxyz and the metrics")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    train, reference = splits(args.data, Path("."))
    model = NeSF.load(args.model)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    if args.prior:
        prior, _ = load_prior(args.prior)
        fit_record = {"prior": args.prior}
    else:
        codes = model.encode_crystals(model.prepare(train))
        epochs = args.epochs or default_epochs(len(codes))
        prior, fit_record = fit_prior(codes, PriorConfig(latent_dim=codes.shape[1], epochs=epochs), args.seed)
        if out:
            card = {
                "model": str(args.model),
                "model_sha256": model.info.get("sha256"),
                "data": f"{args.data} training part",
                "n_crystals": len(train),
            }
            save_prior(out / "prior.pt", prior, model.vocab.to_dict(), {**card, **fit_record}, args.seed)
    seconds["prior"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if args.temperature is None:
        args.temperature = model.prior(prior).cfg.temperature
    draws = (args.draws or int(2.5 * args.n)) if args.screen is not None else args.n
    crystals = model.sample_crystals(draws, seed=args.seed, prior=prior, progress=True, temperature=args.temperature)
    seconds["sample_and_decode"] = time.perf_counter() - t0
    screen_record = None
    if args.screen is not None:
        from nesf.relax.screen import screen

        t0 = time.perf_counter()
        keep, _ = screen(crystals, args.screen)
        kept = [c for c, k in zip(crystals, keep) if k][: args.n]
        screen_record = {"max_formation_energy_ev": args.screen, "draws": draws, "passed": int(keep.sum())}
        screen_record["kept_pct"] = 100.0 * screen_record["passed"] / draws
        print(f"screen: {screen_record['passed']} of {draws} within {args.screen} eV/atom; scoring {len(kept)}")
        crystals = kept
        seconds["screen"] = time.perf_counter() - t0
    decoded = [c for c in crystals if c.n_atoms]
    if out:
        write_extxyz(out / "samples.extxyz", decoded)

    t0 = time.perf_counter()
    metrics = generation_metrics(
        decoded, reference, args.data, seed=args.seed, jobs=args.jobs, cache=args.fingerprint_cache
    )
    seconds["metrics"] = time.perf_counter() - t0
    # a decode that found no atom is a generated crystal that is not valid and covers nothing
    n_failed = len(crystals) - len(decoded)
    if n_failed:
        share = len(decoded) / len(crystals)
        for key in ("struct_validity_pct", "comp_validity_pct", "validity_pct", "cov_precision_pct"):
            if metrics.get(key) is not None:
                metrics[key] *= share
        metrics["n_generated"] = len(crystals)
    metrics["n_failed"] = n_failed
    data_itself = generation_metrics(
        train, reference, args.data, seed=args.seed, jobs=args.jobs, cache=args.fingerprint_cache
    )

    result = {
        "model": str(args.model),
        "data": args.data,
        "n": args.n,
        "temperature": args.temperature,
        "seed": args.seed,
        "prior": fit_record,
        "screen": screen_record,
        "seconds": seconds,
        "seconds_total": float(sum(seconds.values())),
        "generated": metrics,
        "training_crystals_against_the_same_reference": data_itself,
    }
    write_json(args.json or (str(out / "generation.json") if out else None), result)
    header = "| crystals | n | " + " | ".join(label for _, label, _ in KEYS) + " |"
    lines = [
        f"- reference: the held-out part of {args.data} ({len(reference)} crystals); "
        f"prior: {fit_record.get('prior') or 'fitted here'}; temperature {args.temperature}",
        f"- seconds: prior {seconds['prior']:.0f}, sampling and decoding {seconds['sample_and_decode']:.0f}, "
        f"metrics {seconds['metrics']:.0f} with {args.jobs} process(es) "
        f"(total {result['seconds_total'] / 60:.1f} min); "
        f"{n_failed} decodes found no atom",
        *(
            [
                f"- screened (`--screen {args.screen}`): {screen_record['passed']} of {screen_record['draws']} "
                f"decoded samples ({screen_record['kept_pct']:.1f} %) within {args.screen} eV/atom of the elements "
                f"(static CHGNet formation energy); the first {args.n} of them scored"
            ]
            if screen_record
            else []
        ),
        "",
        header,
        "|" + "---|" * (len(KEYS) + 2),
        row(f"sampled from `{args.model}`", metrics),
        row(f"the {len(train)} training crystals", data_itself),
    ]
    append_result(f"Generation, {args.data}, {args.n} samples from {args.model}", lines)
    print(f"generation: {np.round(result['seconds_total'] / 60, 1)} min in all")


if __name__ == "__main__":
    main()
