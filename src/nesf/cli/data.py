"""``nesf split``, ``prepare``, ``export`` and ``models``: data sets, prepared sets and model files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from nesf.cli.common import positive_int

if TYPE_CHECKING:
    from nesf.models.config import ModelConfig


def add_models(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf models``."""
    p = sub.add_parser("models", help="list the shipped models")
    p.set_defaults(func=cmd_models)


def add_export(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf export``."""
    p = sub.add_parser(
        "export",
        help="small inference checkpoint (no optimiser state) with a model card",
        description="Strip a training checkpoint to what inference needs and attach a JSON model card.",
    )
    p.add_argument("checkpoint", help="training checkpoint (last.pt or best.pt)")
    p.add_argument("--out", required=True, help="the .pt file to write")
    p.add_argument("--card", metavar="CARD.json", help="model card: a JSON object stored with the weights")
    p.set_defaults(func=cmd_export)


def add_split(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf split``."""
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


def add_prepare(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf prepare``."""
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
    p.add_argument("--jobs", type=positive_int, default=1, help="worker processes (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)


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
    from nesf.models.config import ModelConfig, config_from_dict
    from nesf.registry import resolve_model_path
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
    from nesf import DEFAULT_MODEL
    from nesf.api import NeSF
    from nesf.registry import available_models

    names = available_models()
    if not names:
        print("no shipped models in this installation")
        return 0
    for name in names:
        model = NeSF.load(name)
        default = " (the default)" if name == DEFAULT_MODEL else ""
        print(f"{name}{default}: {model.card.get('summary', '(no model card)')}")
        if model.setting != "canonical":
            setting = "cells as given (origin and axes as in the training data)"
        elif getattr(model.model.cfg, "primitive_cell", False):
            setting = (
                "canonical setting of the primitive cell (reads primitive cells: a conventional cell or a "
                "supercell is reduced to its primitive cell first; any origin, axes or reduced cell)"
            )
        else:
            setting = "canonical setting (any origin, axes or reduced cell)"
        print(f"  setting: {setting}")
        print(f"  domain: {model.domain.describe() if model.domain is not None else 'not recorded'}")
    if DEFAULT_MODEL in names:
        print(f"default: {DEFAULT_MODEL} (the model of every command not given --model)")
    return 0
