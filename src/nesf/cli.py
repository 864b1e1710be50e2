"""Command-line interface: ``nesf <command> ...`` (see ``nesf --help``)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from nesf import __version__
from nesf.errors import NesfError


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
    import torch

    from nesf.data.readers import read_crystals
    from nesf.io.writers import write_json
    from nesf.metrics.report import evaluate_reconstruction, format_table
    from nesf.reconstruction.exact import default_bbox, diagnose, reconstruct_exact

    _seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nesf`` command."""
    parser = argparse.ArgumentParser(
        prog="nesf",
        description="Neural Structure Fields: crystal structures as continuous fields.",
    )
    parser.add_argument("--version", action="version", version=f"nesf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

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
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_reconstruction_options(p)
    p.set_defaults(func=cmd_check_fields)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nesf`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except NesfError as exc:
        print(f"nesf: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # bad settings given on the command line
        print(f"nesf: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nesf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
