"""``nesf check-fields``, ``nesf evaluate`` and ``nesf reconstruct``: round trips of crystals and their metrics."""

from __future__ import annotations

import argparse
import sys
import time

from nesf import DEFAULT_MODEL
from nesf.cli.common import (
    HTML_HELP,
    MAX_ATOMS_HELP,
    THREADS_HELP,
    add_model_options,
    check_outputs,
    encodable,
    load_model,
    read_inputs,
    seed_everything,
    set_threads,
    write_structures,
)


def add_reconstruction_options(p: argparse.ArgumentParser) -> None:
    """The reconstruction settings of ``nesf check-fields`` (the published ones by default)."""
    g = p.add_argument_group("reconstruction (published settings by default)")
    g.add_argument("--grid-spacing", type=float, default=0.5, help="particle grid spacing, Angstrom (default 0.5)")
    g.add_argument("--steps", type=int, default=64, help="particle moves (default 64)")
    g.add_argument("--batch-size", type=int, default=64, help="crystals reconstructed together (default 64)")


def _settings(args: argparse.Namespace):  # noqa: ANN202
    """The :class:`~nesf.reconstruction.settings.ReconstructionSettings` of the command line."""
    from nesf.reconstruction.settings import ReconstructionSettings

    return ReconstructionSettings(grid_spacing=args.grid_spacing, n_steps=args.steps, batch_size=args.batch_size)


def add_verdict_options(p: argparse.ArgumentParser) -> None:
    """The options of the per-crystal verdicts of ``nesf evaluate`` and ``nesf reconstruct``."""
    p.add_argument("--json", metavar="OUT.json", help="also write the metrics and per-crystal records as JSON")
    p.add_argument("--csv", metavar="OUT.csv", help="also write the per-crystal table as CSV")
    p.add_argument("--html", metavar="REPORT.html", help=HTML_HELP)
    p.add_argument("--no-match", action="store_true", help="skip the StructureMatcher comparison")
    p.add_argument("--jobs", type=int, default=None, help="processes for StructureMatcher (default: all cores)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 2, nothing written) when a crystal lies outside the model's training domain",
    )
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="go on past files that cannot be read and crystals that cannot be encoded, and list them",
    )


def add_check_fields(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf check-fields``."""
    p = sub.add_parser(
        "check-fields",
        help="reconstruct crystals from their exact structure fields and report the metrics",
        description=(
            "Reconstruct every crystal of DATA from its exact (ground-truth) structure field with "
            "the reconstruction algorithm and print the paper's metrics and the StructureMatcher "
            "match rate. With exact fields every crystal must come back unchanged. Exit code 1 if "
            "some crystal cannot be represented (the reason is printed), 2 on bad input."
        ),
    )
    p.add_argument("data", help="extxyz, CIF, folder of CIFs, or CSV with a 'cif' column")
    p.add_argument("--frame", choices=("paper", "periodic"), default="paper", help="field frame (default paper)")
    p.add_argument("--json", metavar="OUT.json", help="also write the metrics as JSON")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--conventional", action="store_true", help="convert crystals to conventional standard cells first")
    p.add_argument("--no-match", action="store_true", help="skip the StructureMatcher comparison")
    p.add_argument("--jobs", type=int, default=None, help="processes for StructureMatcher (default: all cores)")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--max-atoms", type=int, default=None, help=MAX_ATOMS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_reconstruction_options(p)
    p.set_defaults(func=cmd_check_fields)


def add_evaluate(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf evaluate``."""
    p = sub.add_parser(
        "evaluate",
        help="round-trip crystals through a model and report the metrics",
        description=(
            "Round-trip every crystal of DATA through a trained model; print the paper's metrics, the "
            "StructureMatcher match rate and a per-crystal table (id, formulas, atoms, matched, RMSE, in "
            "domain). Crystals outside the model's training domain are named in a warning line each."
        ),
    )
    add_model_options(p, default=DEFAULT_MODEL)
    p.add_argument(
        "data", nargs="+", help="crystals to evaluate (extxyz, CIF, POSCAR, pymatgen JSON, ..., folders, CSVs)"
    )
    add_verdict_options(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0; also of --resettle's copies)")
    p.add_argument(
        "--resettle",
        action="store_true",
        help="also evaluate equivalent copies of every crystal: origin moved by a random fraction of the "
        "cell, axes permuted (right-handed), the Niggli-reduced cell, and all three; reported beside the "
        "originals (JSON: 'resettled')",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also report the metrics per crystal system (spglib, 0.1 A) and per atoms-per-cell bucket "
        "(JSON: 'by_crystal_system', 'by_atom_count')",
    )
    p.set_defaults(func=cmd_evaluate)


def add_reconstruct(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf reconstruct``."""
    p = sub.add_parser(
        "reconstruct",
        help="round-trip crystals; write CIFs and one extxyz",
        description=(
            "Round-trip crystals through a trained model and write one CIF per crystal plus all.extxyz, "
            "each in its input's own cell and origin; print a per-crystal table and 'k of n matched'."
        ),
    )
    add_model_options(p, default=DEFAULT_MODEL)
    p.add_argument("inputs", nargs="+", help="input crystals (files or folders)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    add_verdict_options(p)
    p.set_defaults(func=cmd_reconstruct)


def cmd_check_fields(args: argparse.Namespace) -> int:
    """Reconstruct every crystal from its exact field and report the metrics."""
    from nesf.data.readers import read_crystals
    from nesf.io.writers import write_json
    from nesf.metrics.report import evaluate_reconstruction, format_table
    from nesf.reconstruction.exact import default_bbox, diagnose, reconstruct_exact

    seed_everything(args.seed)
    set_threads(args.threads)
    settings = _settings(args)
    crystals = read_crystals(args.data, conventional=args.conventional)
    if args.frame == "periodic":
        crystals = [c.wrapped() for c in crystals]
    bbox = default_bbox(crystals, settings) if args.frame == "paper" else None
    t0 = time.perf_counter()
    pred = reconstruct_exact(crystals, args.frame, settings, bbox=bbox, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    metrics = evaluate_reconstruction(crystals, pred, args.frame, match=not args.no_match, n_jobs=args.jobs)
    metrics["seconds"] = seconds
    metrics["seconds_per_structure"] = seconds / len(crystals)
    problems = []
    for c, p in zip(crystals, pred):
        if p.n_atoms != c.n_atoms:
            reason = diagnose(c, args.frame, settings, bbox) or "the reconstruction found a different atom count"
            problems.append({"id": c.id, "reason": reason})
    result = {"data": str(args.data), "frame": args.frame, **metrics, "settings": settings.to_dict()}
    result["unrepresentable"] = problems
    print(format_table(metrics, title=f"exact-field reconstruction of {args.data} ({args.frame} frame)"))
    if problems:
        print(f"\n{len(problems)} crystal(s) cannot be represented with these settings:", file=sys.stderr)
        for prob in problems[:20]:
            print(f"  {prob['id']}: {prob['reason']}", file=sys.stderr)
    if args.json:
        write_json(args.json, result)
    return 1 if problems else 0


def _round_trip(model, crystals: list, args: argparse.Namespace, strict: bool = False):  # noqa: ANN001, ANN202
    """Reconstruct crystals (in the model's frame); metrics, reconstructions and per-crystal verdicts."""
    from nesf.errors import NesfError
    from nesf.metrics.matcher import match_rmse
    from nesf.metrics.report import evaluate_reconstruction, matched_metrics
    from nesf.metrics.verdicts import make_verdicts

    check = getattr(model, "check_domain", None)
    warnings = check(crystals) if check is not None else [[] for _ in crystals]
    for c, w in zip(crystals, warnings):
        if w:
            print(f"warning: {c.id}: outside the model's domain: {'; '.join(w)}", file=sys.stderr)
    if strict and any(warnings):
        n = sum(1 for w in warnings if w)
        raise NesfError(f"--strict: {n} of {len(crystals)} crystal(s) lie outside the model's domain; nothing written")
    t0 = time.perf_counter()
    pred = model.reconstruct_crystals(crystals, progress=not args.quiet)
    seconds = time.perf_counter() - t0
    metrics = evaluate_reconstruction(crystals, pred, model.frame, match=False)
    refinement = getattr(model, "refinement", None)
    if refinement is not None and refinement.steps and refinement.restarts:
        metrics["codes_restarted"] = model.restart_counts["restarted"]
        metrics["codes_recovered"] = model.restart_counts["recovered"]
    rmse = None if args.no_match else match_rmse(crystals, pred, n_jobs=args.jobs)
    if rmse is not None:
        metrics.update(matched_metrics(crystals, pred, rmse, model.frame))
    metrics["seconds"] = seconds
    metrics["seconds_per_structure"] = seconds / len(crystals)
    return metrics, pred, make_verdicts(crystals, pred, rmse, warnings)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Round-trip every crystal through the autoencoder and report the metrics."""
    import numpy as np

    from nesf.data.setting import RESETTLE_KINDS, resettle
    from nesf.io.writers import write_json
    from nesf.metrics.report import format_comparison, format_table
    from nesf.metrics.verdicts import format_verdicts, matched_line, write_verdicts_csv

    check_outputs(args, folder=False)
    seed_everything(args.seed)
    model = load_model(args)
    data = ", ".join(args.data)
    originals, skipped = read_inputs(args.data, args.conventional, args.skip_invalid)
    originals, unencodable = encodable(model, originals, args.skip_invalid)
    skipped += unencodable
    prepared = model.prepare(originals)
    metrics, pred, verdicts = _round_trip(model, prepared, args, strict=args.strict)
    parts = {}
    if args.breakdown:
        from nesf.metrics.breakdown import breakdown

        parts = breakdown(prepared, pred, verdicts, model.frame)
    setting = getattr(model, "setting", "as_given")
    steps = model.refinement.steps if hasattr(model, "refinement") else 0
    refined = f", codes refined {steps} steps" if steps else ""
    title = f"{args.model} on {data} ({model.frame} frame, {setting} setting{refined})"
    resettled: dict[str, dict] = {}
    if args.resettle:
        for k, kind in enumerate(RESETTLE_KINDS):
            rng = np.random.default_rng([args.seed, k])
            copies = model.prepare([resettle(c, kind, rng) for c in originals])
            resettled[kind] = _round_trip(model, copies, args)[0]
        columns = {"as given": metrics, **{f"re-set: {kind}": m for kind, m in resettled.items()}}
        print(format_comparison(columns, title=title))
    else:
        print(format_table(metrics, title=title))
    if parts:
        from nesf.metrics.breakdown import format_breakdown

        print()
        print(format_breakdown(parts))
    print()
    print(format_verdicts(verdicts, limit=25))
    if not args.no_match:
        print(matched_line(verdicts))
    for line in skipped:
        print(f"skipped: {line}")
    if args.csv:
        write_verdicts_csv(args.csv, verdicts)
    if args.json:
        payload = {
            "model": str(args.model),
            "data": data,
            "frame": model.frame,
            "setting": setting,
            **metrics,
            "settings": model.settings.to_dict(),
        }
        if hasattr(model, "refinement"):
            payload["refinement"] = model.refinement.to_dict()
        if args.resettle:
            payload["resettled"] = resettled
            payload["resettle_seed"] = args.seed
        payload.update(parts)
        payload["structures"] = [v.to_dict() for v in verdicts]
        payload["skipped"] = skipped
        write_json(args.json, payload)
    if args.html:
        from nesf.viz.html_report import write_html_report

        write_html_report(args.html, verdicts, list(zip(prepared, pred)), title=title, summary=metrics)
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """Round trip of input crystals; one CIF each plus one extxyz with all, and per-crystal verdicts."""
    from nesf.io.writers import staged_folder, write_json
    from nesf.metrics.verdicts import format_verdicts, matched_line, write_verdicts_csv

    check_outputs(args)
    model = load_model(args)
    crystals, skipped = read_inputs(args.inputs, args.conventional, args.skip_invalid)
    crystals, unencodable = encodable(model, crystals, args.skip_invalid)
    skipped += unencodable
    prepared = model.prepare(crystals)
    metrics, pred, verdicts = _round_trip(model, prepared, args, strict=args.strict)
    print(format_verdicts(verdicts))
    if not args.no_match:
        print(matched_line(verdicts))
    for line in skipped:
        print(f"skipped: {line}")
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        write_structures(tmp, pred)
    if args.csv:
        write_verdicts_csv(args.csv, verdicts)
    if args.html:
        from nesf.viz.html_report import write_html_report

        title = f"{args.model}: reconstruction of {', '.join(args.inputs)}"
        write_html_report(args.html, verdicts, list(zip(prepared, pred)), title=title, summary=metrics)
    if args.json:
        write_json(
            args.json,
            {
                "model": str(args.model),
                "inputs": list(args.inputs),
                "setting": "input",
                "n_matched": sum(1 for v in verdicts if v.matched),
                **metrics,
                "structures": [v.to_dict() for v in verdicts],
                "skipped": skipped,
            },
        )
    print(f"wrote {len(pred)} reconstructed crystal(s) to {args.out} (CIFs and all.extxyz, in the inputs' cells)")
    return 0
