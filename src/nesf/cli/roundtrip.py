"""Round trips of any number of crystals, chunk by chunk: the engine of ``nesf evaluate`` and ``nesf reconstruct``.

The inputs are read lazily and worked in chunks (:class:`~nesf.io.stream.ChunkedRun`); each
finished chunk saves, atomically, what the outputs need: every crystal's terms of the pooled
metrics (:func:`~nesf.metrics.accumulate.crystal_stats`), its verdict record, its groups, and the
reconstruction as CIF and extxyz text when written. Memory holds one chunk at a time. A killed
run leaves its finished chunks in ``OUT.partial``; ``--resume`` redoes none of them. Under
``torchrun`` (or ``--jobs N``) each process takes every N-th chunk, and the first process merges
the chunks in input order, so the outputs are the one-process outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Verdict rows printed by ``nesf evaluate`` (all of them with --csv or --json).
PRINTED_VERDICTS = 25


def input_files(paths: Sequence[str], skip_invalid: bool, hint: bool = True) -> tuple[list[Path], list[str], int]:
    """The crystal files of ``paths``, each read through once before any work; skipped ones and the crystal count.

    Reading every file once first (lazily, one crystal at a time) refuses a bad file before any
    model work, gives the progress bar its total, and makes ``--skip-invalid`` skip whole files
    as the in-memory readers do. ``hint``: name ``--skip-invalid`` in the error (commands that have it).

    Raises:
        CrystalInputError: a file cannot be read (without ``skip_invalid``), or nothing can.
    """
    from nesf.data.readers import folder_files, iter_crystals
    from nesf.errors import CrystalInputError

    files: list[Path] = []
    skipped: list[str] = []
    total = 0
    for path in paths:
        p = Path(path)
        for f in folder_files(p) if (skip_invalid and p.is_dir()) else [p]:
            try:
                n = sum(1 for _ in iter_crystals(f))
            except CrystalInputError as exc:
                if not skip_invalid:
                    tail = " (--skip-invalid goes on past what cannot be read)" if hint else ""
                    raise CrystalInputError(exc.source, exc.reason + tail, exc.location) from None
                skipped.append(str(exc))
                continue
            files.append(f)
            total += n
    if not total:
        raise CrystalInputError(", ".join(paths), "no readable crystal" + (" (all skipped)" if skipped else ""))
    return files, skipped, total


def iter_inputs(files: Sequence[Path], conventional: bool) -> Iterator[tuple[int, Any]]:
    """``(index, crystal)`` of every crystal of ``files`` in order (index: position in the whole input)."""
    from nesf.data.readers import iter_crystals

    return enumerate(c for f in files for c in iter_crystals(f, conventional=conventional))


def _texts(frame: np.ndarray) -> list[str]:
    return [str(x) for x in frame.tolist()]


@dataclass
class ChunkResult:
    """What one chunk of a round trip saves (plain arrays; see :meth:`arrays`)."""

    stats: np.ndarray
    records: list[dict]
    groups: list[tuple[str, str]]
    skipped: list[str]
    seconds: float
    restarted: int = 0
    recovered: int = 0
    search: dict[str, float] = field(default_factory=dict)  # the checked codes' counts (``restart_counts``)
    cif: list[str] = field(default_factory=list)
    xyz: list[str] = field(default_factory=list)
    xyz_in: list[str] = field(default_factory=list)
    resettled: dict[str, tuple[np.ndarray, list[dict], float]] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """The chunk as NumPy arrays (strings and numbers only: shards never hold pickles)."""
        out = {
            "stats": self.stats,
            "records": np.array([json.dumps(r) for r in self.records], dtype=str),
            "groups": np.array(self.groups, dtype=str).reshape(-1, 2),
            "skipped": np.array(self.skipped, dtype=str),
            "numbers": np.array([self.seconds, self.restarted, self.recovered], dtype=np.float64),
            "search": np.array([json.dumps(self.search)], dtype=str),
            "cif": np.array(self.cif, dtype=str),
            "xyz": np.array(self.xyz, dtype=str),
            "xyz_in": np.array(self.xyz_in, dtype=str),
        }
        for kind, (stats, records, seconds) in self.resettled.items():
            out[f"stats_{kind}"] = stats
            out[f"seconds_{kind}"] = np.array(seconds)
            out[f"records_{kind}"] = np.array([json.dumps(r) for r in records], dtype=str)
        return out


def round_trip_chunk(
    model: Any, indexed: list[tuple[int, Any]], args: argparse.Namespace, keep: dict[str, bool]
) -> ChunkResult:
    """Round trip of one chunk of ``(index, crystal)``: stats, verdicts and (as ``keep`` says) texts.

    ``keep``: ``"cif"`` (CIF and extxyz text of every reconstruction), ``"views"`` (extxyz text
    of input and output for the HTML report), ``"resettle"`` (also equivalent copies).
    """
    from nesf.cli.common import encodable
    from nesf.data.domain import crystal_system
    from nesf.io.writers import cif_text, extxyz_text
    from nesf.metrics.accumulate import STAT_COLUMNS
    from nesf.metrics.breakdown import atom_bucket

    raw = [c for _, c in indexed]
    kept, skipped = encodable(model, raw, args.skip_invalid, allow_empty=True)
    index_of = {id(c): i for i, c in indexed}
    indices = [index_of[id(c)] for c in kept]
    prepared = model.prepare(kept)
    result = ChunkResult(np.zeros((0, len(STAT_COLUMNS))), [], [], skipped, 0.0)
    if not prepared:
        return result
    pred, rmse, verdicts, seconds, result.stats = _reconstruct(model, prepared, args, warn=True)
    result.records = [v.to_dict() for v in verdicts]
    result.groups = [(crystal_system(c), atom_bucket(c.n_atoms)) for c in prepared]
    result.seconds = seconds
    counts = getattr(model, "restart_counts", {})
    result.restarted, result.recovered = int(counts.get("restarted", 0)), int(counts.get("recovered", 0))
    result.search = {k: float(v) for k, v in counts.items()}
    if keep.get("cif"):
        result.cif = [cif_text(p) for p in pred]
        result.xyz = [extxyz_text([p]) for p in pred]
    if keep.get("views"):
        result.xyz = result.xyz or [extxyz_text([p]) for p in pred]
        result.xyz_in = [extxyz_text([c]) for c in prepared]
    if keep.get("resettle"):
        from nesf.data.setting import RESETTLE_KINDS, resettle

        for k, kind in enumerate(RESETTLE_KINDS):
            copies = model.prepare(
                [resettle(c, kind, np.random.default_rng([args.seed, k, i])) for c, i in zip(kept, indices)]
            )
            back, _, v_copies, seconds, stats = _reconstruct(model, copies, args, warn=False)
            result.resettled[kind] = (stats, [v.to_dict() for v in v_copies], seconds)
    return result


def _reconstruct(model: Any, crystals: list, args: argparse.Namespace, warn: bool):  # noqa: ANN202
    """Reconstructions, StructureMatcher RMSEs (None: unmatched; all None with --no-match), verdicts, seconds, stats.

    ``stats``: each crystal's :func:`~nesf.metrics.accumulate.crystal_stats` row.
    """
    from nesf.metrics.accumulate import crystal_stats, position_errors
    from nesf.metrics.matcher import match_rmse
    from nesf.metrics.verdicts import make_verdicts

    check = getattr(model, "check_domain", None)
    warnings = check(crystals) if check is not None else [[] for _ in crystals]
    for c, w in zip(crystals, warnings):
        if w and warn:
            print(f"warning: {c.id}: outside the model's domain: {'; '.join(w)}", file=sys.stderr)
    t0 = time.perf_counter()
    pred = model.reconstruct_crystals(crystals)
    seconds = time.perf_counter() - t0
    rmse = None if args.no_match else match_rmse(crystals, pred, n_jobs=args.match_jobs)
    stats = crystal_stats(crystals, pred, model.frame)
    return pred, rmse, make_verdicts(crystals, pred, rmse, warnings, position_errors(stats)), seconds, stats


def strict_check(model: Any, files: Sequence[Path], args: argparse.Namespace) -> None:
    """``--strict``: refuse (nothing written) when a crystal lies outside the model's domain; a first pass."""
    from nesf.cli.common import encodable
    from nesf.errors import NesfError
    from nesf.io.stream import chunked

    check = getattr(model, "check_domain", None)
    if check is None:
        return
    n = outside = 0
    for chunk in chunked((c for _, c in iter_inputs(files, args.conventional)), 256):
        kept, _ = encodable(model, chunk, args.skip_invalid, allow_empty=True)
        for c, w in zip(kept, check(model.prepare(kept))):
            n += 1
            if w:
                outside += 1
                print(f"warning: {c.id}: outside the model's domain: {'; '.join(w)}", file=sys.stderr)
    if outside:
        raise NesfError(f"--strict: {outside} of {n} crystal(s) lie outside the model's domain; nothing written")


@dataclass
class Merged:
    """What the merged chunks give: the metrics, the first verdicts, counts and the skipped inputs."""

    metrics: dict
    parts: dict
    resettled: dict[str, dict]
    first_records: list[dict]
    n: int
    n_matched: int
    n_outside: int
    skipped: list[str]


class OutputWriter:
    """Writes a run's outputs from its chunks, in input order (one chunk at a time in memory).

    The first process of a finished run calls :meth:`add` on each chunk (see :func:`read_shard`),
    then :meth:`finish`, which must write the run's anchor output to ``tmp``. Commands subclass it.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp

    def add(self, shard: dict[str, Any]) -> None:
        """One chunk's content."""

    def finish(self, merged: Merged) -> None:
        """Everything added: write the anchor to :attr:`tmp` (and the other outputs)."""
        raise NotImplementedError


def run_round_trips(
    model: Any,
    args: argparse.Namespace,
    paths: Sequence[str],
    anchor: str | None,
    manifest: dict[str, Any],
    writer: type[OutputWriter],
) -> Merged | None:
    """Round-trip every crystal of ``paths`` chunk by chunk; the merged results in the first process, else None.

    Args:
        model: the loaded model (with the command line's settings).
        args: the command line (``skip_invalid``, ``no_match``, ``resume``, ``chunk_size``, ...).
        paths: input files and folders.
        anchor: the output the run's ``.partial`` folder sits beside (the output folder of
            ``reconstruct``, the JSON or CSV of ``evaluate``); None: a temporary folder (no resume).
        manifest: what the run is (a resumed run must be the same).
        writer: its outputs' writer, made as ``writer(tmp)`` when the chunks are merged.
    """
    from tqdm.auto import tqdm

    from nesf.io.stream import ChunkedRun, input_signature

    files, skipped_files, total = input_files(paths, args.skip_invalid)
    if args.strict:
        strict_check(model, files, args)
    keep = {"cif": bool(getattr(args, "out", None)), "views": bool(args.html), "resettle": bool(args.resettle)}
    manifest = {**manifest, "inputs": input_signature(files), "keep": keep}
    scratch = None
    if anchor is None:
        scratch = tempfile.TemporaryDirectory(prefix="nesf-run-")
        anchor = str(Path(scratch.name) / "run.json")
    try:
        run = ChunkedRun(anchor, manifest, resume=args.resume, chunk_size=args.chunk_size)
        done_before = min(total, run.resumed_chunks * run.chunk_size)
        show = not args.quiet and run.rank == 0
        with tqdm(total=total, initial=done_before, desc="reconstruct", unit="crystal", disable=not show) as bar:
            for k, chunk in run.chunks(iter_inputs(files, args.conventional)):
                run.save(k, **round_trip_chunk(model, chunk, args, keep).arrays())
                bar.update(min(len(chunk) * run.world, total - bar.n))
        holder: list[Merged] = []

        def merge(shards: list[Path], tmp: Path) -> None:
            out = writer(tmp)
            holder.append(summarize(merge_shards(shards, skipped_files), out.add))
            out.finish(holder[0])
            if scratch is not None and not tmp.exists():  # no output asked for: only printed
                tmp.write_text("")

        if not run.finish(merge):
            return None
        if run.resumed_chunks:
            print(f"resumed: {run.resumed_chunks} of {run.n_chunks} chunk(s) were done before", file=sys.stderr)
        return holder[0]
    finally:
        if scratch is not None:
            scratch.cleanup()


def read_shard(path: Path) -> dict[str, Any]:
    """One chunk's arrays, strings decoded (records as dicts, groups as tuples)."""
    with np.load(path, allow_pickle=False) as data:
        out: dict[str, Any] = {name: data[name] for name in data.files}
    for name in list(out):
        if name.startswith("records"):
            out[name] = [json.loads(s) for s in _texts(out[name])]
        elif out[name].dtype.kind == "U":
            out[name] = _texts(out[name]) if out[name].ndim == 1 else [tuple(r) for r in out[name].tolist()]
    return out


def merge_shards(shards: Sequence[Path], skipped_files: list[str]) -> Iterator[dict[str, Any]]:
    """Each chunk's content in input order (:func:`read_shard`); the files skipped before the run go first."""
    for k, path in enumerate(shards):
        shard = read_shard(path)
        if k == 0:
            shard["skipped"] = skipped_files + list(shard["skipped"])
        yield shard


def _timed(tally: Any, seconds: float) -> dict:
    """A tally's metrics with the reconstruction time."""
    return {**tally.metrics(), "seconds": seconds, "seconds_per_structure": seconds / tally.n}


def add_search_counts(total: dict[str, float], counts: dict[str, float]) -> None:
    """Add one chunk's checked-code counts to ``total``: sums, the largest cost, and the cost summed over crystals."""
    for key, value in counts.items():
        if key == "cost_max_x100":
            total[key] = max(total.get(key, 0.0), value)
        elif key == "cost_per_crystal_x100":
            total["cost_sum_x100"] = total.get("cost_sum_x100", 0.0) + value * counts.get("crystals", 0)
        else:
            total[key] = total.get(key, 0.0) + value


def search_summary(total: dict[str, float]) -> dict[str, float]:
    """The run's checked-code counts (integers), with its mean and largest work per crystal in one-pass decodes."""
    out: dict[str, float] = {k: int(round(v)) for k, v in total.items() if not k.startswith("cost_")}
    if "cost_sum_x100" in total:
        out["cost_per_crystal_decodes"] = round(total["cost_sum_x100"] / 100 / total["crystals"], 2)
    if "cost_max_x100" in total:
        out["cost_max_decodes"] = round(total["cost_max_x100"] / 100, 2)
    return out


def summarize(shards: Iterator[dict[str, Any]], on_shard: Any = None) -> Merged:
    """Tally the chunks (calling ``on_shard(shard)`` on each, e.g. to write its rows) into :class:`Merged`."""
    from nesf.data.setting import RESETTLE_KINDS
    from nesf.metrics.accumulate import Tally

    tally, copies = Tally(), {kind: Tally() for kind in RESETTLE_KINDS}
    copy_seconds = dict.fromkeys(RESETTLE_KINDS, 0.0)
    first: list[dict] = []
    skipped: list[str] = []
    seconds = restarted = recovered = 0.0
    n_matched = n_outside = 0
    search: dict[str, float] = {}
    for shard in shards:
        tally.add(shard["stats"], shard["records"], shard["groups"])
        for kind, part in copies.items():
            if f"stats_{kind}" in shard:
                part.add(shard[f"stats_{kind}"], shard[f"records_{kind}"])
                copy_seconds[kind] += float(shard[f"seconds_{kind}"])
        first.extend(shard["records"][: max(PRINTED_VERDICTS - len(first), 0)])
        n_matched += sum(1 for r in shard["records"] if r["matched"])
        n_outside += sum(1 for r in shard["records"] if not r["in_domain"])
        skipped.extend(shard["skipped"])
        s, r1, r2 = shard["numbers"].tolist()
        seconds, restarted, recovered = seconds + s, restarted + r1, recovered + r2
        add_search_counts(search, json.loads(shard["search"][0]) if "search" in shard else {})
        if on_shard is not None:
            on_shard(shard)
    if not tally.n:
        raise ValueError("no crystal left to reconstruct: " + "; ".join(skipped[:5]))
    metrics = tally.metrics()
    metrics["codes_restarted"], metrics["codes_recovered"] = int(restarted), int(recovered)
    if search.get("crystals"):
        metrics["search"] = search_summary(search)
    metrics["seconds"] = seconds
    metrics["seconds_per_structure"] = seconds / tally.n
    return Merged(
        metrics=metrics,
        parts=tally.breakdown(),
        resettled={kind: _timed(part, copy_seconds[kind]) for kind, part in copies.items() if part.n},
        first_records=first,
        n=tally.n,
        n_matched=n_matched,
        n_outside=n_outside,
        skipped=skipped,
    )


__all__ = [
    "ChunkResult",
    "Merged",
    "OutputWriter",
    "input_files",
    "iter_inputs",
    "round_trip_chunk",
    "run_round_trips",
    "summarize",
]
