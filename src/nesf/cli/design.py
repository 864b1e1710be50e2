"""``nesf fit-property``, ``predict`` and ``optimize``: property heads (on latent codes or on crystals), and design."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nesf.cli.common import add_model_options, check_outputs, load_model, positive_float, positive_int, seed_everything

HEAD_HELP = (
    "a head file from 'nesf fit-property', or the target name of a head shipped for --model "
    "(e.g. heat_ref or dir_gap with perov_5, energy_per_atom with carbon_24)"
)


def add_fit_property(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf fit-property``."""
    p = sub.add_parser(
        "fit-property",
        help="fit a property head (an MLP ensemble) on a model's latent codes or on the crystals",
        description="Fit an ensemble of small MLPs to the property KEY that each crystal of TRAIN carries (a CSV "
        "column or an extxyz info key). With --reads latent (the default) the MLPs read MODEL's codes (the "
        "encoder's own): the head that 'nesf optimize' and conditional sampling steer. With --reads crystal they "
        "read each crystal's site table (which element on which site, how each site is coordinated): the better "
        "predictor for 'nesf predict', which cannot steer codes. Writes OUT, a checkpoint with a SHA-256 and a card "
        "(target, units, model, data, validation MAE and R^2 with --val).",
    )
    add_model_options(p, decoding=False, encoding=False)
    p.add_argument("train", help="training crystals carrying the property (CSV, extxyz)")
    p.add_argument("--target", required=True, help="the property's name (CSV column or extxyz info key)")
    p.add_argument("--val", default=None, help="validation crystals carrying the property (MAE and R^2 in the card)")
    p.add_argument("--out", required=True, help="the head file to write (e.g. head.pt)")
    p.add_argument("--units", default=None, help="the property's units (default: known for the shared data sets)")
    p.add_argument(
        "--reads",
        choices=("latent", "crystal"),
        default="latent",
        help="what the head reads: latent codes (default; can steer optimisation and sampling) or crystals",
    )
    p.add_argument("--members", type=positive_int, default=5, help="ensemble members (default 5)")
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="passes over the training data (default 200 for a latent head, 300 for a crystal head)",
    )
    p.add_argument(
        "--loss",
        choices=("l1", "huber", "mse"),
        default="l1",
        help="training loss (default l1; mse ranks a target that is mostly one value, such as a band gap, better)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_fit_property)


def add_predict(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf predict``."""
    p = sub.add_parser(
        "predict",
        help="predict a property of crystals with a property head",
        description="Predict a property of the crystals in DATA with a head: the ensemble's mean and spread per "
        "crystal. A shipped target name uses the shipped crystal head where there is one (it reads the crystals "
        "in MODEL's setting), else the latent head (it reads MODEL's codes). With --json / --csv the predictions "
        "are written; when DATA carries the property, the MAE and R^2 as well.",
    )
    add_model_options(p, decoding=False, encoding=False)
    p.add_argument("data", help="crystals (CSV, extxyz, CIF(s))")
    p.add_argument("--property", required=True, dest="head", help=HEAD_HELP)
    p.add_argument(
        "--reads",
        choices=("auto", "latent", "crystal"),
        default="auto",
        help="with a shipped target name: which head (default auto: the crystal head where one ships)",
    )
    p.add_argument("--json", metavar="OUT.json", help="write predictions (and MAE / R^2) as JSON")
    p.add_argument("--csv", metavar="OUT.csv", help="write predictions as CSV (id, prediction, spread[, target])")
    p.set_defaults(func=cmd_predict)


def add_optimize(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf optimize``."""
    p = sub.add_parser(
        "optimize",
        help="optimise crystals' latent codes through a property head (CDVAE's protocol)",
        description="Start from the codes of the first --n crystals of START, take --steps Adam steps on the codes "
        "through the head (--minimize, --maximize or --target V) inside a trust region of the latent prior's "
        "principal coordinates, decode every --save-every steps (each code then continues from the encoder's code "
        "of its decoded crystal), and score the decoded crystals with the "
        "independent evaluator. Writes OUT/START_ID/step_NNNNN.cif, OUT/paths.csv, OUT/paths.png and "
        "OUT/summary.json (SR5 / SR10 / SR15 where the thresholds are known).",
    )
    add_model_options(p)
    p.add_argument("--property", required=True, dest="head", help=HEAD_HELP)
    p.add_argument("--start", required=True, help="starting crystals (their first --n)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--minimize", action="store_true", help="lower the property (the default)")
    goal.add_argument("--maximize", action="store_true", help="raise the property")
    goal.add_argument("--target", type=float, default=None, help="reach this value of the property")
    p.add_argument("--n", type=positive_int, default=100, help="starting crystals (default 100, as CDVAE)")
    p.add_argument("--steps", type=positive_int, default=5000, help="Adam steps (default 5000)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--save-every", type=positive_int, default=500, help="decode every K steps (default 500)")
    p.add_argument("--no-trust", action="store_true", help="plain Adam steps, no trust region")
    p.add_argument(
        "--no-recycle",
        action="store_true",
        help="do not continue from the encoder's code of each decoded crystal (the default recycles)",
    )
    p.add_argument("--trust-weight", type=positive_float, default=1.0, help="trust-region penalty (default 1)")
    p.add_argument("--elements", default=None, help="allowed elements, comma separated (e.g. Sr,Ti,O)")
    p.add_argument("--keep-composition", action="store_true", help="count only decodes with the start's formula")
    p.add_argument("--evaluator", default=None, help="independent evaluator file (default: the shipped one)")
    p.add_argument("--json", metavar="OUT.json", help="also write the summary here")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_optimize)


def _elements(text: str | None) -> tuple[str, ...] | None:
    """``"Sr,Ti,O"`` -> ``("Sr", "Ti", "O")``; None stays None."""
    if not text:
        return None
    out = tuple(e.strip() for e in text.split(",") if e.strip())
    if not out:
        raise ValueError(f"--elements {text!r}: no element given")
    return out


def cmd_fit_property(args: argparse.Namespace) -> int:
    """Fit a property head on a model's codes and write it."""
    from nesf.design.crystal_head import CrystalHeadConfig, save_crystal_head
    from nesf.design.head import HeadConfig, save_head
    from nesf.design.workflow import fit_property

    check_outputs(args, folder=False)
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: is a folder; name the head file, e.g. head.pt")
    seed_everything(args.seed)
    model = load_model(args)
    cfg: HeadConfig | CrystalHeadConfig | None
    if args.reads == "crystal":  # max_sites 0: the most atoms of a training crystal
        cfg = CrystalHeadConfig(max_sites=0, members=args.members, epochs=args.epochs or 300, loss=args.loss)
    else:
        cfg = HeadConfig(latent_dim=model.latent_dim, members=args.members, epochs=args.epochs or 200, loss=args.loss)
    head = fit_property(
        model,
        args.train,
        args.target,
        val=args.val,
        cfg=cfg,
        seed=args.seed,
        units=args.units,
        train_source=args.train,
        reads=args.reads,
        progress=not args.quiet,
    )
    head.card["command"] = "nesf " + " ".join(sys.argv[1:])
    if args.reads == "crystal":
        save_crystal_head(args.out, head)  # type: ignore[arg-type]
    else:
        save_head(args.out, head, model.vocab.to_dict())  # type: ignore[arg-type]
    c = head.card
    val = f"; validation MAE {c['val_mae']:.4g} {c['units']}, R^2 {c['val_r2']:.3f} on {c['val_n']}" if args.val else ""
    print(
        f"fitted a {c['members']}-member {args.reads} head of {args.target} on {c['n_train']} crystals{val}; "
        f"wrote {args.out}"
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict a property of crystals with a head."""
    import numpy as np

    from nesf.design.data import targets
    from nesf.design.head import regression_metrics
    from nesf.design.registry import describe_source
    from nesf.design.workflow import as_head, predict_prepared
    from nesf.io.writers import atomic_write, write_json

    check_outputs(args, folder=False)
    model = load_model(args)
    head = as_head(args.head, model, reads=args.reads)
    crystals = model.prepare(args.data)
    mean, spread = predict_prepared(model, crystals, head)
    truth = targets(crystals, head.target, args.data, required=False)
    known = bool(len(truth)) and bool(np.isfinite(truth).all())
    records = [
        {"id": c.id, "prediction": float(m), "spread": float(s), **({"target": float(t)} if known else {})}
        for c, m, s, t in zip(crystals, mean, spread, truth)
    ]
    out = {
        "target": head.target,
        "units": head.card.get("units", ""),
        "head": describe_source(head.card.get("source")),
        "reads": getattr(head, "reads", "latent"),
    }
    out["predictions"] = records
    if known:
        out.update({k: v for k, v in regression_metrics(mean, truth).items() if k in ("mae", "r2", "n")})
    if args.json:
        write_json(args.json, out)
    if args.csv:
        cols = ["id", "prediction", "spread", *(["target"] if known else [])]
        lines = [",".join(cols)] + [",".join(str(r[k]) for k in cols) for r in records]
        atomic_write(args.csv, lambda p: p.write_text("\n".join(lines) + "\n"))
    units = out["units"]
    if not (args.json or args.csv):
        for r in records[:20]:
            print(f"{r['id']}\t{r['prediction']:.4f} +- {r['spread']:.4f} {units}")
        if len(records) > 20:
            print(f"... {len(records) - 20} more (write them all with --json or --csv)")
    tail = f"; MAE {out['mae']:.4g} {units}, R^2 {out['r2']:.3f}" if known else ""
    print(f"predicted {head.target} of {len(records)} crystal{'s' if len(records) != 1 else ''}{tail}")
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    """Optimise crystals' codes through a head and score the decoded paths."""
    from nesf.design.evaluator import load_evaluator
    from nesf.design.optimize import OptimizeSettings
    from nesf.design.registry import model_name, resolve_evaluator_path
    from nesf.design.report import plot_paths, write_paths, write_table
    from nesf.design.workflow import as_head, optimize
    from nesf.io.writers import staged_folder, write_json

    check_outputs(args)
    seed_everything(args.seed)
    model = load_model(args)
    head = as_head(args.head, model)
    name = model_name(model.info.get("source"))
    head_file = Path(head.card["source"]) if head.card.get("source") else None
    evaluator = load_evaluator(resolve_evaluator_path(args.evaluator, name, head.target, head_file))
    goal = "maximize" if args.maximize else "target" if args.target is not None else "minimize"
    settings = OptimizeSettings(
        steps=args.steps,
        lr=args.lr,
        save_every=args.save_every,
        goal=goal,
        target=args.target,
        trust=not args.no_trust,
        trust_weight=args.trust_weight,
        elements=_elements(args.elements),
        keep_composition=args.keep_composition,
        recycle=not args.no_recycle,
    )
    starts = model.prepare(args.start)[: args.n]
    result, summary = optimize(model, head, starts, settings, evaluator, progress=not args.quiet)
    summary.update(
        {"model": str(args.model), "start_data": str(args.start), "command": "nesf " + " ".join(sys.argv[1:])}
    )
    units = head.card.get("units", "")
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        write_paths(tmp, result)
        write_table(tmp / "paths.csv", result)
        plot_paths(tmp / "paths.png", result, head.target, units)
        write_json(tmp / "summary.json", summary)
    if args.json:
        write_json(args.json, summary)
    rates = (
        f"; SR5 {summary['sr5']:.2f}, SR10 {summary['sr10']:.2f}, SR15 {summary['sr15']:.2f} by the evaluator "
        f"(held-out MAE {summary['evaluator_mae']:.3g} {units})"
        if "sr5" in summary
        else ""
    )
    print(
        f"optimised {len(starts)} start{'s' if len(starts) != 1 else ''} for {settings.steps} steps "
        f"({goal} {head.target}); valid decodes {summary['valid_pct']:.1f} %{rates}; wrote {args.out}"
    )
    return 0


def add_conditional_options(p: argparse.ArgumentParser) -> None:
    """The options of ``nesf sample`` that make it conditional (``--property HEAD --target V``)."""
    p.add_argument("--property", default=None, dest="head", help="conditional sampling: " + HEAD_HELP)
    p.add_argument("--target", type=float, default=None, help="with --property: the property value wanted")
    p.add_argument(
        "--tolerance", type=positive_float, default=0.1, help="with --property: keep codes predicted this close"
    )
    p.add_argument("--elements", default=None, help="with --property: allowed elements, comma separated")
    p.add_argument(
        "--guidance",
        type=float,
        default=0.0,
        help="with --property: steer the prior's flow towards the target by the head (default 0: plain draws)",
    )
    p.add_argument(
        "--max-draws", type=positive_int, default=200_000, help="with --property: stop after this many draws"
    )
    p.add_argument("--evaluator", default=None, help="with --property: evaluator file (default: the shipped one)")


def sample_conditional(args: argparse.Namespace, model) -> int:  # noqa: ANN001
    """``nesf sample --property HEAD --target V``: prior draws kept near V by the head, decoded and scored."""
    from nesf.design.conditional import ConditionalSettings, conditional_sample, score_conditional
    from nesf.design.evaluator import load_evaluator
    from nesf.design.registry import model_name, resolve_evaluator_path
    from nesf.design.workflow import as_head
    from nesf.errors import CheckpointError
    from nesf.io.writers import staged_folder, write_json

    if args.target is None:
        raise ValueError("--property needs --target V (the property value wanted)")
    head = as_head(args.head, model)
    name = model_name(model.info.get("source"))
    head_file = Path(head.card["source"]) if head.card.get("source") else None
    try:
        evaluator = load_evaluator(resolve_evaluator_path(args.evaluator, name, head.target, head_file))
    except CheckpointError:
        if args.evaluator is not None:
            raise
        evaluator = None  # no evaluator for this head: the summary says so
    settings = ConditionalSettings(
        target=args.target,
        tolerance=args.tolerance,
        n=args.n,
        max_draws=args.max_draws,
        guidance=args.guidance,
        temperature=args.temperature,
        elements=_elements(args.elements),
    )
    result = conditional_sample(model, head, settings, prior=args.prior, seed=args.seed, progress=not args.quiet)
    if evaluator is not None:
        score_conditional(result, evaluator)
    summary = result.summary(args.tolerance, args.target)
    summary.update(
        {
            "model": str(args.model),
            "property": head.target,
            "units": head.card.get("units", ""),
            "seed": args.seed,
            "evaluator": None if evaluator is None else _describe(evaluator),
            "evaluator_mae": None if evaluator is None else evaluator.card.get("heldout_mae"),
            "command": "nesf " + " ".join(sys.argv[1:]),
        }
    )
    from nesf.cli.common import write_structures

    decoded = [c for c in result.crystals if c.n_atoms]
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        if decoded:
            write_structures(tmp, decoded)
        write_json(tmp / "summary.json", summary)
    within = summary.get("within_tolerance_pct")
    judged = f"; {within:.1f} % within tolerance by the evaluator" if within is not None else ""
    print(
        f"drew {result.n_drawn} codes to keep {len(result.crystals)} within {args.tolerance} of {args.target} "
        f"{summary['units']} by the head ({summary['n_unique_formulas']} formulas){judged}; wrote {args.out}"
    )
    return 0


def _describe(evaluator) -> str | None:  # noqa: ANN001
    """The evaluator's file as reports name it (``shipped:NAME`` for a shipped one)."""
    from nesf.design.registry import describe_source

    return describe_source(evaluator.card.get("source"))
