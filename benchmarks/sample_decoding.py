"""How prior samples are decoded: the same latent codes under several reconstruction settings.

    python benchmarks/sample_decoding.py --model mp --reference runs/relax/val500.extxyz --n 500 \
        [--seed 0] [--temperature T] [--variant NAME:FIELD=VALUE,...] [--full [--preset mp_20]] [--out DIR] \
        [--json OUT.json]

Codes are drawn once from the model's shipped prior (seeded, the prior's default temperature
unless ``--temperature``), exactly as ``nesf sample`` draws them, and decoded as ``sample`` decodes
them (:meth:`nesf.api.NeSF.for_sampling`) with each variant's fields of
:class:`~nesf.reconstruction.settings.ReconstructionSettings` changed. Each variant gets the quick
figures of the generation protocol (structural and compositional validity, Wasserstein distances
of density and number of elements over valid samples against the reference) and what explains
them (atoms, elements and single-atom elements per cell, volume per atom). A variant's
``recycle=N`` (not a reconstruction setting) encodes each decoded sample again with the encoder's
one pass and decodes that code, N times: the decode-encode cycle of the design path, applied to
free samples (an empty decode keeps its last non-empty crystal). A variant's ``decoder=CHECKPOINT``
decodes the same codes with another checkpoint of the same latent space (a continuation of the
model, e.g. one trained with ``--latent-noise``), so decoders are compared on identical codes
without refitting a prior. A variant's ``n_elements=auto`` (or ``=K``) makes its samples as ``nesf
sample --n-elements`` does: each sample's number of elements drawn from the prior's histogram (or
K), codes drawn and decoded until a decode has it (other codes than the one-per-sample draw
the other variants share). ``--full`` adds the
coverage figures (COV-R / COV-P), which cost about 15 minutes per 500 x 500 on one core;
``--out DIR`` writes each variant's samples to ``DIR/NAME.extxyz`` (for ``nesf generation-metrics``).
Choose on validation data; keep test splits for figures.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from _common import parse_changes, write_json

DEFAULT_VARIANTS = ("as-shipped:", "palette0.35:species_min_atoms=0.35")


def describe(crystals: list) -> dict:
    """Per-cell averages that explain the protocol's figures."""
    full = [c for c in crystals if c.n_atoms]
    counts = [Counter(c.numbers.tolist()) for c in full]
    return {
        "empty": len(crystals) - len(full),
        "atoms_mean": float(np.mean([c.n_atoms for c in full])),
        "elements_mean": float(np.mean([len(k) for k in counts])),
        "single_atom_elements_mean": float(np.mean([sum(v == 1 for v in k.values()) for k in counts])),
        "volume_per_atom_A3": float(np.mean([abs(np.linalg.det(c.lattice)) / c.n_atoms for c in full])),
    }


def quick_metrics(generated: list, reference: list) -> dict:
    """Validity and the two Wasserstein distances of the protocol (valid samples against the reference)."""
    from scipy.stats import wasserstein_distance

    from nesf.metrics.generation import composition_valid, structure_valid

    full = [c for c in generated if c.n_atoms]
    s_valid = np.array([structure_valid(c) for c in full] + [False] * (len(generated) - len(full)))
    c_valid = np.array([composition_valid(c) for c in full] + [False] * (len(generated) - len(full)))
    valid = [c for c, ok in zip(full, (s_valid & c_valid)[: len(full)]) if ok]

    def density(c) -> float:  # noqa: ANN001
        return float(c.to_pymatgen().density)

    def n_el(c) -> int:  # noqa: ANN001
        return len(set(c.numbers.tolist()))

    return {
        "struct_validity_pct": 100.0 * float(s_valid.mean()),
        "comp_validity_pct": 100.0 * float(c_valid.mean()),
        "density_emd": float(wasserstein_distance([density(c) for c in valid], [density(c) for c in reference])),
        "n_elements_emd": float(wasserstein_distance([n_el(c) for c in valid], [n_el(c) for c in reference])),
    }


def add_coverage_args(ap, preset: str) -> None:  # noqa: ANN001 - an argparse.ArgumentParser
    """``--full``, ``--preset`` and ``--fingerprint-cache``: the protocol's coverage figures, on request."""
    ap.add_argument("--full", action="store_true", help="also the coverage figures (slow)")
    ap.add_argument("--preset", default=preset, help=f"coverage cut-offs of the protocol (default {preset})")
    ap.add_argument("--fingerprint-cache", default=None, help="with --full: fingerprint cache folder (default none)")


def coverage(crystals: list, reference: list, args) -> dict:  # noqa: ANN001 - parsed arguments
    """COV-R and COV-P of the non-empty crystals against the reference (``{}`` without ``--full``)."""
    if not args.full:
        return {}
    from nesf.metrics.generation import generation_metrics

    full = [c for c in crystals if c.n_atoms]
    m = generation_metrics(full, reference, args.preset, progress=False, cache=args.fingerprint_cache)
    return {k: m[k] for k in ("cov_recall_pct", "cov_precision_pct")}


def recycled(model, crystals: list) -> list:  # noqa: ANN001
    """Each non-empty crystal encoded again (one encoder pass) and decoded; empty decodes keep the crystal before."""
    full = [i for i, c in enumerate(crystals) if c.n_atoms]
    codes = model.with_refinement(steps=0).encode_crystals([crystals[i] for i in full])
    again = model.decode_crystals(codes, ids=[crystals[i].id for i in full])
    out = list(crystals)
    for i, c in zip(full, again):
        if c.n_atoms:
            out[i] = c
    return out


def main() -> None:
    from nesf.reconstruction.settings import ReconstructionSettings

    defaults = ReconstructionSettings().to_dict() | {"recycle": 0, "decoder": "", "n_elements": "any"}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="shipped model name or checkpoint (with its prior)")
    ap.add_argument("--prior", default=None, help="prior file (default: the model's shipped prior)")
    ap.add_argument("--reference", required=True, help="reference crystals (validation data)")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--variant", action="append", default=None, help="name:field=value,... (repeatable)")
    add_coverage_args(ap, "mp_20")
    ap.add_argument("--out", default=None, help="write each variant's samples to OUT/NAME.extxyz")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from nesf.api import NeSF
    from nesf.data.readers import read_crystals
    from nesf.generation.elements import sample_matched, target_spec

    torch.set_num_threads(args.threads)
    base = NeSF.load(args.model)
    prior = base.prior(args.prior)
    z = prior.sample(args.n, seed=args.seed, temperature=args.temperature)
    reference = read_crystals(args.reference)
    ids = [f"sample-{i:05d}" for i in range(args.n)]
    out = {
        "model": args.model,
        "reference": args.reference,
        "n": args.n,
        "seed": args.seed,
        "temperature": args.temperature if args.temperature is not None else prior.cfg.temperature,
        "reference_stats": describe(reference),
        "variants": [],
    }
    for name, changes in [parse_changes(v, defaults) for v in (args.variant or DEFAULT_VARIANTS)]:
        recycle = changes.pop("recycle", 0)
        decoder = changes.pop("decoder", "")
        counted = str(changes.pop("n_elements", "any"))
        model = (NeSF.load(decoder) if decoder else base).for_sampling()
        if model.latent_dim != base.latent_dim or model.vocab.to_dict() != base.vocab.to_dict():
            raise SystemExit(f"{decoder}: another latent size or vocabulary than {args.model}'s")
        if changes:
            model = model.with_settings(**changes)
        t0 = time.perf_counter()
        target = target_spec(counted, prior.cfg.element_counts)
        if target is None:
            crystals = model.decode_crystals(z, ids=ids)
        else:  # as `nesf sample` makes them: codes drawn per chunk until each sample has its count
            crystals = sample_matched(model, prior, args.n, target, args.seed, args.temperature)
            changes["n_elements"] = counted
        for _ in range(recycle):
            crystals = recycled(model, crystals)
        if recycle:
            changes["recycle"] = recycle
        if decoder:
            changes["decoder"] = decoder
        row = {"name": name, "changes": changes, "decode_seconds": time.perf_counter() - t0}
        if args.out:
            from nesf.io.writers import extxyz_text

            Path(args.out).mkdir(parents=True, exist_ok=True)
            Path(args.out, f"{name}.extxyz").write_text(extxyz_text([c for c in crystals if c.n_atoms]))
        row |= describe(crystals) | quick_metrics(crystals, reference) | coverage(crystals, reference, args)
        out["variants"].append(row)
        write_json(args.json, out)
    ref = out["reference_stats"]
    print(f"\n{args.model}, {args.n} samples (seed {args.seed}, T {out['temperature']}) vs {args.reference}")
    cols = (
        "struct_validity_pct",
        "comp_validity_pct",
        "density_emd",
        "n_elements_emd",
        "atoms_mean",
        "elements_mean",
        "single_atom_elements_mean",
        "volume_per_atom_A3",
    )
    print(f"{'variant':<14} " + " ".join(f"{c[:12]:>12}" for c in cols))
    for r in out["variants"]:
        print(f"{r['name']:<14} " + " ".join(f"{r[c]:>12.3f}" for c in cols))
    print(f"{'reference':<14} " + " " * 52 + " ".join(f"{ref[c]:>12.3f}" for c in cols[4:]))


if __name__ == "__main__":
    main()
