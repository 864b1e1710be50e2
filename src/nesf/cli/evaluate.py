"""``nesf check-fields``, ``nesf evaluate`` and ``nesf reconstruct``: round trips of crystals and their metrics."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nesf import DEFAULT_MODEL
from nesf.cli.common import (
    HTML_HELP,
    MAX_ATOMS_HELP,
    THREADS_HELP,
    add_model_options,
    add_stream_options,
    check_outputs,
    load_model,
    positive_int,
    seed_everything,
    set_threads,
)
from nesf.io.stream import DEFAULT_CHUNK


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
    add_stream_options(p)
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
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run from OUT.json.partial (needs --json; the finished chunks are kept)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK,
        help=f"crystals per chunk, each saved as it is done beside --json (default {DEFAULT_CHUNK}); "
        "under torchrun each process takes every N-th chunk",
    )
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
    """Reconstruct every crystal from its exact field and report the metrics, chunk by chunk."""
    from tqdm.auto import tqdm

    from nesf.cli.roundtrip import input_files, iter_inputs, merge_shards, summarize
    from nesf.io.stream import ChunkedRun, input_signature
    from nesf.io.writers import write_json
    from nesf.metrics.report import format_table

    if args.resume and not args.json:
        raise ValueError("--resume continues the run whose chunks sit beside --json OUT.json; give --json")
    seed_everything(args.seed)
    set_threads(args.threads)
    settings = _settings(args)
    files, _, total = input_files([args.data], skip_invalid=False, hint=False)
    bbox = None
    if args.frame == "paper":  # the particle domain covers every atom of the input: a first lazy pass
        low, high = np.full(3, np.inf), np.full(3, -np.inf)
        for _, c in iter_inputs(files, args.conventional):
            low, high = np.minimum(low, c.cart.min(axis=0)), np.maximum(high, c.cart.max(axis=0))
        bbox = np.stack([low - settings.grid_spacing, high + settings.grid_spacing])
    manifest = {
        "command": "check-fields",
        "frame": args.frame,
        "settings": settings.to_dict(),
        "conventional": bool(args.conventional),
        "no_match": bool(args.no_match),
        "inputs": input_signature(files),
    }
    scratch = None if args.json else tempfile.TemporaryDirectory(prefix="nesf-run-")
    anchor = args.json or str(Path(scratch.name) / "run.json")
    result: dict = {}
    try:
        run = ChunkedRun(anchor, manifest, resume=args.resume, chunk_size=args.chunk_size)
        show = not args.quiet and run.rank == 0
        done = min(total, run.resumed_chunks * run.chunk_size)
        with tqdm(
            total=total, initial=done, desc=f"reconstruct ({args.frame})", unit="crystal", disable=not show
        ) as bar:
            for k, chunk in run.chunks(iter_inputs(files, args.conventional)):
                run.save(k, **_exact_chunk([c for _, c in chunk], args, settings, bbox))
                bar.update(min(len(chunk) * run.world, total - bar.n))

        def merge(shards: list[Path], tmp: Path) -> None:
            problems: list[dict] = []
            merged = summarize(
                merge_shards(shards, []), lambda shard: problems.extend(map(json.loads, shard["problems"]))
            )
            metrics = {k: v for k, v in merged.metrics.items() if not k.startswith("codes_")}
            result.update({"data": str(args.data), "frame": args.frame, **metrics, "settings": settings.to_dict()})
            result["unrepresentable"] = problems
            write_json(tmp, result)

        if not run.finish(merge):
            return 0
    finally:
        if scratch is not None:
            scratch.cleanup()
    metrics = {k: v for k, v in result.items() if k not in ("data", "frame", "settings", "unrepresentable")}
    print(format_table(metrics, title=f"exact-field reconstruction of {args.data} ({args.frame} frame)"))
    problems = result["unrepresentable"]
    if problems:
        print(f"\n{len(problems)} crystal(s) cannot be represented with these settings:", file=sys.stderr)
        for prob in problems[:20]:
            print(f"  {prob['id']}: {prob['reason']}", file=sys.stderr)
    return 1 if problems else 0


def _exact_chunk(crystals: list, args: argparse.Namespace, settings, bbox) -> dict:  # noqa: ANN001
    """One chunk of ``check-fields``: its shard arrays (pooled-metric terms, verdicts, unrepresentable crystals)."""
    from nesf.cli.roundtrip import ChunkResult
    from nesf.metrics.accumulate import crystal_stats, position_errors
    from nesf.metrics.matcher import match_rmse
    from nesf.metrics.verdicts import make_verdicts
    from nesf.reconstruction.exact import diagnose, reconstruct_exact

    if args.frame == "periodic":
        crystals = [c.wrapped() for c in crystals]
    t0 = time.perf_counter()
    pred = reconstruct_exact(crystals, args.frame, settings, bbox=bbox)
    seconds = time.perf_counter() - t0
    rmse = None if args.no_match else match_rmse(crystals, pred, n_jobs=args.jobs)
    stats = crystal_stats(crystals, pred, args.frame)
    records = [v.to_dict() for v in make_verdicts(crystals, pred, rmse, position_errors=position_errors(stats))]
    problems = [
        {
            "id": c.id,
            "reason": diagnose(c, args.frame, settings, bbox) or "the reconstruction found a different atom count",
        }
        for c, p in zip(crystals, pred)
        if p.n_atoms != c.n_atoms
    ]
    chunk = ChunkResult(stats, records, [], [], seconds)
    return {**chunk.arrays(), "problems": np.array([json.dumps(p) for p in problems], dtype=str)}


def _evaluate_title(model, args: argparse.Namespace) -> tuple[str, str]:  # noqa: ANN001
    """The setting of the model and the title of ``nesf evaluate``'s table."""
    setting = getattr(model, "setting", "as_given")
    steps = model.refinement.steps if hasattr(model, "refinement") else 0
    refined = f", codes refined {steps} steps" if steps else ""
    return setting, f"{args.model} on {', '.join(args.data)} ({model.frame} frame, {setting} setting{refined})"


def _run_manifest(model, args: argparse.Namespace, command: str) -> dict:  # noqa: ANN001
    """What identifies a round-trip run (a resumed run must be the same)."""
    return {
        "command": command,
        "model": str(args.model),
        "model_sha256": str(model.info.get("sha256") or ""),
        "settings": model.settings.to_dict() if hasattr(model, "settings") else None,
        "refinement": model.refinement.to_dict() if hasattr(model, "refinement") else None,
        "conventional": bool(args.conventional),
        "no_match": bool(args.no_match),
        "skip_invalid": bool(args.skip_invalid),
        "seed": int(getattr(args, "seed", 0)),
        "resettle": bool(getattr(args, "resettle", False)),
    }


def _start(args: argparse.Namespace, anchor: str | None):  # noqa: ANN202
    """Checks and model of a round-trip command; None when this process only relaunched it in ``--jobs`` processes."""
    from nesf.io.stream import process_rank

    world = process_rank()[1]
    if (args.jobs > 1 or args.resume) and anchor is None:
        raise ValueError("--jobs and --resume keep the run's chunks beside an output: give --json or --csv")
    if args.jobs > 1 and world == 1:
        return None
    check_outputs(args, folder=getattr(args, "out", None) is not None and not args.resume)
    args.match_jobs = None if world == 1 else 1  # several processes: each matches its own chunks
    return load_model(args)


def _checked(model) -> bool:  # noqa: ANN001
    refinement = getattr(model, "refinement", None)
    return bool(refinement is not None and refinement.steps and refinement.restarts)


def _print_summary(merged, args: argparse.Namespace) -> None:  # noqa: ANN001
    """The first verdicts, the matched line and the skipped inputs."""
    from nesf.metrics.verdicts import StructureVerdict, format_verdicts

    first = [StructureVerdict(**r) for r in merged.first_records]
    print(format_verdicts(first))
    if merged.n > len(first):
        print(f"... {merged.n - len(first)} more (all of them with --csv or --json)")
    if not args.no_match:
        line = f"{merged.n_matched} of {merged.n} matched (StructureMatcher stol=0.5, angle_tol=10, ltol=0.3)"
        if merged.n_outside:
            line += f"; {merged.n_outside} outside the model's domain"
        print(line)
    for line in merged.skipped:
        print(f"skipped: {line}")


class _Records:
    """The per-crystal outputs shared by evaluate and reconstruct: CSV rows, JSON records and HTML views."""

    def __init__(self, args: argparse.Namespace, csv_path: Path | None, json_path: Path | None) -> None:
        import csv

        from nesf.metrics.verdicts import VERDICT_KEYS

        self.args, self.csv_path, self.json_path = args, csv_path, json_path
        self.keys = VERDICT_KEYS
        self.csv_fh = open(csv_path, "w", newline="") if csv_path else None  # noqa: SIM115
        self.csv = csv.writer(self.csv_fh) if self.csv_fh else None
        if self.csv:
            self.csv.writerow(VERDICT_KEYS)
        self.json_lines = tempfile.TemporaryFile("w+") if json_path else None
        self.rows: list[dict] = []
        self.views: list[tuple] = []

    def add(self, shard: dict) -> None:
        from nesf.data.extxyz import crystal_from_extxyz_text
        from nesf.io.writers import clean_json
        from nesf.viz.html_report import MAX_VIEWS

        for rec in shard["records"]:
            if self.csv:
                row = dict(rec, warnings="; ".join(rec["warnings"]))
                # .get: a run resumed from chunks an older nesf wrote lacks the newer columns
                self.csv.writerow(["" if row.get(k) is None else row[k] for k in self.keys])
            if self.json_lines:
                self.json_lines.write(json.dumps(clean_json(rec)) + "\n")
        if self.args.html:
            self.rows.extend(shard["records"])
            for rec, a, b in zip(shard["records"], shard["xyz_in"], shard["xyz"]):
                if len(self.views) < MAX_VIEWS and rec["n_atoms_out"]:
                    self.views.append((crystal_from_extxyz_text(a), crystal_from_extxyz_text(b)))

    def close(self, payload: dict, merged, title: str) -> None:  # noqa: ANN001
        if self.csv_fh:
            self.csv_fh.close()
        if self.json_lines:
            _write_json_with_records(self.json_path, payload, self.json_lines)
        if self.args.html:
            from nesf.viz.html_report import write_html_report

            pairs = self.views + [(None, None)] * (len(self.rows) - len(self.views))
            write_html_report(self.args.html, self.rows, pairs, title=title, summary=merged.metrics)


def _write_json_with_records(path: Path, payload: dict, lines) -> None:  # noqa: ANN001
    """``payload`` as JSON at ``path``, its ``structures`` the JSON lines of the file ``lines``."""
    from nesf.io.writers import clean_json

    head = json.dumps(clean_json({k: v for k, v in payload.items() if k != "skipped"}), indent=2)
    lines.seek(0)
    with open(path, "w") as fh:
        fh.write(head[: head.rstrip().rindex("}")].rstrip() + ',\n  "structures": [\n')
        first = True
        for line in lines:
            fh.write(("" if first else ",\n") + "    " + line.rstrip("\n"))
            first = False
        fh.write('\n  ],\n  "skipped": ' + json.dumps(payload.get("skipped", [])) + "\n}\n")
    lines.close()


def _side_path(final: str | None, anchor: str, tmp: Path) -> Path | None:
    """Where an output is written while merging: the anchor's temporary path, or beside the final one."""
    if not final:
        return None
    if final == anchor:
        return tmp
    return Path(final).with_name(f".{Path(final).name}.merge-{os.getpid()}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Round-trip every crystal through the autoencoder and report the metrics, chunk by chunk."""
    from nesf.cli.roundtrip import OutputWriter, run_round_trips
    from nesf.metrics.report import format_comparison, format_table

    seed_everything(args.seed)
    anchor = args.json or args.csv
    model = _start(args, anchor)
    if model is None:
        from nesf.io.stream import relaunch_with_jobs

        return relaunch_with_jobs(args.argv, args.jobs)
    setting, title = _evaluate_title(model, args)

    class Writer(OutputWriter):
        def __init__(self, tmp: Path) -> None:
            super().__init__(tmp)
            self.paths = {name: _side_path(getattr(args, name), anchor, tmp) for name in ("json", "csv")}
            self.records = _Records(args, self.paths["csv"], self.paths["json"])

        def add(self, shard: dict) -> None:
            self.records.add(shard)

        def finish(self, merged) -> None:  # noqa: ANN001
            payload = {"model": str(args.model), "data": ", ".join(args.data), "frame": model.frame}
            payload.update(setting=setting, **_metrics(merged, model), settings=model.settings.to_dict())
            if hasattr(model, "refinement"):
                payload["refinement"] = model.refinement.to_dict()
            if args.resettle:
                payload["resettled"], payload["resettle_seed"] = merged.resettled, args.seed
            if args.breakdown:
                payload.update(merged.parts)
            payload["skipped"] = merged.skipped
            self.records.close(payload, merged, title)
            for name, path in self.paths.items():  # the non-anchor output into place
                final = getattr(args, name)
                if path is not None and final != anchor:
                    os.replace(path, final)

    merged = run_round_trips(model, args, args.data, anchor, _run_manifest(model, args, "evaluate"), Writer)
    if merged is None:
        return 0
    metrics = _metrics(merged, model)
    if args.resettle:
        columns = {"as given": metrics, **{f"re-set: {kind}": m for kind, m in merged.resettled.items()}}
        print(format_comparison(columns, title=title))
    else:
        print(format_table(metrics, title=title))
    if args.breakdown:
        from nesf.metrics.breakdown import format_breakdown

        print()
        print(format_breakdown(merged.parts))
    print()
    _print_summary(merged, args)
    return 0


def _metrics(merged, model) -> dict:  # noqa: ANN001
    """The merged metrics, the restart counts only where codes are checked."""
    metrics = dict(merged.metrics)
    if not _checked(model):
        metrics.pop("codes_restarted", None)
        metrics.pop("codes_recovered", None)
        metrics.pop("search", None)
    return metrics


def cmd_reconstruct(args: argparse.Namespace) -> int:
    """Round trip of input crystals; one CIF each plus one extxyz with all, and per-crystal verdicts, chunk by chunk."""
    from nesf.cli.common import say_no_atoms
    from nesf.cli.roundtrip import OutputWriter, run_round_trips
    from nesf.io.writers import unique_stem

    if args.resume and Path(args.out).exists() and not Path(args.out + ".partial").exists():
        from nesf.errors import OutputError

        raise OutputError(f"{args.out}: nothing to resume: the output is complete")
    model = _start(args, args.out)
    if model is None:
        from nesf.io.stream import relaunch_with_jobs

        return relaunch_with_jobs(args.argv, args.jobs)
    args.seed, args.resettle = 0, False
    title = f"{args.model}: reconstruction of {', '.join(args.inputs)}"

    class Writer(OutputWriter):
        def __init__(self, tmp: Path) -> None:
            super().__init__(tmp)
            tmp.mkdir(parents=True)
            self.extxyz = open(tmp / "all.extxyz", "w")  # noqa: SIM115
            self.seen: dict[str, int] = {}
            self.empty: list[str] = []  # ids of inputs whose decode found no atom
            self.paths = {name: _side_path(getattr(args, name), args.out, tmp) for name in ("json", "csv")}
            self.records = _Records(args, self.paths["csv"], self.paths["json"])

        def add(self, shard: dict) -> None:
            for rec, cif, xyz in zip(shard["records"], shard["cif"], shard["xyz"]):
                if not rec["n_atoms_out"]:  # no atom decoded: a row in the CSV / JSON, no file a reader refuses
                    self.empty.append(rec["id"])
                    continue
                (self.tmp / f"{unique_stem(rec['id'], self.seen)}.cif").write_text(cif)
                self.extxyz.write(xyz)
            self.records.add(shard)

        def finish(self, merged) -> None:  # noqa: ANN001
            self.extxyz.close()
            say_no_atoms(self.empty, "reconstruction")
            payload = {"model": str(args.model), "inputs": list(args.inputs), "setting": "input"}
            payload.update(n_matched=merged.n_matched, **_metrics(merged, model), skipped=merged.skipped)
            for key in ("settings", "refinement"):  # how the crystals were encoded and decoded, as evaluate says
                if hasattr(model, key):
                    payload[key] = getattr(model, key).to_dict()
            self.records.close(payload, merged, title)
            for name, path in self.paths.items():
                if path is not None:
                    os.replace(path, getattr(args, name))

    merged = run_round_trips(model, args, args.inputs, args.out, _run_manifest(model, args, "reconstruct"), Writer)
    if merged is None:
        return 0
    _print_summary(merged, args)
    print(f"wrote {merged.n} reconstructed crystal(s) to {args.out} (CIFs and all.extxyz, in the inputs' cells)")
    return 0
