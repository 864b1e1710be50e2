"""What the commands share: option types, threads and seeds, reading inputs, checking outputs, loading models."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

THREADS_HELP = "torch threads (default: the cores not already busy, at least 1)"
REFINE_HELP = (
    "NeSF models: Adam steps that refine each encoded latent code on its input's own field before decoding "
    "(default 30; 0: the encoder's code as it is, as published)"
)
RESTARTS_HELP = (
    "NeSF models: decode each refined code and, while its crystal's composition differs from the input's, "
    "refine it again with other query draws, weighting up the input atoms its decodes missed, up to this "
    "many times (default: the model's record, 14 for the shipped models but perov_5, else 6; 0: no check)"
)
MAX_COST_HELP = (
    "NeSF models: the work of a checked code, counted in field queries, stays within about this many times "
    "the decode of the crystal's encoder code; refinements and restarts that would go beyond it are shortened "
    "or left out (default: the checkpoint's own, else 0: no bound, every step and restart; nesf train records 5 "
    "for a model that matches few validation crystals in one pass; 5 bounds a weak model's cost, at a price in "
    "match rate on a good one)"
)
ENCODER_FIRST_HELP = (
    "NeSF models: checked codes decode the encoder's own code first and keep it where its crystal already has "
    "the input's composition (only the others are refined and restarted): about 40 %% less work on mp "
    "validation crystals at the same match rate, positions a little less precise (default: every code refined)"
)
FAST_HELP = (
    "NeSF models: fast checked codes: the encoder's own code first (its cell fitted), Gauss-Newton steps and "
    "up to 20 one-step restarts for the crystals it misses, no atom fit, space-group or precision check; on mp test "
    "crystals about the default's match rate at a fifth of its time, positions less precise and fewer "
    "space groups kept (--refine-steps, --restarts and --encoder-first still apply on top)"
)
MAX_ATOMS_HELP = "refuse crystals with more atoms per cell (after symmetry expansion) than this (default 1000)"
HTML_HELP = (
    "also write a self-contained HTML report (works offline): the per-crystal table, sortable, warnings "
    "highlighted, and each crystal's input and output in an interactive 3D view"
)
SYMMETRIZE_HELP = (
    "NeSF models: snap each decoded crystal onto the space group spglib finds in it over a ladder of tolerances, "
    "in its own cell and origin (P1 crystals stay as they are; --no-symmetrize: off)"
)
PIN_ORIGIN_HELP = (
    "NeSF models of the canonical setting: move each decoded crystal so that its atom nearest the origin sits "
    "exactly on it, as the setting puts one there (--no-pin-origin: off)"
)
POLISH_HELP = (
    "NeSF models: times each detected atom moves to the mean of x + p(x) over shells of field queries around it "
    "(default 2 for learned fields; 0: the clustered positions)"
)


def set_threads(threads: int | None) -> int:
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


def positive_float(text: str) -> float:
    """An argparse type: a float above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of 0 or more, got {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random number generators."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> str:
    """The torch device of a ``--device`` value (``auto``: CUDA when present, else the CPU)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return name


def add_model_options(
    p: argparse.ArgumentParser,
    decoding: bool = True,
    default: str | None = None,
    encoding: bool = True,
    reading: bool = True,
) -> None:
    """The options of commands that load a trained model (``--model``, ``--device``, ...).

    Args:
        p: the command's parser.
        decoding: also the reconstruction options (``--batch-size``, ``--grid-spacing``).
        default: the model used when ``--model`` is not given (None: ``--model`` is required).
        encoding: also the refinement options (``--refine-steps``, ``--restarts``, ``--max-cost``,
            ``--encoder-first``, ``--fast``).
        reading: also the options of reading crystals (``--conventional``, ``--max-atoms``).
    """
    if default:
        p.add_argument(
            "--model",
            default=default,
            help=f"checkpoint path or name of a shipped model (any case; default {default}, the general model)",
        )
    else:
        p.add_argument("--model", required=True, help="checkpoint path or name of a shipped model (any case)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    if reading:
        p.add_argument("--conventional", action="store_true", help="convert crystals to conventional standard cells")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    if decoding:
        p.add_argument("--batch-size", type=int, default=None, help="crystals decoded together (default 64)")
        p.add_argument(
            "--grid-spacing",
            type=float,
            default=None,
            help="particle grid spacing, Angstrom (default: the model's own, 0.5 for most and 0.7 for mp)",
        )
        p.add_argument(
            "--symmetrize",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=SYMMETRIZE_HELP,
        )
        p.add_argument("--polish-steps", type=non_negative_int, default=None, help=POLISH_HELP)
        p.add_argument("--pin-origin", action=argparse.BooleanOptionalAction, default=None, help=PIN_ORIGIN_HELP)
        p.add_argument(
            "--species-min-atoms",
            type=non_negative_float,
            default=None,
            metavar="ATOMS",
            help="keep an element in a decoded crystal only if the species field gives it at least this many "
            "atoms' worth of probability; its atoms take the best kept element (default 0: off, every atom keeps "
            "its own vote)",
        )
    if encoding:
        p.add_argument("--refine-steps", type=non_negative_int, default=None, help=REFINE_HELP)
        p.add_argument("--restarts", type=non_negative_int, default=None, help=RESTARTS_HELP)
        p.add_argument("--max-cost", type=non_negative_float, default=None, metavar="X", help=MAX_COST_HELP)
        p.add_argument("--encoder-first", action="store_true", default=None, help=ENCODER_FIRST_HELP)
        p.add_argument("--fast", action="store_true", help=FAST_HELP)
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    if reading:
        p.add_argument("--max-atoms", type=int, default=None, help=MAX_ATOMS_HELP)


def add_stream_options(p: argparse.ArgumentParser) -> None:
    """The options of commands that work through large sets chunk by chunk (``--resume``, ``--jobs``)."""
    from nesf.io.stream import DEFAULT_CHUNK

    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run from OUT.partial (the finished chunks are kept, nothing is redone)",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="processes on this machine (each takes every N-th chunk; the output is the one-process output); "
        "on several machines run 'torchrun --nnodes M --nproc-per-node N -m nesf ...' instead",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK,
        help=f"crystals per chunk, each saved as it is done in OUT.partial (default {DEFAULT_CHUNK})",
    )


def load_model(args: argparse.Namespace):  # noqa: ANN202
    """The model of ``--model``, with the command line's threads, device, decoding and refinement settings."""
    from nesf.registry import load_model as load_checkpoint_model

    set_threads(getattr(args, "threads", None))
    model = load_checkpoint_model(args.model, device=pick_device(args.device), priors=False)
    changes = {}
    if getattr(args, "batch_size", None):
        changes["batch_size"] = args.batch_size
    if getattr(args, "grid_spacing", None):
        changes["grid_spacing"] = args.grid_spacing
    # NeSF decoding settings, only when given
    for name in ("symmetrize", "polish_steps", "pin_origin", "species_min_atoms"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    fast = getattr(args, "fast", False) and hasattr(model, "with_refinement")
    if fast:  # the preset first, the command line's own settings on top
        from nesf.encoding.presets import fast_decoding

        changes = {**fast_decoding(model.settings.grid_spacing), **changes}
    model = model.with_settings(**changes) if changes else model
    given = {
        "steps": getattr(args, "refine_steps", None),
        "restarts": getattr(args, "restarts", None),
        "max_cost": getattr(args, "max_cost", None),
        "check_encoder": getattr(args, "encoder_first", None),
    }
    refine = {key: value for key, value in given.items() if value is not None}
    if getattr(args, "fast", False):
        from nesf.encoding.presets import FAST_REFINEMENT

        refine = {**FAST_REFINEMENT, **refine}
    if refine:
        if not hasattr(model, "with_refinement"):
            if any(refine.values()):
                raise ValueError(
                    f"--refine-steps/--restarts/--max-cost/--encoder-first/--fast: {args.model} is a voxel model; "
                    "only NeSF models refine codes"
                )
        else:
            model = model.with_refinement(**refine)
    return model


def read_inputs(paths: Sequence[str], conventional: bool, skip_invalid: bool) -> tuple[list, list[str]]:
    """Crystals of every path (files or folders); with ``skip_invalid`` unreadable files are listed, not fatal."""
    from nesf.data.readers import folder_files, read_crystals
    from nesf.errors import CrystalInputError

    crystals: list = []
    skipped: list[str] = []
    for path in paths:
        p = Path(path)
        files = folder_files(p) if (skip_invalid and p.is_dir()) else [p]
        for f in files:
            try:
                crystals.extend(read_crystals(f, conventional=conventional))
            except CrystalInputError as exc:
                if not skip_invalid:
                    hint = " (--skip-invalid goes on past what cannot be read)"
                    raise CrystalInputError(exc.source, exc.reason + hint, exc.location) from None
                skipped.append(str(exc))
    if not crystals:
        raise CrystalInputError(", ".join(paths), "no readable crystal" + (" (all skipped)" if skipped else ""))
    return crystals, skipped


def encodable(model, crystals: list, skip_invalid: bool, allow_empty: bool = False) -> tuple[list, list[str]]:  # noqa: ANN001
    """Crystals the model can encode; with ``skip_invalid`` the others are listed instead of refused.

    ``allow_empty``: a list with none left is returned (one chunk of a larger run), not refused.
    """
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
    if not kept and not allow_empty:
        raise ValueError("no crystal left to reconstruct: " + "; ".join(skipped[:5]))
    return kept, skipped


def check_outputs(args: argparse.Namespace, folder: bool = True) -> None:
    """Refuse output paths that cannot be written, before any work (exit 2, one line)."""
    from nesf.errors import OutputError
    from nesf.io.writers import check_output_folder

    for name in ("json", "csv", "html"):
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


def write_structures(out: Path, crystals) -> list[str]:  # noqa: ANN001
    """One CIF per crystal and all.extxyz into ``out`` (a fresh folder: see ``staged_folder``).

    Crystals without atoms (a decode that found none) get no file, since readers refuse them;
    their ids are returned (see :func:`say_no_atoms`).
    """
    from nesf.io.writers import unique_stem, write_cif, write_extxyz

    out.mkdir(parents=True, exist_ok=True)
    kept = [c for c in crystals if c.n_atoms]
    seen: dict[str, int] = {}
    for c in kept:
        write_cif(out / f"{unique_stem(c.id, seen)}.cif", c)
    if kept:
        write_extxyz(out / "all.extxyz", kept)
    return [c.id for c in crystals if not c.n_atoms]


def say_no_atoms(ids: list[str], what: str = "decode") -> None:
    """Name the crystals written without a file because their ``what`` found no atom."""
    if ids:
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        print(f"{len(ids)} {what}(s) found no atom ({shown}): no CIF or extxyz frame written")
