"""``nesf demo``: well-known crystals round-tripped through a shipped model."""

from __future__ import annotations

import argparse

from nesf import DEFAULT_MODEL
from nesf.cli.common import (
    PIN_ORIGIN_HELP,
    POLISH_HELP,
    REFINE_HELP,
    SYMMETRIZE_HELP,
    non_negative_int,
    seed_everything,
    set_threads,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf demo``."""
    p = sub.add_parser(
        "demo",
        help="round-trip well-known crystals through a shipped model (table, CIFs, PNG)",
        description=(
            "Round-trip a dozen well-known crystals (NaCl, SrTiO3, Si, ZnO, TiO2, ...) through a shipped "
            "model, print the metrics, and write OUT/inputs/*.cif, OUT/reconstructions/*.cif, "
            "OUT/metrics.json and OUT/demo.png (input vs reconstruction, and a slice of the learned field). "
            "'max move' is the largest distance of an input atom to its reconstructed atom after the rigid "
            "translation that best overlays the two; metrics.json also has it as written (max_move_pinned)."
        ),
    )
    p.add_argument("--out", default="nesf-demo", help="output folder (default nesf-demo; must be new or empty)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"shipped model name or checkpoint (default {DEFAULT_MODEL})")
    p.add_argument(
        "--plot", type=int, default=3, help="field slices drawn in demo.png (default 3; every crystal is drawn)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--refine-steps", type=non_negative_int, default=None, help=REFINE_HELP)
    p.add_argument("--symmetrize", action=argparse.BooleanOptionalAction, default=None, help=SYMMETRIZE_HELP)
    p.add_argument("--polish-steps", type=non_negative_int, default=None, help=POLISH_HELP)
    p.add_argument("--pin-origin", action=argparse.BooleanOptionalAction, default=None, help=PIN_ORIGIN_HELP)
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Round-trip well-known crystals through a shipped model; table, CIFs and a PNG."""
    from nesf.demo import run_demo

    seed_everything(args.seed)
    set_threads(args.threads)
    run_demo(
        args.out,
        args.model,
        n_plot=args.plot,
        progress=not args.quiet,
        refine_steps=args.refine_steps,
        overwrite=args.overwrite,
        decoding={
            k: v
            for k, v in (
                ("symmetrize", args.symmetrize),
                ("polish_steps", args.polish_steps),
                ("pin_origin", args.pin_origin),
            )
            if v is not None
        },
    )
    return 0
