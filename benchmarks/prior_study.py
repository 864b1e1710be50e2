"""How the latent prior's design decides where its samples land: principal subspace vs every direction.

    python benchmarks/prior_study.py --model perov_5 --data perov_5 [--n 400] [--epochs 400]
        [--variance-kept 1.0 0.999 0.99] [--temperature 1.0 0.8] [--seed 0] [--json OUT.json]

For each ``variance_kept`` a prior is fitted to the model's codes of the training part of DATA
(``nesf.generation.prior.fit_prior``, seed ``--seed``), ``--n`` codes are drawn (seed
``--seed + 1``) and decoded, and the decoded crystals are compared with the held-out part by the
coverage fingerprints of the generation protocol (site-averaged CrystalNN, standardised Magpie):

- ``near_structure_pct``: samples whose structure fingerprint lies within the data set's
  structure cut-off of some held-out crystal;
- ``near_composition_pct``: samples within the composition cut-off of some held-out crystal;
- ``held_out_reached_pct``: held-out crystals with some sample within the structure cut-off;
- ``density_emd``: Wasserstein distance between the samples' densities and the held-out ones
  (g/cm^3, as in the generation protocol but over all decoded samples).

Each prior is sampled at every ``--temperature`` (the scale of the flow's starting noise).

The same shares for the model's reconstructions of the training crystals and for the training
crystals themselves give the ceilings. Appends an entry to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from _common import append_result, write_json
from ablate import splits
from nesf.api import NeSF
from nesf.generation.prior import PriorConfig, fit_prior
from nesf.metrics.generation import PRESETS, Fingerprints, _magpie_scaler, fingerprints


def densities(crystals: list) -> list[float]:
    """Densities in g/cm^3 (pymatgen)."""
    return [float(c.to_pymatgen().density) for c in crystals]


def shares(gen: Fingerprints, ref: Fingerprints, struct_cut: float, comp_cut: float) -> dict:
    """How close generated fingerprints come to the reference ones (see the module docstring)."""
    mean, std = _magpie_scaler()
    ds = cdist(np.nan_to_num(gen.struct, nan=1e3), np.nan_to_num(ref.struct, nan=-1e3))
    dc = cdist(np.nan_to_num((gen.comp - mean) / std), np.nan_to_num((ref.comp - mean) / std))
    return {
        "near_structure_pct": 100.0 * float((ds.min(axis=1) <= struct_cut).mean()),
        "near_composition_pct": 100.0 * float((dc.min(axis=1) <= comp_cut).mean()),
        "held_out_reached_pct": 100.0 * float((ds.min(axis=0) <= struct_cut).mean()),
    }


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, choices=("perov_5", "carbon_24"))
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--variance-kept", type=float, nargs="+", default=[1.0, 0.999, 0.99])
    ap.add_argument("--temperature", type=float, nargs="+", default=[1.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    struct_cut, comp_cut = PRESETS[args.data]
    train, held_out = splits(args.data, Path("."))
    model = NeSF.load(args.model)
    prepared = model.prepare(train)
    codes = model.encode_crystals(prepared)
    ref = fingerprints(held_out, progress=False)
    ref_density = densities(held_out)

    def scored(crystals: list) -> dict:
        return {
            **shares(fingerprints(crystals, progress=False), ref, struct_cut, comp_cut),
            "density_emd": float(wasserstein_distance(densities(crystals), ref_density)),
        }

    rows: dict[str, dict] = {}
    for kept in args.variance_kept:
        cfg = PriorConfig(latent_dim=codes.shape[1], epochs=args.epochs, variance_kept=kept)
        prior, record = fit_prior(codes, cfg, args.seed, progress=False)
        for temperature in args.temperature:
            z = prior.sample(args.n, seed=args.seed + 1, temperature=temperature)
            decoded = [c for c in model.decode_crystals(z) if c.n_atoms]
            share = f"{100 * kept:g} % of the variance"
            name = f"prior, {record['components']} components ({share}), temperature {temperature:g}"
            rows[name] = {
                **scored(decoded),
                "components": record["components"],
                "temperature": temperature,
                "final_loss": record["final_loss"],
                "n_decoded": len(decoded),
            }
    subset = prepared[: args.n]
    rows[f"reconstructions of {len(subset)} training crystals"] = scored(model.reconstruct_crystals(subset))
    rows[f"{len(subset)} training crystals themselves"] = scored(subset)
    write_json(args.json, {"model": str(args.model), "data": args.data, "n": args.n, "rows": rows})
    lines = [
        f"- {args.n} samples per prior and temperature (seed {args.seed + 1}), "
        f"{len(held_out)} held-out crystals; cut-offs {struct_cut} (structure) / {comp_cut} (composition)",
        "",
        "| crystals | near a held-out structure % | near a held-out composition % | held-out structures reached % "
        "| density distance |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {r['near_structure_pct']:.1f} | {r['near_composition_pct']:.1f} | "
            f"{r['held_out_reached_pct']:.1f} | {r['density_emd']:.3f} |"
            for name, r in rows.items()
        ),
    ]
    append_result(f"Latent prior design, {args.data}, model {args.model}", lines)


if __name__ == "__main__":
    main()
