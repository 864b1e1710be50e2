"""Command-line interface: ``nesf <command> ...`` (see ``nesf --help``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from nesf import DEFAULT_MODEL, __version__
from nesf.errors import NesfError

if TYPE_CHECKING:
    from nesf.models.config import ModelConfig

THREADS_HELP = "torch threads (default: the cores not already busy, at least 1)"
REFINE_HELP = (
    "NeSF models: Adam steps that refine each encoded latent code on its input's own field before decoding "
    "(default 30; 0: the encoder's code as it is, as published)"
)
RESTARTS_HELP = (
    "NeSF models: decode each refined code and, while its crystal's composition differs from the input's, "
    "refine it again with other query draws, weighting up the input atoms its decodes missed, up to this "
    "many times (default 6; 0: no check)"
)


def _set_threads(threads: int | None) -> int:
    """Set torch's thread count: ``threads``, or the cores not already busy (1-minute load average)."""
    import torch

    if not threads:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        try:
            busy = int(os.getloadavg()[0] + 0.5)
        except OSError:  # pragma: no cover - no load average on this platform
            busy = 0
        threads = max(1, cores - busy)
    torch.set_num_threads(threads)
    return threads


MAX_ATOMS_HELP = "refuse crystals with more atoms per cell (after symmetry expansion) than this (default 1000)"


def _positive_float(text: str) -> float:
    """An argparse type: a float above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _add_reconstruction_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reconstruction (published settings by default)")
    g.add_argument("--grid-spacing", type=float, default=0.5, help="particle grid spacing, Angstrom (default 0.5)")
    g.add_argument("--steps", type=int, default=64, help="particle moves (default 64)")
    g.add_argument("--batch-size", type=int, default=64, help="crystals reconstructed together (default 64)")


def _settings(args: argparse.Namespace):  # noqa: ANN202
    from nesf.reconstruction.settings import ReconstructionSettings

    return ReconstructionSettings(grid_spacing=args.grid_spacing, n_steps=args.steps, batch_size=args.batch_size)


def cmd_check_fields(args: argparse.Namespace) -> int:
    """Reconstruct every crystal from its exact field and report the metrics."""
    from nesf.data.readers import read_crystals
    from nesf.io.writers import write_json
    from nesf.metrics.report import evaluate_reconstruction, format_table
    from nesf.reconstruction.exact import default_bbox, diagnose, reconstruct_exact

    _seed_everything(args.seed)
    _set_threads(args.threads)
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


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return name


def cmd_train(args: argparse.Namespace) -> int:
    """Train an autoencoder."""
    import torch

    from nesf.data.readers import read_crystals
    from nesf.models.config import get_preset
    from nesf.training.loop import train

    if args.resume and not (Path(args.out) / "last.pt").is_file():
        raise ValueError(f"--resume: {Path(args.out) / 'last.pt'} does not exist")
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg, train_cfg = get_preset(args.preset, args.frame)
    if args.structure_factors:
        if model_cfg.frame != "periodic":
            raise ValueError("--structure-factors needs the periodic frame")
        model_cfg = replace(model_cfg, structure_factors=True)
    if args.latent_every_layer:
        model_cfg = replace(model_cfg, latent_every_layer=True)
    if args.latent_tokens:
        model_cfg = replace(model_cfg, latent_tokens=args.latent_tokens)
    if args.primitive_cell:
        model_cfg = replace(model_cfg, primitive_cell=True)
    if args.vae:
        model_cfg = replace(model_cfg, vae=True)
    if args.shift_origins and args.setting is None:
        args.setting = "as_given"  # origin shifts teach origin independence; the canonical setting fixes the origin
    if args.setting is not None:
        model_cfg = replace(model_cfg, setting=args.setting)
    changes = {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "origin_shift": args.shift_origins,
        "w_kl": args.kl_weight,
        "label_smoothing": args.label_smoothing,
        "position_huber": args.position_huber,
        "ema_decay": args.ema,
    }
    train_cfg = replace(train_cfg, **{k: v for k, v in changes.items() if v})
    train_set = read_crystals(args.train, conventional=args.conventional)
    val_set = read_crystals(args.val, conventional=args.conventional)
    if args.exclude:
        drop = {c.id for path in args.exclude for c in read_crystals(path)}
        kept = [c for c in train_set if c.id not in drop]
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"--exclude: dropped {len(train_set) - len(kept)} of {len(train_set)} training crystals")
        train_set = kept
    if args.resume and args.init:
        raise ValueError("--resume and --init exclude each other (resume continues OUT/last.pt)")
    if args.init and (args.structure_factors or args.vae or args.latent_tokens):
        flag = "--structure-factors" if args.structure_factors else "--vae" if args.vae else "--latent-tokens"
        raise ValueError(f"--init: the architecture is the initial model's; {flag} cannot change it")
    if args.init and args.model != "voxel":
        from nesf.api import resolve_model_path

        args.init = str(resolve_model_path(args.init))  # a checkpoint path or a shipped model's name
    if args.add_supercells:
        extra = supercells(train_set, args.add_supercells)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"--add-supercells: added {len(extra)} 2x2x2 supercells to {len(train_set)} training crystals")
        train_set = train_set + extra
    if args.model == "voxel":
        return _train_voxel(args, train_set, val_set)

    def _terminate(signum, frame):  # noqa: ANN001, ARG001 - schedulers stop jobs with SIGTERM
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    result = train(
        train_set,
        val_set,
        args.out,
        model_cfg,
        train_cfg,
        epochs=args.epochs,
        minutes=args.minutes,
        seed=args.seed,
        device=_device(args.device),
        resume=args.resume,
        progress=not args.quiet,
        init=args.init,
        vocab=args.vocab,
        setting=args.setting,
        extend={k: True for k in ("latent_every_layer", "primitive_cell") if getattr(args, k)} or None,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"trained {result.epochs} epoch(s), {result.steps} steps; best validation loss {result.best_val:.5f}; "
            f"checkpoints in {result.out_dir} (last.pt, best.pt), curve in history.csv and learning_curve.png"
        )
    return 0


def supercells(crystals, max_atoms: int) -> list:  # noqa: ANN001
    """2x2x2 supercells (ids ``ID-x2``) of the crystals whose supercell has at most ``max_atoms`` atoms.

    A physically exact augmentation: the same crystal in a cell eight times larger, for training
    sets short of large cells.
    """
    from nesf.data.crystal import Crystal

    out = []
    for c in crystals:
        if 8 * c.n_atoms <= max_atoms:
            out.append(Crystal.from_pymatgen(c.to_pymatgen() * (2, 2, 2), id=f"{c.id}-x2"))
    return out


def _train_voxel(args: argparse.Namespace, train_set, val_set) -> int:  # noqa: ANN001
    """``nesf train --model voxel``: the ICSG3D-style voxel autoencoder baseline."""
    from nesf.voxel import VoxelConfig, train_voxel

    for flag, value in (
        ("--init", args.init),
        ("--frame", args.frame),
        ("--structure-factors", args.structure_factors),
        ("--shift-origins", args.shift_origins),
    ):
        if value:
            raise ValueError(f"{flag} applies to NeSF models, not to --model voxel")
    if args.preset != "default":
        raise ValueError("--preset applies to NeSF models, not to --model voxel")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--model voxel trains in one process; run it without torchrun")
    over = {"d": args.voxel_d, "batch_size": args.batch_size, "lr": args.lr, "augment": args.augment}
    cfg = VoxelConfig(**{k: v for k, v in over.items() if v is not None})
    result = train_voxel(
        train_set,
        val_set,
        args.out,
        cfg,
        epochs=args.epochs,
        minutes=args.minutes,
        seed=args.seed,
        device=_device(args.device),
        progress=not args.quiet,
        resume=args.resume,
        vocab=args.vocab,
    )
    print(
        f"trained {result.epochs} epoch(s), {result.steps} steps; best validation loss {result.best_val:.5f}; "
        f"checkpoints in {result.out_dir} (last.pt, best.pt), curve in history.csv and learning_curve.png"
    )
    return 0


def _load_model(args: argparse.Namespace):  # noqa: ANN202
    from nesf.voxel import load_any

    _set_threads(getattr(args, "threads", None))
    model = load_any(args.model, device=_device(args.device))
    changes = {}
    if getattr(args, "batch_size", None):
        changes["batch_size"] = args.batch_size
    if getattr(args, "grid_spacing", None):
        changes["grid_spacing"] = args.grid_spacing
    model = model.with_settings(**changes) if changes else model
    given = {"steps": getattr(args, "refine_steps", None), "restarts": getattr(args, "restarts", None)}
    refine = {key: value for key, value in given.items() if value is not None}
    if refine:
        if not hasattr(model, "with_refinement"):
            if any(refine.values()):
                raise ValueError(
                    f"--refine-steps/--restarts: {args.model} is a voxel model; only NeSF models refine codes"
                )
        else:
            model = model.with_refinement(**refine)
    return model


def _read_inputs(paths: Sequence[str], conventional: bool, skip_invalid: bool) -> tuple[list, list[str]]:
    """Crystals of every path (files or folders); with ``skip_invalid`` unreadable files are listed, not fatal."""
    from nesf.data.readers import read_crystals
    from nesf.errors import CrystalInputError

    crystals: list = []
    skipped: list[str] = []
    for path in paths:
        p = Path(path)
        files = (
            sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            if (skip_invalid and p.is_dir())
            else [p]
        )
        for f in files:
            try:
                crystals.extend(read_crystals(f, conventional=conventional))
            except CrystalInputError as exc:
                if not skip_invalid:
                    raise
                skipped.append(str(exc))
    if not crystals:
        raise CrystalInputError(", ".join(paths), "no readable crystal" + (" (all skipped)" if skipped else ""))
    return crystals, skipped


def _encodable(model, crystals: list, skip_invalid: bool) -> tuple[list, list[str]]:  # noqa: ANN001
    """Crystals the model can encode; with ``skip_invalid`` the others are listed instead of refused."""
    from ase.data import chemical_symbols

    if not skip_invalid:
        return crystals, []
    known = set(model.vocab.numbers)
    kept, skipped = [], []
    for c in crystals:
        unknown = sorted({int(z) for z in c.numbers} - known)
        if unknown:
            names = ", ".join(chemical_symbols[z] for z in unknown)
            skipped.append(f"crystal {c.id!r}: element(s) {names} not in the model's vocabulary")
        else:
            kept.append(c)
    if not kept:
        raise ValueError("no crystal left to reconstruct: " + "; ".join(skipped[:5]))
    return kept, skipped


def _check_outputs(args: argparse.Namespace, folder: bool = True) -> None:
    """Refuse output paths that cannot be written, before any work (exit 2, one line)."""
    from nesf.errors import OutputError
    from nesf.io.writers import check_output_folder

    for name in ("json", "csv"):
        value = getattr(args, name, None)
        if not value:
            continue
        p = Path(value)
        if p.is_dir():
            raise OutputError(f"--{name} {value}: is a folder, not a file")
        parent = next(q for q in p.absolute().parents if q.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise OutputError(f"--{name} {value}: cannot write there ({parent} is not a writable folder)")
    out = getattr(args, "out", None)
    if folder and out:
        check_output_folder(out, overwrite=getattr(args, "overwrite", False))


def _round_trip(model, crystals: list, args: argparse.Namespace, strict: bool = False):  # noqa: ANN001, ANN202
    """Reconstruct crystals (in the model's frame); metrics, reconstructions and per-crystal verdicts."""
    from nesf.errors import NesfError
    from nesf.metrics.matcher import match_rmse
    from nesf.metrics.report import evaluate_reconstruction
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
        found = [r for r in rmse if r is not None]
        metrics["match_rate_pct"] = 100.0 * len(found) / len(crystals)
        metrics["rmse"] = sum(found) / len(found) if found else float("nan")
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

    _check_outputs(args, folder=False)
    _seed_everything(args.seed)
    model = _load_model(args)
    originals, skipped = _read_inputs([args.data], args.conventional, args.skip_invalid)
    originals, unencodable = _encodable(model, originals, args.skip_invalid)
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
    title = f"{args.model} on {args.data} ({model.frame} frame, {setting} setting{refined})"
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
            "data": str(args.data),
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
    return 0


def _write_structures(out: Path, crystals) -> None:  # noqa: ANN001
    """One CIF per crystal and all.extxyz into ``out`` (a fresh folder: see ``staged_folder``)."""
    from nesf.io.writers import safe_filename, write_cif, write_extxyz

    out.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    for c in crystals:
        name = safe_filename(c.id)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}-{seen[name]}"
        write_cif(out / f"{name}.cif", c)
    write_extxyz(out / "all.extxyz", crystals)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """Round trip of input crystals; one CIF each plus one extxyz with all, and per-crystal verdicts."""
    from nesf.io.writers import staged_folder, write_json
    from nesf.metrics.verdicts import format_verdicts, matched_line, write_verdicts_csv

    _check_outputs(args)
    model = _load_model(args)
    crystals, skipped = _read_inputs(args.inputs, args.conventional, args.skip_invalid)
    crystals, unencodable = _encodable(model, crystals, args.skip_invalid)
    skipped += unencodable
    metrics, pred, verdicts = _round_trip(model, model.prepare(crystals), args, strict=args.strict)
    print(format_verdicts(verdicts))
    if not args.no_match:
        print(matched_line(verdicts))
    for line in skipped:
        print(f"skipped: {line}")
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        _write_structures(tmp, pred)
    if args.csv:
        write_verdicts_csv(args.csv, verdicts)
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


def cmd_split(args: argparse.Namespace) -> int:
    """Seeded random split of a data set into two extxyz files."""
    import numpy as np

    from nesf.data.readers import read_crystals
    from nesf.io.writers import write_extxyz

    if not 0.0 < args.fraction < 1.0:
        raise ValueError(f"--fraction must lie strictly between 0 and 1, got {args.fraction}")
    crystals = read_crystals(args.data)
    if len(crystals) < 2:
        raise ValueError(f"{args.data}: needs at least two crystals to split, found {len(crystals)}")
    order = np.random.default_rng(args.seed).permutation(len(crystals))
    n_first = min(len(crystals) - 1, max(1, round(args.fraction * len(crystals))))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    first = [crystals[i] for i in sorted(order[:n_first])]
    second = [crystals[i] for i in sorted(order[n_first:])]
    write_extxyz(out / "train.extxyz", first)
    write_extxyz(out / "heldout.extxyz", second)
    print(f"{args.data}: {len(first)} crystals -> {out / 'train.extxyz'}, {len(second)} -> {out / 'heldout.extxyz'}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Crystals brought once to a model's setting, written as a prepared set for fast training."""
    from nesf.data.prepared import prepare_set, save_prepared
    from nesf.data.readers import read_crystals
    from nesf.models.config import get_preset

    if not args.out.endswith(".pt"):
        raise ValueError(f"--out must end in .pt, got {args.out!r}")
    if args.model is not None:
        given = [f"--{k}" for k in ("preset", "setting", "origin") if getattr(args, k) is not None]
        given += ["--primitive"] if args.primitive else []
        if given:
            raise ValueError(f"--model takes the setting from the model; leave out {', '.join(given)}")
        model_cfg = _model_setting(args.model)
        setting, origin, primitive = model_cfg.setting, model_cfg.canonical_origin, model_cfg.primitive_cell
    else:
        model_cfg, _ = get_preset(args.preset or "default")
        setting = args.setting or model_cfg.setting
        origin, primitive = args.origin or model_cfg.canonical_origin, args.primitive
    frame = "periodic" if setting == "canonical" else model_cfg.frame
    crystals = read_crystals(args.data, conventional=args.conventional)
    prepared = prepare_set(
        crystals,
        frame,
        setting,
        origin,
        primitive=primitive,
        jobs=args.jobs,
        progress=not args.quiet,
    )
    path = save_prepared(args.out, prepared)
    key = prepared[0].info["prepared"]
    print(f"{args.data}: {len(prepared)} crystals in setting {key} -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def _model_setting(model: str) -> ModelConfig:
    """The :class:`~nesf.models.config.ModelConfig` of a NeSF model (shipped name or checkpoint), for its setting."""
    from nesf.api import resolve_model_path
    from nesf.models.config import ModelConfig, config_from_dict
    from nesf.training.checkpoint import load_checkpoint

    ck = load_checkpoint(resolve_model_path(model))
    kind = ck.get("kind", "nesf")
    if kind != "nesf":
        raise ValueError(f"{model}: a {kind} model reads crystals as they are given; there is no setting to prepare")
    return config_from_dict(ModelConfig, ck["model_config"])


def cmd_export(args: argparse.Namespace) -> int:
    """Small inference checkpoint (no optimiser state) with an optional model card."""
    import json

    from nesf.training.checkpoint import export_model

    card = None
    if args.card:
        try:
            card = json.loads(Path(args.card).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{args.card}: not a readable JSON model card ({exc})") from None
        if not isinstance(card, dict):
            raise ValueError(f"{args.card}: a model card must be a JSON object")
    path = export_model(args.checkpoint, args.out, card)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:  # noqa: ARG001
    """List the models shipped inside the package, with their model cards' summaries."""
    from nesf.api import NeSF, available_models

    names = available_models()
    if not names:
        print("no shipped models in this installation")
        return 0
    for name in names:
        model = NeSF.load(name)
        print(f"{name}: {model.card.get('summary', '(no model card)')}")
        setting = (
            "canonical setting (any origin, axes or reduced cell)"
            if model.setting == "canonical"
            else ("cells as given (origin and axes as in the training data)")
        )
        print(f"  setting: {setting}")
        print(f"  domain: {model.domain.describe() if model.domain is not None else 'not recorded'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Round-trip well-known crystals through a shipped model; table, CIFs and a PNG."""
    from nesf.demo import run_demo

    _seed_everything(args.seed)
    _set_threads(args.threads)
    run_demo(args.out, args.model, n_plot=args.plot, progress=not args.quiet, refine_steps=args.refine_steps)
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    """Latent codes of crystals to an .npz (arrays 'latents' and 'ids')."""
    import numpy as np

    from nesf.data.readers import read_crystals
    from nesf.io.writers import atomic_write

    if Path(args.out).suffix.lower() != ".npz":
        raise ValueError(f"--out {args.out}: latent codes are written as a NumPy .npz file; name it OUT.npz")
    _check_outputs(args, folder=False)
    model = _load_model(args)
    crystals = model.prepare(read_crystals(args.data, conventional=args.conventional))
    z = model.encode_crystals(crystals).cpu().numpy()
    ids = np.array([c.id for c in crystals], dtype=str)

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, latents=z, ids=ids)

    atomic_write(args.out, write)
    print(f"wrote {len(z)} latent codes of size {z.shape[1]} to {args.out}")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Crystals from latent codes of an .npz (as written by encode)."""
    import numpy as np

    from nesf.errors import NesfError
    from nesf.io.writers import staged_folder

    _check_outputs(args)
    model = _load_model(args)
    if not Path(args.latents).is_file():
        raise NesfError(f"{args.latents}: no such file")
    if Path(args.latents).read_bytes()[:4] != b"PK\x03\x04":
        raise NesfError(f"{args.latents}: not a latents file (expected an .npz written by 'nesf encode')")
    try:
        with np.load(args.latents, allow_pickle=False) as data:
            z = data["latents"]
            ids = [str(i) for i in data["ids"]] if "ids" in data.files else None
    except (OSError, ValueError, KeyError) as exc:
        raise NesfError(f"{args.latents}: not a latents file written by 'nesf encode' ({exc})") from None
    pred = model.decode_crystals(z, ids=ids, progress=not args.quiet)
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        _write_structures(tmp, pred)
    print(f"wrote {len(pred)} decoded crystal(s) to {args.out} (CIFs and all.extxyz)")
    return 0


def cmd_plot_field(args: argparse.Namespace) -> int:
    """Slice of a crystal's learned position field, coloured by its species field."""
    from nesf.data.readers import read_crystals
    from nesf.viz.plots import figure_format, parse_plane, plot_field

    plane = parse_plane(args.plane)
    model = _load_model(args)
    if not hasattr(model.model, "bind"):
        raise ValueError(f"{args.model}: plot-field draws a learned structure field; this is a voxel autoencoder")
    crystal = model.prepare(read_crystals(args.crystal, conventional=args.conventional)[args.index : args.index + 1])
    if not crystal:
        raise ValueError(f"{args.crystal}: no crystal at index {args.index}")
    figure_format(args.out)  # refuse an unknown picture format before the work
    field, seen = model.field_of(crystal[0])
    plot_field(field, seen, model.vocab.symbols, args.out, plane)
    print(f"wrote {args.out}")
    return 0


def cmd_interpolate(args: argparse.Namespace) -> int:
    """Decode crystals along the straight latent path from A to B."""
    import numpy as np

    from nesf.data.readers import read_crystals
    from nesf.io.writers import staged_folder
    from nesf.viz.plots import plot_strip

    if args.steps < 2:
        raise ValueError("--steps must be at least 2")
    _check_outputs(args)
    model = _load_model(args)
    a = model.prepare(read_crystals(args.a, conventional=args.conventional)[:1])
    b = model.prepare(read_crystals(args.b, conventional=args.conventional)[:1])
    z = model.encode_crystals(a + b).cpu().numpy()
    t = np.linspace(0.0, 1.0, args.steps)[:, None]
    path = (1 - t) * z[0] + t * z[1]
    ids = [f"step{k:02d}" for k in range(args.steps)]
    decoded = model.decode_crystals(path, ids=ids, progress=not args.quiet)
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        _write_structures(tmp, decoded)
        plot_strip(decoded, tmp / "interpolation.png", title=f"latent path {a[0].id} -> {b[0].id}")
    print(f"wrote {len(decoded)} crystals and interpolation.png to {args.out}")
    return 0


class _Parser(argparse.ArgumentParser):
    """An argument parser that names a mistyped option and suggests the closest known one."""

    _argv: list[str] = []

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201, D102
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:  # noqa: D102
        import difflib

        known = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        for action in self._actions:  # unknown options of a command reach the top parser: use its options
            if isinstance(action, argparse._SubParsersAction):
                sub = next((action.choices[a] for a in self._argv if a in action.choices), None)
                if sub is not None:
                    known += [o for a in sub._actions for o in a.option_strings if o.startswith("--")]
        typos = [a.split("=")[0] for a in self._argv if a.startswith("--") and a.split("=")[0] not in known]
        hints = []
        for t in typos:
            close = difflib.get_close_matches(t, known, n=1, cutoff=0.6)
            hints.append(f"unknown option {t}" + (f" (did you mean {close[0]}?)" if close else ""))
        if hints and "unrecognized arguments" not in message:
            message = "; ".join(hints) + "; " + message
        elif hints:
            message = "; ".join(hints)
        super().error(message)


def cmd_fit_prior(args: argparse.Namespace) -> int:
    """Fit a latent prior (flow matching) to the encoded training crystals of a model."""
    from nesf.data.readers import read_crystals
    from nesf.generation.prior import PriorConfig, fit_prior, save_prior

    _check_outputs(args, folder=False)
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: is a folder; name the prior file, e.g. prior.pt")
    _seed_everything(args.seed)
    model = _load_model(args)
    if hasattr(model, "with_refinement"):  # the prior models the encoder's own codes, which sampling decodes
        model = model.with_refinement(steps=0)
    crystals = model.prepare(read_crystals(args.data, conventional=args.conventional))
    z = model.encode_crystals(crystals)
    cfg = PriorConfig(latent_dim=z.shape[1], epochs=args.epochs, variance_kept=args.variance_kept)
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
    from nesf.api import shipped_prior_path

    if prior:
        return str(prior)
    shipped = shipped_prior_path(model.info.get("source"))
    if shipped is not None:
        return f"shipped with the model (weights/priors/{shipped.name})"
    return "N(0, I) (a VAE's prior)"


def cmd_sample(args: argparse.Namespace) -> int:
    """New crystals from the latent space: codes drawn from a prior, decoded, written as CIFs and extxyz."""
    from nesf.io.writers import staged_folder, write_json

    _check_outputs(args)
    model = _load_model(args)
    crystals = model.sample_crystals(
        args.n, seed=args.seed, prior=args.prior, progress=not args.quiet, temperature=args.temperature
    )
    decoded = [c for c in crystals if c.n_atoms]
    failed = [c.id for c in crystals if not c.n_atoms]
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        if decoded:
            _write_structures(tmp, decoded)
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
                "setting": "canonical" if getattr(model, "setting", "") == "canonical" else "model",
            },
        )
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

    _check_outputs(args, folder=False)
    generated = read_crystals(args.generated)
    reference = read_crystals(args.reference)
    jobs = _set_threads(args.jobs)
    m = generation_metrics(
        generated,
        reference,
        args.preset,
        n_property=args.n_property,
        seed=args.seed,
        progress=not args.quiet,
        jobs=jobs,
    )
    labels = (
        ("n_generated", "generated crystals", "{:d}"),
        ("n_reference", "reference crystals", "{:d}"),
        ("struct_validity_pct", "structural validity [%]", "{:.2f}"),
        ("comp_validity_pct", "compositional validity [%]", "{:.2f}"),
        ("cov_recall_pct", "coverage COV-R [%]", "{:.2f}"),
        ("cov_precision_pct", "coverage COV-P [%]", "{:.2f}"),
        ("density_emd", "density Wasserstein distance [g/cm^3]", "{:.4f}"),
        ("n_elements_emd", "number-of-elements Wasserstein distance", "{:.4f}"),
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nesf`` command."""
    parser = _Parser(
        prog="nesf",
        description="Neural Structure Fields: crystal structures as continuous fields.",
    )
    parser.add_argument("--version", action="version", version=f"nesf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
    _add_reconstruction_options(p)
    p.set_defaults(func=cmd_check_fields)

    p = sub.add_parser(
        "train",
        help="train an autoencoder",
        description="Train a NeSF autoencoder. Works under torchrun for multi-process (DDP) training.",
    )
    p.add_argument("--train", required=True, help="training crystals (extxyz, CIF(s), CSV)")
    p.add_argument("--val", required=True, help="validation crystals (checkpoint selection)")
    p.add_argument("--out", required=True, help="output folder (last.pt, best.pt, history.csv, learning_curve.png)")
    p.add_argument(
        "--model",
        choices=("nesf", "voxel"),
        default="nesf",
        help="'nesf' (default) or 'voxel': the ICSG3D-style voxel autoencoder baseline",
    )
    p.add_argument("--voxel-d", type=int, default=None, help="voxel model: grid points per axis (default 32)")
    p.add_argument(
        "--augment",
        choices=("none", "cubic", "any"),
        default=None,
        help="voxel model: random rotations of the training crystals (default: the voxel config's)",
    )
    p.add_argument(
        "--preset",
        choices=("default", "paper"),
        default="default",
        help="'paper': the published configuration; 'default': this project's (default)",
    )
    p.add_argument("--frame", choices=("paper", "periodic"), default=None, help="override the preset's frame")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (default: the preset's)")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this run")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="crystals per step and process (default: the preset's; default 32, paper 64)",
    )
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when present)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--init",
        metavar="CKPT",
        help="start from this checkpoint's weights (fine-tuning / pre-training); its architecture is used",
    )
    p.add_argument(
        "--exclude",
        action="append",
        metavar="DATA",
        help="drop training crystals whose ids appear in DATA (repeatable; e.g. the test set)",
    )
    p.add_argument(
        "--add-supercells",
        type=int,
        metavar="MAX_ATOMS",
        default=None,
        help="also train on 2x2x2 supercells of training crystals that stay within MAX_ATOMS atoms",
    )
    p.add_argument(
        "--structure-factors",
        action="store_true",
        help="periodic frame: add species-weighted structure factors (|h_i| <= 3) to the encoder",
    )
    p.add_argument(
        "--shift-origins",
        action="store_true",
        help="periodic frame: move each training crystal's origin by a random fraction of its cell "
        "at every step (augmentation; the same crystal); implies --setting as_given",
    )
    p.add_argument(
        "--vocab",
        choices=("data", "all"),
        default="data",
        help="species classes: the elements of the data (default) or all of H..Pu (accepts unseen elements)",
    )
    p.add_argument(
        "--setting",
        choices=("as_given", "canonical"),
        default=None,
        help="cells the model sees: 'canonical' (one cell and origin per crystal, whatever setting a file "
        "uses; the default preset's) or 'as_given' (the paper preset's); with --init: the initial model's "
        "unless given",
    )
    p.add_argument("--vae", action="store_true", help="a variational autoencoder (latent mean and variance)")
    p.add_argument("--kl-weight", type=float, default=None, help="weight of the VAE's KL term (default 0.001)")
    p.add_argument(
        "--latent-tokens",
        type=_non_negative_int,
        default=0,
        metavar="M",
        help="split the latent code into M tokens that the encoder fills by attention over the atoms and "
        "every decoder query attends to (M must divide the latent size; default 0: one global code)",
    )
    p.add_argument(
        "--ema",
        type=float,
        default=None,
        metavar="DECAY",
        help="validate and ship a moving average of the weights with this decay per step (e.g. 0.999; default: off)",
    )
    p.add_argument(
        "--label-smoothing",
        type=float,
        default=None,
        help="smooth the species targets by this share (e.g. 0.1; default 0: plain cross-entropy)",
    )
    p.add_argument(
        "--position-huber",
        type=float,
        default=None,
        metavar="DELTA",
        help="position loss: Huber with this threshold in A (e.g. 0.1) instead of the squared error",
    )
    p.add_argument(
        "--primitive-cell",
        action="store_true",
        help="canonical setting: reduce every crystal to a primitive cell first, so that conventional cells and "
        "supercells are read as their primitive crystal (reconstructions come back in the input's cell)",
    )
    p.add_argument(
        "--latent-every-layer",
        action="store_true",
        help="feed the latent code to every hidden layer of the field decoders (a per-layer shift "
        "computed once per crystal), not only to the first",
    )
    p.add_argument("--conventional", action="store_true", help="convert crystals to conventional standard cells")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.add_argument("--max-atoms", type=int, default=None, help=MAX_ATOMS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    def model_args(
        p: argparse.ArgumentParser, decoding: bool = True, default: str | None = None, encoding: bool = True
    ) -> None:
        if default:
            p.add_argument(
                "--model",
                default=default,
                help=f"checkpoint path or name of a shipped model (any case; default {default}, the general model)",
            )
        else:
            p.add_argument("--model", required=True, help="checkpoint path or name of a shipped model (any case)")
        p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
        p.add_argument("--conventional", action="store_true", help="convert crystals to conventional standard cells")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        if decoding:
            p.add_argument("--batch-size", type=int, default=None, help="crystals decoded together (default 64)")
            p.add_argument(
                "--grid-spacing", type=float, default=None, help="particle grid spacing, Angstrom (default 0.5)"
            )
        if encoding:
            p.add_argument("--refine-steps", type=_non_negative_int, default=None, help=REFINE_HELP)
            p.add_argument("--restarts", type=_non_negative_int, default=None, help=RESTARTS_HELP)
        p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
        p.add_argument("--max-atoms", type=int, default=None, help=MAX_ATOMS_HELP)

    def verdict_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", metavar="OUT.json", help="also write the metrics and per-crystal records as JSON")
        p.add_argument("--csv", metavar="OUT.csv", help="also write the per-crystal table as CSV")
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

    p = sub.add_parser(
        "evaluate",
        help="round-trip crystals through a model and report the metrics",
        description=(
            "Round-trip every crystal of DATA through a trained model; print the paper's metrics, the "
            "StructureMatcher match rate and a per-crystal table (id, formulas, atoms, matched, RMSE, in "
            "domain). Crystals outside the model's training domain are named in a warning line each."
        ),
    )
    model_args(p, default=DEFAULT_MODEL)
    p.add_argument("data", help="crystals to evaluate (extxyz, CIF, POSCAR, pymatgen JSON, ..., a folder, a CSV)")
    verdict_args(p)
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

    p = sub.add_parser(
        "reconstruct",
        help="round-trip crystals; write CIFs and one extxyz",
        description=(
            "Round-trip crystals through a trained model and write one CIF per crystal plus all.extxyz, "
            "each in its input's own cell and origin; print a per-crystal table and 'k of n matched'."
        ),
    )
    model_args(p, default=DEFAULT_MODEL)
    p.add_argument("inputs", nargs="+", help="input crystals (files or folders)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    verdict_args(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser(
        "demo",
        help="round-trip well-known crystals through a shipped model (table, CIFs, PNG)",
        description=(
            "Round-trip a dozen well-known crystals (NaCl, SrTiO3, Si, ZnO, TiO2, ...) through a shipped "
            "model, print the metrics, and write OUT/inputs/*.cif, OUT/reconstructions/*.cif, "
            "OUT/metrics.json and OUT/demo.png (input vs reconstruction, and a slice of the learned field)."
        ),
    )
    p.add_argument("--out", default="nesf-demo", help="output folder (default nesf-demo)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"shipped model name or checkpoint (default {DEFAULT_MODEL})")
    p.add_argument(
        "--plot", type=int, default=3, help="field slices drawn in demo.png (default 3; every crystal is drawn)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--refine-steps", type=_non_negative_int, default=None, help=REFINE_HELP)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("models", help="list the shipped models")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "export",
        help="small inference checkpoint (no optimiser state) with a model card",
        description="Strip a training checkpoint to what inference needs and attach a JSON model card.",
    )
    p.add_argument("checkpoint", help="training checkpoint (last.pt or best.pt)")
    p.add_argument("--out", required=True, help="the .pt file to write")
    p.add_argument("--card", metavar="CARD.json", help="model card: a JSON object stored with the weights")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "split",
        help="seeded random split of a data set into train.extxyz and heldout.extxyz",
        description="Seeded random split (e.g. 90/10) of DATA into OUT/train.extxyz and OUT/heldout.extxyz.",
    )
    p.add_argument("data", help="crystals to split (extxyz, CIF(s), CSV)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fraction", type=float, default=0.9, help="share of the first part, train (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser(
        "prepare",
        help="bring crystals once to a model's setting (a prepared .pt set for fast training)",
        description="Bring every crystal of DATA to the setting a model sees (by default the default preset's: "
        "canonical cell and origin) and find its crystal system, once; write OUT.pt, which 'nesf train' and every "
        "command reading crystals accept. Saves minutes per training run on large sets.",
    )
    p.add_argument("data", help="crystals (extxyz, CIF(s), CSV, ...)")
    p.add_argument("--out", required=True, help="output file (.pt)")
    p.add_argument(
        "--model",
        default=None,
        help="take the setting of this model (shipped name or checkpoint), e.g. to fine-tune it with --init",
    )
    p.add_argument(
        "--preset",
        choices=("default", "paper"),
        default=None,
        help="the preset whose setting to use (default: 'default')",
    )
    p.add_argument("--setting", choices=("as_given", "canonical"), default=None, help="override the preset's setting")
    p.add_argument(
        "--origin", choices=("rarest", "roomiest"), default=None, help="canonical origin rule (default: the preset's)"
    )
    p.add_argument(
        "--primitive", action="store_true", help="canonical setting of each crystal's primitive cell (--primitive-cell)"
    )
    p.add_argument("--conventional", action="store_true", help="convert crystals to conventional standard cells")
    p.add_argument("--jobs", type=_positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "encode",
        help="latent codes of crystals to an .npz",
        description="Encode every crystal of DATA to its latent code; write OUT.npz with arrays 'latents' [B, D] "
        "and 'ids'.",
    )
    model_args(p, decoding=False, default=DEFAULT_MODEL)
    p.add_argument("data", help="crystals to encode")
    p.add_argument("--out", required=True, help="output .npz (arrays 'latents' and 'ids')")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser(
        "decode",
        help="crystals from latent codes (.npz from encode)",
        description="Decode latent codes (an .npz written by 'nesf encode', or any .npz with a 'latents' array "
        "[B, D]) to crystals; write one CIF each and all.extxyz to OUT (canonical cells for canonical models).",
    )
    model_args(p, encoding=False)
    p.add_argument("latents", help=".npz with a 'latents' array [B, D] (and optional 'ids')")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser(
        "plot-field",
        help="picture of a slice of a crystal's learned structure field",
        description="Draw the learned position field (arrows) coloured by the species field on one lattice plane "
        "of a crystal's cell (its canonical cell for canonical models); PNG, SVG, PDF or JPEG by the extension.",
    )
    model_args(p, default=DEFAULT_MODEL)
    p.add_argument("crystal", help="file holding the crystal (the first one, or --index)")
    p.add_argument("--index", type=int, default=0, help="which crystal of the file (default 0)")
    p.add_argument("--plane", default="z=0.5", help="lattice plane AXIS=FRACTION, axes a/b/c or x/y/z (default z=0.5)")
    p.add_argument("--out", required=True, help="output picture (.png, .svg, .pdf or .jpg)")
    p.set_defaults(func=cmd_plot_field)

    p = sub.add_parser(
        "fit-prior",
        help="fit a latent prior (flow matching) to a model's encoded training crystals",
        description="Encode DATA with MODEL and fit a small flow-matching model of the latent codes, so that "
        "'nesf sample' can draw new codes from it. Writes OUT (a checkpoint with a SHA-256 and a card).",
    )
    model_args(p, decoding=False, encoding=False)
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
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_fit_prior)

    p = sub.add_parser(
        "sample",
        help="new crystals from the latent space (prior samples, decoded)",
        description="Draw N latent codes from a prior (--prior, else the one shipped with the model, else N(0, I) "
        "for a VAE) and decode them; write OUT/*.cif, OUT/all.extxyz, OUT/summary.json (decodes that found no "
        "atom are counted there as failed) and a picture of the first ones, OUT/samples.png.",
    )
    model_args(p, encoding=False)
    p.add_argument("--prior", default=None, help="prior file from 'nesf fit-prior'")
    p.add_argument("--n", type=int, required=True, help="crystals to sample")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--grid",
        type=_non_negative_int,
        default=16,
        metavar="K",
        help="draw the first K crystals in OUT/samples.png, titled with formula and space group (default 16; 0: none)",
    )
    p.add_argument(
        "--temperature",
        type=_positive_float,
        default=1.0,
        help="scale of the prior's starting noise (default 1: the fitted distribution; below 1: more typical, "
        "less diverse crystals)",
    )
    p.set_defaults(func=cmd_sample)

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
        type=_non_negative_int,
        default=None,
        help="processes for the fingerprints (default or 0: the cores not already busy)",
    )
    p.add_argument("--json", metavar="OUT.json", help="also write the metrics as JSON")
    p.add_argument("--max-atoms", type=int, default=None, help=MAX_ATOMS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generation_metrics)

    p = sub.add_parser(
        "interpolate",
        help="decode crystals along the latent path between two crystals",
        description="Encode crystals A and B, decode STEPS crystals along the straight line between their latent "
        "codes, and write their CIFs, all.extxyz and interpolation.png to OUT.",
    )
    model_args(p, default=DEFAULT_MODEL)
    p.add_argument("a", help="first crystal (first of the file)")
    p.add_argument("b", help="second crystal (first of the file)")
    p.add_argument("--steps", type=int, default=7, help="crystals along the path, ends included (default 7)")
    p.add_argument("--out", required=True, help="output folder (CIFs, all.extxyz, interpolation.png)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.set_defaults(func=cmd_interpolate)
    return parser


class _QuietWhenClosed:
    """A text stream that stops writing, without error, once its reader has gone (``nesf ... | head``).

    The command then still finishes its work and writes its files (``--json``, ``--out``).
    """

    def __init__(self, stream) -> None:  # noqa: ANN001
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:  # noqa: D102
        if not self.closed_by_reader:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.closed_by_reader = True
        return len(text)

    def flush(self) -> None:  # noqa: D102
        if not self.closed_by_reader:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.closed_by_reader = True

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nesf`` command; returns the exit code."""
    if not isinstance(sys.stdout, _QuietWhenClosed):
        sys.stdout = _QuietWhenClosed(sys.stdout)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args, "max_atoms", None) is not None:
        from nesf.data.crystal import LIMITS

        if args.max_atoms < 1:
            print("nesf: error: --max-atoms must be at least 1", file=sys.stderr)
            return 2
        LIMITS.max_atoms = args.max_atoms
    try:
        return int(args.func(args) or 0)
    except NesfError as exc:
        print(f"nesf: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad settings given on the command line
        print(f"nesf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nesf: interrupted (training saves OUT/last.pt; continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
