"""``nesf fit-prior``, ``sample`` and ``generation-metrics``: new crystals from the latent space, and their metrics."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nesf import DEFAULT_MODEL
from nesf.cli.common import (
    HTML_HELP,
    MAX_ATOMS_HELP,
    add_model_options,
    check_outputs,
    load_model,
    non_negative_int,
    positive_float,
    seed_everything,
    set_threads,
    write_structures,
)


def add_fit_prior(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf fit-prior``."""
    p = sub.add_parser(
        "fit-prior",
        help="fit a latent prior (flow matching) to a model's encoded training crystals",
        description="Encode DATA with MODEL and fit a small flow-matching model of the latent codes, so that "
        "'nesf sample' can draw new codes from it. Writes OUT (a checkpoint with a SHA-256 and a card).",
    )
    add_model_options(p, decoding=False, encoding=False)
    p.add_argument("data", help="the model's training crystals")
    p.add_argument("--out", required=True, help="the prior file to write (e.g. prior.pt)")
    p.add_argument("--epochs", type=int, default=400, help="passes over the codes (default 400)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget (stops earlier)")
    p.add_argument(
        "--variance-kept",
        type=float,
        default=0.999,
        help="model the codes' leading principal components keeping this share of their variance "
        "(default 0.999; 1: every direction)",
    )
    p.add_argument(
        "--temperature",
        type=positive_float,
        default=1.0,
        help="the sampling temperature the prior records as its default (default 1: the fitted flow); "
        "choose it on validation data, e.g. with benchmarks/generation_study.py",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_fit_prior)


def add_sample(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf sample``."""
    p = sub.add_parser(
        "sample",
        help="new crystals from the latent space (prior samples, decoded)",
        description="Draw N latent codes from a prior (--prior, else the one shipped with the model, else N(0, I) "
        "for a VAE) and decode them; write OUT/*.cif, OUT/all.extxyz, OUT/summary.json (decodes that found no "
        "atom are counted there as failed) and a picture of the first ones, OUT/samples.png.",
    )
    add_model_options(p, encoding=False, default=DEFAULT_MODEL, reading=False)
    p.add_argument("--prior", default=None, help="prior file from 'nesf fit-prior'")
    p.add_argument("--n", type=int, required=True, help="crystals to sample")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--grid",
        type=non_negative_int,
        default=16,
        metavar="K",
        help="draw the first K crystals in OUT/samples.png, titled with formula and space group (default 16; 0: none)",
    )
    p.add_argument("--html", metavar="REPORT.html", help=HTML_HELP.replace("input and output", "crystal"))
    p.add_argument(
        "--temperature",
        type=positive_float,
        default=None,
        help="scale of the prior's starting noise (1: the fitted distribution; below 1: more typical, less "
        "diverse crystals; default: the prior's own, chosen on validation data: 0.85 for mp's, 1 for the others)",
    )
    from nesf.cli.design import add_conditional_options
    from nesf.cli.relax import add_sample_relax_options

    add_conditional_options(p)
    add_sample_relax_options(p)
    p.set_defaults(func=cmd_sample)


def add_generation_metrics(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf generation-metrics``."""
    p = sub.add_parser(
        "generation-metrics",
        help="validity, coverage and property distances of generated crystals (the CDVAE protocol)",
        description="Structural and compositional validity, COV-R / COV-P (CrystalNN and Magpie fingerprints "
        "with the preset's cut-offs) and Wasserstein distances of density and number of elements between "
        "GENERATED and REFERENCE (anything nesf reads).",
    )
    p.add_argument("generated", help="generated crystals")
    p.add_argument("reference", help="reference crystals (e.g. a test split)")
    p.add_argument("--preset", choices=("perov_5", "carbon_24", "mp_20"), default="perov_5")
    p.add_argument("--n-property", type=int, default=1000, help="valid crystals for the distances (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed of that choice (default 0)")
    p.add_argument(
        "--jobs",
        type=non_negative_int,
        default=None,
        help="processes for the fingerprints (default or 0: the cores not already busy)",
    )
    p.add_argument("--json", metavar="OUT.json", help="also write the metrics as JSON")
    p.add_argument("--max-atoms", type=int, default=None, help=MAX_ATOMS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from nesf.cli.relax import add_relaxed_metric_options

    add_relaxed_metric_options(p)
    p.set_defaults(func=cmd_generation_metrics)


def cmd_fit_prior(args: argparse.Namespace) -> int:
    """Fit a latent prior (flow matching) to the encoded training crystals of a model."""
    from nesf.data.readers import read_crystals
    from nesf.generation.prior import PriorConfig, fit_prior, save_prior

    check_outputs(args, folder=False)
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: is a folder; name the prior file, e.g. prior.pt")
    seed_everything(args.seed)
    model = load_model(args)
    if hasattr(model, "with_refinement"):  # the prior models the encoder's own codes, which sampling decodes
        model = model.with_refinement(steps=0)
    crystals = model.prepare(read_crystals(args.data, conventional=args.conventional))
    z = model.encode_crystals(crystals)
    cfg = PriorConfig(
        latent_dim=z.shape[1], epochs=args.epochs, variance_kept=args.variance_kept, temperature=args.temperature
    )
    prior, record = fit_prior(z, cfg, seed=args.seed, minutes=args.minutes, progress=not args.quiet)
    card = {
        "model": str(args.model),
        "model_sha256": model.info.get("sha256"),
        "data": str(args.data),
        "n_crystals": len(crystals),
        "seed": args.seed,
        **record,
        "command": "nesf " + " ".join(sys.argv[1:]),
    }
    save_prior(args.out, prior, model.vocab.to_dict(), card, args.seed)
    print(
        f"fitted a latent prior to {len(crystals)} crystals ({record['components']} principal components keeping "
        f"{100 * record['variance_kept']:.2f} % of the codes' variance; {record['epochs']} epochs, "
        f"{record['seconds']:.0f} s, final flow-matching loss {record['final_loss']:.4f}); wrote {args.out}"
    )
    return 0


def _prior_description(model, prior: str | None) -> str:  # noqa: ANN001
    """Which prior ``nesf sample`` drew from, in words."""
    from nesf.registry import shipped_prior_path

    if prior:
        return str(prior)
    shipped = shipped_prior_path(model.info.get("source"))
    if shipped is not None:
        return f"shipped with the model (weights/priors/{shipped.name})"
    return "N(0, I) (a VAE's prior)"


def cmd_sample(args: argparse.Namespace) -> int:
    """New crystals from the latent space: codes drawn from a prior, decoded, written as CIFs and extxyz."""
    from nesf.cli.relax import check_sample_relax, relax_samples
    from nesf.io.writers import staged_folder, write_json

    check_outputs(args)
    check_sample_relax(args)
    model = load_model(args)
    if args.temperature is None and hasattr(model, "prior"):
        args.temperature = float(model.prior(args.prior).cfg.temperature)
    if args.head is not None:  # conditional sampling: codes kept near a target by a property head
        from nesf.cli.design import sample_conditional

        return sample_conditional(args, model)
    crystals = model.sample_crystals(
        args.n, seed=args.seed, prior=args.prior, progress=not args.quiet, temperature=args.temperature
    )
    decoded = [c for c in crystals if c.n_atoms]
    failed = [c.id for c in crystals if not c.n_atoms]
    from nesf.generation.records import format_samples, sample_records

    records = sample_records(decoded)
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        relaxed = relax_samples(args, decoded, tmp)  # nothing without --relax
        if decoded:
            write_structures(tmp, decoded)
            if args.grid:
                from nesf.viz.plots import plot_grid

                shown = decoded[: args.grid]
                plot_grid(shown, tmp / "samples.png", title=f"{len(shown)} of {len(decoded)} sampled crystals")
        write_json(
            tmp / "summary.json",
            {
                "model": str(args.model),
                "prior": _prior_description(model, args.prior),
                "seed": args.seed,
                "temperature": args.temperature,
                "n_requested": args.n,
                "n_decoded": len(decoded),
                "n_failed": len(failed),
                "failed": failed,
                "samples": records,
                "setting": "canonical" if getattr(model, "setting", "") == "canonical" else "model",
                **relaxed,
            },
        )
    if args.html and decoded:
        from nesf.viz.html_report import write_html_report

        title = f"{len(decoded)} crystals sampled from {args.model}"
        write_html_report(args.html, records, [(None, c) for c in decoded], title=title)
    if records:
        print(format_samples(records))
    print(
        f"sampled {args.n} latent codes: {len(decoded)} decoded to crystals, {len(failed)} failed (no atom found); "
        f"wrote {args.out} (CIFs, all.extxyz, summary.json{', samples.png' if args.grid and decoded else ''})"
    )
    return 0


def cmd_generation_metrics(args: argparse.Namespace) -> int:
    """Validity, coverage and property distances of generated crystals against reference ones."""
    from nesf.data.readers import read_crystals
    from nesf.io.writers import write_json
    from nesf.metrics.generation import generation_metrics

    check_outputs(args, folder=False)
    generated = read_crystals(args.generated)
    reference = read_crystals(args.reference)
    jobs = set_threads(args.jobs)
    m = generation_metrics(
        generated,
        reference,
        args.preset,
        n_property=args.n_property,
        seed=args.seed,
        progress=not args.quiet,
        jobs=jobs,
    )
    from nesf.cli.relax import RELAXED_LABELS, relaxed_generation_metrics

    m.update(relaxed_generation_metrics(args, generated))  # nothing without --relaxed
    labels = (
        ("n_generated", "generated crystals", "{:d}"),
        ("n_reference", "reference crystals", "{:d}"),
        ("struct_validity_pct", "structural validity [%]", "{:.2f}"),
        ("comp_validity_pct", "compositional validity [%]", "{:.2f}"),
        ("cov_recall_pct", "coverage COV-R [%]", "{:.2f}"),
        ("cov_precision_pct", "coverage COV-P [%]", "{:.2f}"),
        ("density_emd", "density Wasserstein distance [g/cm^3]", "{:.4f}"),
        ("n_elements_emd", "number-of-elements Wasserstein distance", "{:.4f}"),
        *(row for row in RELAXED_LABELS if row[0] in m),
    )
    print(
        f"generation metrics ({args.preset} cut-offs: structure {m['struct_cutoff']}, composition {m['comp_cutoff']})"
    )
    for key, label, fmt in labels:
        value = m[key]
        print(f"{label:<42} {'n/a' if value is None else fmt.format(value):>10}")
    if args.json:
        write_json(args.json, {"generated": str(args.generated), "reference": str(args.reference), **m})
    return 0
