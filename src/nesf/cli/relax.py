"""``nesf relax``, and the relaxation options of ``nesf sample --relax`` and ``nesf generation-metrics --relaxed``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from nesf.cli.common import MAX_ATOMS_HELP, THREADS_HELP, check_outputs, positive_float, positive_int, set_threads

FMAX_HELP = "force convergence criterion of the relaxation, eV/A (default 0.1)"
STEPS_HELP = "most FIRE steps per crystal (default 500)"


def _add_settings(p: argparse.ArgumentParser, steps_flag: str) -> None:
    p.add_argument("--fmax", type=positive_float, default=0.1, help=FMAX_HELP)
    p.add_argument(steps_flag, dest="relax_steps", type=positive_int, default=500, metavar="N", help=STEPS_HELP)


def _settings(args: argparse.Namespace):  # noqa: ANN202
    from nesf.cli.common import pick_device
    from nesf.relax.potential import RelaxSettings

    return RelaxSettings(
        fmax=args.fmax,
        steps=args.relax_steps,
        relax_cell=not getattr(args, "fixed_cell", False),
        device=pick_device(getattr(args, "device", None) or "cpu"),
    )


def add_relax(sub: argparse._SubParsersAction) -> None:
    """Register ``nesf relax``."""
    p = sub.add_parser(
        "relax",
        help="relax crystals with a potential (CHGNet; the relax extra)",
        description="Relax every crystal of DATA with CHGNet (FIRE, cell and positions) and write OUT/*.cif and "
        "OUT/all.extxyz (the relaxed crystals), OUT/relax.json and OUT/relax.csv (per crystal: CHGNet energy per "
        "atom, RMSD to the relaxed form in Angstrom and how it was measured, space group before and after at "
        "0.1 A, steps, time). Needs the relax extra: pip install 'nesf[relax]'.",
    )
    p.add_argument("data", help="crystals (anything nesf reads)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists and is not empty")
    _add_settings(p, "--steps")
    p.add_argument("--fixed-cell", action="store_true", help="relax the positions only, not the cell")
    p.add_argument("--device", default="cpu", help="torch device of the potential (default cpu)")
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--max-atoms", type=int, default=None, help=MAX_ATOMS_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_relax)


def cmd_relax(args: argparse.Namespace) -> int:
    """Relax crystals with CHGNet and write them with their table."""
    from nesf.data.readers import read_crystals
    from nesf.io.writers import staged_folder
    from nesf.relax.outputs import write_relaxation
    from nesf.relax.potential import Relaxer, require_chgnet

    require_chgnet("nesf relax")
    check_outputs(args)
    crystals = read_crystals(args.data)
    set_threads(args.threads)
    settings = _settings(args)
    results = Relaxer(settings).relax(crystals, progress=not args.quiet)
    with staged_folder(args.out, overwrite=args.overwrite) as tmp:
        s = write_relaxation(tmp, results, settings, {"data": str(args.data)})
    print(_summary_line(s) + f"; wrote {args.out} (CIFs, all.extxyz, relax.json, relax.csv)")
    return 0


def _summary_line(s: dict) -> str:
    rmsd = "n/a" if s["rmsd_to_relaxed_mean"] is None else f"{s['rmsd_to_relaxed_mean']:.3f} A"
    kept = "n/a" if s["spacegroup_kept_pct"] is None else f"{s['spacegroup_kept_pct']:.1f} %"
    return (
        f"relaxed {s['n_relaxed']} of {s['n_crystals']} crystals ({s['n_failed']} failed) in "
        f"{s['seconds_total']:.1f} s: mean RMSD to relaxed {rmsd}, space group kept {kept}"
    )


# ---------------------------------------------------------------------- nesf sample --relax
def add_sample_relax_options(p: argparse.ArgumentParser) -> None:
    """``nesf sample``'s ``--relax`` and its settings."""
    p.add_argument(
        "--relax",
        action="store_true",
        help="relax the samples with CHGNet (the relax extra): OUT/relaxed/ holds them and their table, each "
        "sample's all.extxyz frame gets the relax_* fields, summary.json the mean RMSD to relaxed (A) and the "
        "unique %% (with --train also the novel %% and the stability proxy %%)",
    )
    _add_settings(p, "--relax-steps")
    p.add_argument(
        "--screen",
        type=float,
        default=None,
        metavar="EV",
        help="keep only samples whose CHGNet formation energy, taken as decoded (no relaxation), is at most EV "
        "eV/atom above the elements' (the relax extra; each kept sample records it); --n stays the number of "
        "codes drawn, so fewer are written. carbon_24's training cells reach 0.7: 1.0 keeps about half of its "
        "samples and nearly all that resemble real carbon cells",
    )
    p.add_argument(
        "--train",
        default=None,
        metavar="DATA",
        help="with --relax: the model's training crystals (anything nesf reads), for summary.json's novel %% "
        "(matching no training crystal) and stability proxy %% (within 0.1 eV/atom of the hull of the training "
        "crystals' CHGNet energies)",
    )
    p.add_argument(
        "--hull-cache",
        default=None,
        metavar="DIR",
        help="with --relax --train: cache of the training crystals' CHGNet energies (default ~/.cache/nesf/hull)",
    )


def check_sample_relax(args: argparse.Namespace) -> None:
    """Refuse ``--relax`` and ``--screen`` before any sampling when CHGNet is missing."""
    if not getattr(args, "relax", False) and getattr(args, "train", None):
        raise ValueError("--train is used with --relax only")
    if getattr(args, "screen", None) is not None:
        from nesf.relax.potential import require_chgnet

        if getattr(args, "head", None) is not None:
            raise ValueError("--screen works with plain sampling, not with --property")
        if not math.isfinite(args.screen):
            raise ValueError(f"--screen {args.screen}: give a formation energy in eV/atom, e.g. 1.0")
        require_chgnet("nesf sample --screen")
    if getattr(args, "relax", False):
        from nesf.relax.potential import require_chgnet

        if getattr(args, "head", None) is not None:
            raise ValueError("--relax works with plain sampling, not with --property")

        require_chgnet("nesf sample --relax")


def screen_samples(args: argparse.Namespace, decoded: list) -> tuple[list[bool], dict]:
    """Which decoded samples ``--screen`` keeps (each gets ``chgnet_formation_energy_ev``) and summary.json's fields.

    Every sample is kept, with nothing to add, when ``--screen`` is not given.
    """
    if getattr(args, "screen", None) is None or not decoded:
        return [True] * len(decoded), {}
    import numpy as np

    from nesf.cli.common import pick_device
    from nesf.relax.potential import model_tag
    from nesf.relax.screen import screen

    keep, e_form = screen(decoded, args.screen, device=pick_device(getattr(args, "device", None) or "cpu"))
    for crystal, e in zip(decoded, e_form):
        if np.isfinite(e):
            props = crystal.info.get("properties") or {}
            crystal.info["properties"] = {**props, "chgnet_formation_energy_ev": round(float(e), 4)}
    kept = int(keep.sum())
    print(
        f"screen: {kept} of {len(decoded)} samples within {args.screen:g} eV/atom of the elements "
        f"(static CHGNet formation energy; {int((~np.isfinite(e_form)).sum())} not evaluated)"
    )
    return keep.tolist(), {
        "screen": {
            "max_formation_energy_ev": args.screen,
            "potential": model_tag(),
            "n_screened": len(decoded),
            "n_kept": kept,
            "kept_pct": 100.0 * kept / len(decoded),
            "formation_energy_median_ev": float(np.nanmedian(e_form)) if np.isfinite(e_form).any() else None,
        }
    }


def relax_samples(args: argparse.Namespace, decoded: list, folder: Path) -> dict:
    """Relax decoded samples into ``folder/relaxed`` and give each its ``relax_*`` fields; summary.json's fields.

    Returns nothing to add when ``--relax`` is not given.
    """
    if not getattr(args, "relax", False) or not decoded:
        return {}
    from nesf.relax.outputs import write_relaxation
    from nesf.relax.potential import Relaxer, result_properties

    settings = _settings(args)
    results = Relaxer(settings).relax(decoded, progress=not args.quiet)
    for crystal, result in zip(decoded, results):
        crystal.info["properties"] = {**(crystal.info.get("properties") or {}), **result_properties(result)}
    s = write_relaxation(folder / "relaxed", results, settings)
    print(_summary_line(s))
    return {
        "relaxed": "relaxed/ (CIFs, all.extxyz, relax.json, relax.csv)",
        "rmsd_to_relaxed_mean": s["rmsd_to_relaxed_mean"],
        "rmsd_units": "Angstrom",
        **_sample_checks(args, decoded),
        "relax_summary": s,
    }


def _sample_checks(args: argparse.Namespace, decoded: list) -> dict:
    """Unique, novel, stable-proxy and S.U.N. shares of relaxed samples (novel and stable need ``--train``)."""
    from nesf.data.readers import read_crystals
    from nesf.relax.metrics import relaxed_metrics

    training = read_crystals(args.train) if args.train else None
    m = relaxed_metrics(decoded, training, cache_dir=args.hull_cache, progress=not args.quiet)
    out = {key: m.get(key) for key in ("unique_pct", "novel_pct", "stable_proxy_pct", "sun_pct")}
    if training is None:
        out["novelty_note"] = "novel_pct and stable_proxy_pct need --train DATA (the model's training crystals)"
    else:
        out["train"] = str(args.train)
        out["stable_threshold_ev"] = m["stable_threshold_ev"]
        out["e_above_hull_median_ev"] = m["e_above_hull_median_ev"]
    line = f"samples: unique {m['unique_pct']:.1f} %"
    if training is not None:
        line += (
            f", novel {m['novel_pct']:.1f} %, stable proxy {m['stable_proxy_pct']:.1f} %, "
            f"stable, unique and novel {m['sun_pct']:.1f} % (against {len(training)} training crystals)"
        )
    print(line)
    return out


# ---------------------------------------------------------------------- generation-metrics --relaxed
def add_relaxed_metric_options(p: argparse.ArgumentParser) -> None:
    """``nesf generation-metrics``'s ``--relaxed``, ``--train`` and ``--hull-cache``."""
    p.add_argument(
        "--relaxed",
        action="store_true",
        help="also the relaxation metrics (CHGNet; the relax extra): mean RMSD to relaxed (A), unique %% and, "
        "with --train, novel %% and the stability proxy %% (within 0.1 eV/atom of the training crystals' hull); "
        "crystals carrying relax_* fields (nesf relax, nesf sample --relax) are not relaxed again",
    )
    p.add_argument("--train", default=None, help="with --relaxed: training crystals for novelty and the hull")
    p.add_argument(
        "--hull-cache",
        default=None,
        metavar="DIR",
        help="with --relaxed --train: cache of the training crystals' CHGNet energies (default ~/.cache/nesf/hull)",
    )
    _add_settings(p, "--relax-steps")


#: Rows printed for the relaxation metrics: key, label, format.
RELAXED_LABELS = (
    ("rmsd_to_relaxed_mean_a", "mean RMSD to relaxed [A]", "{:.4f}"),
    ("spacegroup_kept_pct", "space group kept at 0.1 A [%]", "{:.2f}"),
    ("unique_pct", "unique [%]", "{:.2f}"),
    ("novel_pct", "novel [%]", "{:.2f}"),
    ("stable_proxy_pct", "stable proxy (<= 0.1 eV/atom) [%]", "{:.2f}"),
    ("sun_pct", "stable, unique and novel [%]", "{:.2f}"),
)


def relaxed_generation_metrics(args: argparse.Namespace, generated: list) -> dict:
    """The relaxation metrics of ``--relaxed`` (nothing without it)."""
    if not getattr(args, "relaxed", False):
        if getattr(args, "train", None):
            raise ValueError("--train is used with --relaxed only")
        return {}
    from nesf.data.readers import read_crystals
    from nesf.relax.metrics import relaxed_metrics
    from nesf.relax.potential import Relaxer, require_chgnet

    require_chgnet("nesf generation-metrics --relaxed")
    training = read_crystals(args.train) if args.train else None
    relaxer = Relaxer(_settings(args))
    return relaxed_metrics(generated, training, relaxer=relaxer, cache_dir=args.hull_cache, progress=not args.quiet)


__all__ = [
    "add_relax",
    "add_relaxed_metric_options",
    "add_sample_relax_options",
    "check_sample_relax",
    "cmd_relax",
    "relax_samples",
    "relaxed_generation_metrics",
    "screen_samples",
]
