"""Encoding a whole database: crystals per second and peak memory, for one and several processes.

    python benchmarks/encode_large.py [--model mp] [--data mp/train.extxyz] [--limit N ...] [--jobs 1 2]
        [--refine-steps 0] [--restarts 0] [--json OUT] [--no-results]

Each run is ``nesf encode`` in a fresh process (``--jobs N``: N processes under torchrun); its peak
resident memory is the largest of the process and its children (``getrusage``). Running the same
file at two sizes (``--limit 2000`` and all) shows whether memory grows with the input.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import append_result, data_dir  # noqa: E402


def subset(path: Path, limit: int | None, folder: Path) -> tuple[Path, int]:
    """The first ``limit`` frames of an extxyz file (the file itself when None) and their count."""
    lines = path.read_text().splitlines(keepends=True) if limit else None
    if not limit:
        return path, sum(1 for line in open(path) if "Lattice=" in line)
    out, i, n = [], 0, 0
    while i < len(lines) and n < limit:
        count = int(lines[i].split()[0])
        out.extend(lines[i : i + count + 2])
        i += count + 2
        n += 1
    target = folder / f"first{n}.extxyz"
    target.write_text("".join(out))
    return target, n


def run(data: Path, jobs: int, args: argparse.Namespace, folder: Path) -> dict:
    """One ``nesf encode`` in a child process: seconds, crystals per second, peak RSS (MB)."""
    out = folder / f"codes_{data.stem}_{jobs}.npz"
    cmd = [sys.executable, "-m", "nesf", "encode", str(data), "--out", str(out), "--model", args.model]
    cmd += ["--refine-steps", str(args.refine_steps), "--restarts", str(args.restarts), "--quiet", "--threads", "1"]
    cmd += ["--jobs", str(jobs), "--chunk-size", str(args.chunk_size)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"nesf encode failed:\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"jobs": jobs, "seconds": seconds, "peak_rss_mb": max(peak, before) / 1024, "stdout": proc.stdout.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mp")
    ap.add_argument("--data", default=None, help="extxyz file (default: the shared mp/train.extxyz)")
    ap.add_argument("--limit", type=int, nargs="+", default=[0], help="first N crystals; 0: all (several: each)")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--refine-steps", type=int, default=0)
    ap.add_argument("--restarts", type=int, default=0)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    data = Path(args.data) if args.data else data_dir() / "mp" / "train.extxyz"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for limit in args.limit:
            path, n = subset(data, limit or None, Path(tmp))
            for jobs in args.jobs:
                # peak RSS of children is a running maximum: measure each run in its own interpreter
                probe = [sys.executable, __file__, "--_one", str(path), str(jobs)]
                r = json.loads(
                    subprocess.run([*probe, *_pass(args)], capture_output=True, text=True, check=True).stdout
                )
                r.update(crystals=n, crystals_per_second=n / r["seconds"])
                rows.append(r)
                print(
                    f"{n:>6} crystals, {jobs} process(es): {r['seconds']:.0f} s, {r['crystals_per_second']:.1f} "
                    f"crystals/s, peak RSS {r['peak_rss_mb']:.0f} MB"
                )
    shown = os.path.relpath(data, Path(__file__).resolve().parents[1])  # no machine paths in results
    report = {"model": args.model, "data": shown, "refine_steps": args.refine_steps, "runs": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_results:
        table = ["| crystals | processes | seconds | crystals/s | peak RSS (MB) |", "|---|---|---|---|---|"]
        table += [
            f"| {r['crystals']} | {r['jobs']} | {r['seconds']:.0f} | {r['crystals_per_second']:.1f} | "
            f"{r['peak_rss_mb']:.0f} |"
            for r in rows
        ]
        what = "the encoder's own codes" if args.refine_steps == 0 else f"{args.refine_steps} refinement steps"
        append_result(f"Encoding a database with `{args.model}` ({what})", ["", *table])


def _pass(args: argparse.Namespace) -> list[str]:
    return [
        "--model",
        args.model,
        "--refine-steps",
        str(args.refine_steps),
        "--restarts",
        str(args.restarts),
        "--chunk-size",
        str(args.chunk_size),
    ]


def _one() -> None:
    """Internal: ``--_one PATH JOBS [options]``: one run, its figures as JSON on stdout."""
    path, jobs = Path(sys.argv[2]), int(sys.argv[3])
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--refine-steps", type=int)
    ap.add_argument("--restarts", type=int)
    ap.add_argument("--chunk-size", type=int)
    args = ap.parse_args(sys.argv[4:])
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(path, jobs, args, Path(tmp))))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_one":
        _one()
    else:
        main()
