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
    add_stream_options,
    check_outputs,
    load_model,
    non_negative_int,
    positive_float,
    positive_int,
    seed_everything,
    set_threads,
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
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="passes over the codes (default: enough for 60,000 optimizer updates and at least 400, "
        "e.g. 7,500 for 1,829 codes and 400 for 67,613)",
    )
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
    p.add_argument(
        "--codes",
        choices=("encoder", "refined", "checked"),
        default="encoder",
        help="which codes of the training crystals the prior models: the encoder's own (default, one pass), "
        "codes refined on each crystal (no restarts), or checked codes (refined and decoded until the "
        "crystal comes back, the model's round-trip default; slow)",
    )
    p.add_argument(
        "--atom-counts",
        action="store_true",
        help="also record the training crystals' joint table of (number of elements, number of atoms), so that "
        "'nesf sample' draws each crystal's number of atoms from it, as DiffCSP and FlowMM do (default: only "
        "the number of elements is recorded)",
    )
    p.add_argument(
        "--charge-balanced",
        action="store_true",
        help="fit the prior only to the training crystals whose composition SMACT can balance (charge neutrality "
        "and the Pauling electronegativity test, the CDVAE protocol's compositional validity); the others are "
        "left out and counted (the prior's card records it)",
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
        "atom are counted there as failed) and a picture of the first ones, OUT/samples.png. Samples are decoded "
        "without polishing or symmetrisation, except where a model records otherwise (carbon_24 and perov_5 "
        "symmetrise theirs; --no-symmetrize turns it off).",
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
    p.add_argument(
        "--n-elements",
        default="auto",
        metavar="K|auto|any",
        help="number of elements of each crystal: K (e.g. 3 for ternaries), 'auto' (the default: drawn from the "
        "histogram of the prior's training crystals where the prior records one, as mp's does) or 'any' (whatever "
        "the decodes hold); codes are drawn and decoded until each crystal has its count",
    )
    p.add_argument(
        "--n-atoms",
        default="auto",
        metavar="N|auto|any",
        help="number of atoms per cell of each crystal: N, 'auto' (the default: drawn with the number of elements "
        "from the table of the prior's training crystals where the prior records one, as perov_5's does) or 'any'",
    )
    p.add_argument(
        "--draws-per-crystal",
        type=positive_int,
        default=None,
        metavar="M",
        help="with a number of elements or atoms: latent codes decoded per crystal at most (default 40); a crystal "
        "whose count no decode reached by then takes the unused decode nearest in count (summary.json counts them)",
    )
    from nesf.cli.design import add_conditional_options
    from nesf.cli.relax import add_sample_relax_options

    add_conditional_options(p)
    add_sample_relax_options(p)
    add_stream_options(p)
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
    p.add_argument(
        "--fingerprint-cache",
        metavar="DIR",
        default=None,
        help="keep every crystal's fingerprints here and reuse them (a reference set is fingerprinted once; "
        "a killed run resumes; default ~/.cache/nesf/fingerprints, or $NESF_CACHE_DIR/fingerprints)",
    )
    p.add_argument("--no-fingerprint-cache", action="store_true", help="compute every fingerprint, store none")
    from nesf.cli.relax import add_relaxed_metric_options

    add_relaxed_metric_options(p)
    p.set_defaults(func=cmd_generation_metrics)


def cmd_fit_prior(args: argparse.Namespace) -> int:
    """Fit a latent prior (flow matching) to the encoded training crystals of a model."""
    from nesf.data.readers import read_crystals
    from nesf.generation.prior import PriorConfig, default_epochs, fit_prior, save_prior

    check_outputs(args, folder=False)
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: is a folder; name the prior file, e.g. prior.pt")
    seed_everything(args.seed)
    model = load_model(args)
    if hasattr(model, "with_refinement"):
        if args.codes == "encoder":
            model = model.with_refinement(steps=0)
        elif args.codes == "refined":
            model = model.with_refinement(restarts=0)
    elif args.codes != "encoder":
        raise ValueError(f"--codes {args.codes}: {args.model} is a voxel model; only NeSF models refine codes")
    crystals = model.prepare(read_crystals(args.data, conventional=args.conventional))
    left_out = 0
    if args.charge_balanced:
        from nesf.metrics.generation import composition_valid

        kept = [c for c in crystals if composition_valid(c)]
        left_out = len(crystals) - len(kept)
        if not kept:
            raise ValueError(f"{args.data}: --charge-balanced left no crystal (SMACT balances none of them)")
        crystals = kept
    z = model.encode_crystals(crystals)
    epochs = args.epochs if args.epochs is not None else default_epochs(len(z))
    from nesf.generation.elements import element_count_histogram, makeup_table, n_elements

    cfg = PriorConfig(
        latent_dim=z.shape[1],
        epochs=epochs,
        variance_kept=args.variance_kept,
        temperature=args.temperature,
        element_counts=element_count_histogram(n_elements(c) for c in crystals),
        makeup_counts=makeup_table(crystals) if args.atom_counts else None,
    )
    prior, record = fit_prior(z, cfg, seed=args.seed, minutes=args.minutes, progress=not args.quiet)
    card = {
        "model": str(args.model),
        "model_sha256": model.info.get("sha256"),
        "data": str(args.data),
        "n_crystals": len(crystals),
        "charge_balanced_only": bool(args.charge_balanced),
        "left_out_not_charge_balanced": left_out,
        "codes": args.codes,
        "seed": args.seed,
        **record,
        "command": "nesf " + " ".join(sys.argv[1:]),
    }
    save_prior(args.out, prior, model.vocab.to_dict(), card, args.seed)
    print(
        f"fitted a latent prior to {len(crystals)} crystals ("
        + (f"{left_out} not charge-balanced left out; " if args.charge_balanced else "")
        + f"{record['components']} principal components keeping "
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
    """New crystals from the latent space: codes drawn from a prior, decoded chunk by chunk, written as they come."""
    from nesf.cli.relax import check_sample_relax
    from nesf.io.stream import process_rank, relaunch_with_jobs

    if args.jobs > 1 and process_rank()[1] == 1:
        if args.head is not None:
            raise ValueError("--jobs: conditional sampling (--property) runs in one process")
        return relaunch_with_jobs(args.argv, args.jobs)
    if not args.resume:
        check_outputs(args)
    check_sample_relax(args)
    model = load_model(args)
    if hasattr(model, "for_sampling"):  # a checkpoint's symmetrisation default is for round trips
        model = model.for_sampling()
    if args.temperature is None and hasattr(model, "prior"):
        args.temperature = float(model.prior(args.prior).cfg.temperature)
    if args.head is not None:  # conditional sampling: codes kept near a target by a property head
        if args.n_elements not in ("auto", "any") or args.n_atoms not in ("auto", "any"):
            raise ValueError("--n-elements / --n-atoms: conditional sampling (--property) keeps codes near a target")
        if args.resume:
            raise ValueError("--resume: conditional sampling (--property) does not save chunks; run it again")
        from nesf.cli.design import sample_conditional

        return sample_conditional(args, model)
    return _sample_in_chunks(args, model)


def _sample_in_chunks(args: argparse.Namespace, model) -> int:  # noqa: ANN001
    """Draw the codes (or each chunk its own), decode chunk by chunk (saved as done, resumable), write the outputs."""
    import json

    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from nesf.cli.roundtrip import read_shard
    from nesf.generation.elements import MAX_DRAWS, atoms_spec, draw_makeups, draw_targets, matched_chunk, target_spec
    from nesf.generation.records import sample_records
    from nesf.io.stream import ChunkedRun
    from nesf.io.writers import cif_text, extxyz_text

    if args.n < 1:
        raise ValueError(f"the number of crystals to sample must be at least 1, got {args.n}")
    prior = model.prior(args.prior)
    target = target_spec(args.n_elements, prior.cfg.element_counts)
    atoms = atoms_spec(args.n_atoms, getattr(prior.cfg, "makeup_counts", None))
    if target is None and atoms is None:
        z = prior.sample(args.n, seed=args.seed, temperature=args.temperature)
        drawn_digest = _digest(z)
    else:  # codes are drawn chunk by chunk until each crystal has its make-up
        if atoms is None:  # the number of elements alone: drawn as before atom counts existed
            targets = draw_targets(target, args.n, args.seed)
        else:
            targets = draw_makeups(target, atoms, args.n, args.seed)
        drawn_digest = _digest(torch.as_tensor(targets))
    manifest = {
        "command": "sample",
        "model": str(args.model),
        "model_sha256": str(model.info.get("sha256") or ""),
        "prior": _prior_description(model, args.prior),
        "seed": args.seed,
        "temperature": args.temperature,
        "n": args.n,
        "settings": model.settings.to_dict() if hasattr(model, "settings") else None,
        "n_elements": "any" if target is None else target,
        "draws_per_crystal": None if target is None and atoms is None else args.draws_per_crystal or MAX_DRAWS,
        "codes_sha256": drawn_digest,
    }
    if atoms is not None:
        manifest["n_atoms"] = atoms
    run = ChunkedRun(args.out, manifest, resume=args.resume, chunk_size=args.chunk_size)
    show = not args.quiet and run.rank == 0
    initial = min(args.n, run.resumed_chunks * run.chunk_size)
    with tqdm(total=args.n, initial=initial, desc="decode", unit="crystal", disable=not show) as bar:
        for k, chunk in run.chunks(range(args.n)):
            if target is None and atoms is None:
                crystals = model.decode_crystals(z[chunk], ids=[f"sample-{i:05d}" for i in chunk])
                drawn, unmatched = len(chunk), 0
            else:
                draws = manifest["draws_per_crystal"]
                draw = matched_chunk(model, prior, targets, chunk, args.seed, k, args.temperature, draws)
                crystals, drawn, unmatched = draw.crystals, draw.drawn, draw.unmatched
            decoded = [c for c in crystals if c.n_atoms]
            run.save(
                k,
                records=np.array([json.dumps(r) for r in sample_records(decoded)], dtype=str),
                cif=np.array([cif_text(c) for c in decoded], dtype=str),
                xyz=np.array([extxyz_text([c]) for c in decoded], dtype=str),
                failed=np.array([c.id for c in crystals if not c.n_atoms], dtype=str),
                drawn=np.array([drawn, unmatched], dtype=np.int64),
            )
            bar.update(min(len(chunk) * run.world, args.n - bar.n))
    done: dict = {}

    def merge(shards: list[Path], tmp: Path) -> None:
        read_all = args.relax or args.screen is not None
        done.update(_write_samples(args, model, [read_shard(s) for s in shards] if read_all else shards, tmp))

    if not run.finish(merge):
        return 0
    from nesf.generation.records import format_samples

    if done["first_records"]:
        print(format_samples(done["first_records"], limit=None))
        written = done["n_decoded"] - done["n_screened_out"]
        if written > len(done["first_records"]):
            print(f"... {written - len(done['first_records'])} more (all of them in summary.json)")
    screened = f", {done['n_screened_out']} screened out" if args.screen is not None else ""
    codes = f"{args.n} latent codes"
    if target is not None or atoms is not None:
        how = _makeup_words(target, atoms)
        codes = (
            f"{args.n} crystals {how} ({done['n_codes_drawn']} latent codes decoded; "
            f"{done['n_unmatched']} took another count)"
        )
    print(
        f"sampled {codes}: {done['n_decoded']} decoded to crystals, {done['n_failed']} failed (no atom "
        f"found){screened}; wrote {args.out} (CIFs, all.extxyz, summary.json{', samples.png' if done['grid'] else ''})"
    )
    return 0


def _makeup_words(target, atoms) -> str:  # noqa: ANN001 - what --n-elements / --n-atoms resolved to
    """How the samples' make-up was chosen, in words."""
    if isinstance(atoms, list):
        if isinstance(target, int):
            return f"of {target} elements each, the number of atoms drawn from the prior's training crystals"
        drawn = "numbers of elements and atoms" if target is not None else "number of atoms"
        return f"each with its {drawn} drawn from the table of the prior's training crystals"
    if atoms is None and not isinstance(target, list):
        return f"of {target} elements each"
    words = []
    if isinstance(target, list):
        words.append("a number of elements drawn from the histogram of the prior's training crystals")
    elif target is not None:
        words.append(f"{target} elements")
    if atoms is not None:
        words.append(f"{atoms} atoms per cell")
    return "each with " + " and ".join(words)


def _digest(z) -> str:  # noqa: ANN001
    import hashlib

    return hashlib.sha256(z.detach().cpu().numpy().tobytes()).hexdigest()


def _write_samples(args: argparse.Namespace, model, shards: list, tmp: Path) -> dict:  # noqa: ANN001
    """Write the samples' outputs into ``tmp`` from the chunks, in order; what the summary line needs.

    Without ``--relax`` or ``--screen`` the chunks are read one at a time; with either every
    decoded crystal is read back (screening and relaxation give each its energies before the
    files are written; screening drops some).
    """
    import numpy as np

    from nesf.cli.relax import relax_samples, screen_samples
    from nesf.cli.roundtrip import read_shard
    from nesf.data.extxyz import crystal_from_extxyz_text
    from nesf.io.writers import unique_stem, write_json
    from nesf.viz.html_report import MAX_VIEWS

    tmp.mkdir(parents=True)
    energy_fields: dict = {}  # summary.json's fields of the screen and the relaxation
    screened_out = 0
    if args.relax or args.screen is not None:  # the crystals gain properties: their files are written from them
        decoded = [crystal_from_extxyz_text(x) for s in shards for x in s["xyz"]]
        keep, screened = screen_samples(args, decoded)
        records = [r for r, k in zip([r for s in shards for r in s["records"]], keep) if k]
        screened_out = len(decoded) - len(records)
        decoded = [c for c, k in zip(decoded, keep) if k]
        for rec, crystal in zip(records, decoded):
            e_form = (crystal.info.get("properties") or {}).get("chgnet_formation_energy_ev")
            if e_form is not None:
                rec["chgnet_formation_energy_ev"] = e_form
        energy_fields = {**screened, **relax_samples(args, decoded, tmp)}
        failed_all = [f for s in shards for f in s["failed"]]
        drawn_all = np.sum([s["drawn"] for s in shards], axis=0)
        shards = [{"records": records, "cif": None, "xyz": None, "failed": failed_all, "drawn": drawn_all}]
        relaxed_crystals = iter(decoded)
    keep_views = max(args.grid, MAX_VIEWS if args.html else 0)
    records: list[dict] = []
    failed: list[str] = []
    drawn = np.zeros(2, dtype=np.int64)  # codes decoded (more than n with a number of elements), slots unmatched
    shown: list = []
    seen: dict[str, int] = {}
    with open(tmp / "all.extxyz", "w") as xyz_out:
        for shard in shards:
            s = shard if isinstance(shard, dict) else read_shard(shard)
            recs = s["records"]
            if s["cif"] is None:  # screened or relaxed: written from the crystals
                from nesf.io.writers import cif_text, extxyz_text

                crystals = [next(relaxed_crystals) for _ in recs]
                cifs, xyzs = [cif_text(c) for c in crystals], [extxyz_text([c]) for c in crystals]
            else:
                cifs, xyzs = s["cif"], s["xyz"]
            for rec, cif, xyz in zip(recs, cifs, xyzs):
                (tmp / f"{unique_stem(rec['id'], seen)}.cif").write_text(cif)
                xyz_out.write(xyz)
                if len(shown) < keep_views:
                    shown.append(crystal_from_extxyz_text(xyz))
            records.extend(recs)
            failed.extend(s["failed"])
            drawn += s["drawn"]
    if not records:
        (tmp / "all.extxyz").unlink()
    grid = bool(args.grid and shown)
    if grid:
        from nesf.viz.plots import plot_grid

        picture = shown[: args.grid]
        plot_grid(picture, tmp / "samples.png", title=f"{len(picture)} of {len(records)} sampled crystals")
    summary = {
        "model": str(args.model),
        "prior": _prior_description(model, args.prior),
        "seed": args.seed,
        "temperature": args.temperature,
        "n_requested": args.n,
        "n_elements": args.n_elements,
        "n_atoms": args.n_atoms,
        "n_codes_drawn": int(drawn[0]),
        "n_elements_unmatched": int(drawn[1]),
        "n_decoded": len(records) + screened_out,
        "n_failed": len(failed),
        "n_screened_out": screened_out,
        "n_written": len(records),
        "failed": failed,
        "samples": records,
        "setting": "canonical" if getattr(model, "setting", "") == "canonical" else "model",
        **energy_fields,
    }
    write_json(tmp / "summary.json", summary)
    if args.html and records:
        from nesf.viz.html_report import write_html_report

        views = shown[:MAX_VIEWS]
        pairs = [(None, c) for c in views] + [(None, None)] * (len(records) - len(views))
        write_html_report(args.html, records, pairs, title=f"{len(records)} crystals sampled from {args.model}")
    return {
        "first_records": records[:25],
        "n_decoded": len(records) + screened_out,
        "n_screened_out": screened_out,
        "n_failed": len(failed),
        "n_codes_drawn": int(drawn[0]),
        "n_unmatched": int(drawn[1]),
        "grid": grid,
    }


def cmd_generation_metrics(args: argparse.Namespace) -> int:
    """Validity, coverage and property distances of generated crystals against reference ones."""
    from nesf.data.crystal import limits_changed
    from nesf.data.readers import read_crystals
    from nesf.io.writers import write_json
    from nesf.metrics.generation import generation_metrics

    check_outputs(args, folder=False)
    with limits_changed(min_distance=0.0):  # overlapping atoms are what structural validity counts
        generated = read_crystals(args.generated)
    reference = read_crystals(args.reference)
    jobs = set_threads(args.jobs)
    if args.no_fingerprint_cache and args.fingerprint_cache:
        raise ValueError("--fingerprint-cache and --no-fingerprint-cache exclude each other")
    from nesf.metrics.fingerprint_cache import default_fingerprint_cache

    cache = None if args.no_fingerprint_cache else (args.fingerprint_cache or default_fingerprint_cache())
    m = generation_metrics(
        generated,
        reference,
        args.preset,
        n_property=args.n_property,
        seed=args.seed,
        progress=not args.quiet,
        jobs=jobs,
        cache=cache,
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
