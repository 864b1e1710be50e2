"""Exact-field reconstruction of every shared dataset, in both frames.

For each dataset and frame: read the crystals, reconstruct each from its exact structure field,
and compute the paper's metrics and the StructureMatcher match rate. ``seconds`` is the
reconstruction alone (no start-up, no file reading, no metrics).

    python benchmarks/exact_fields.py [--json OUT.json] [--frames paper periodic] [--no-match]
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import append_result, data_dir, write_json
from nesf.data.readers import read_crystals
from nesf.metrics.report import evaluate_reconstruction
from nesf.reconstruction.exact import default_bbox, reconstruct_exact
from nesf.reconstruction.settings import ReconstructionSettings

DATASETS = (
    "nesf_paper/lim_l6/test.extxyz",
    "nesf_paper/lim_l6/val.extxyz",
    "nesf_paper/lim_l6/train.extxyz",
    "nesf_paper/icsg3d/test.extxyz",
    "nesf_paper/icsg3d/val.extxyz",
    "nesf_paper/icsg3d/train_recovered.extxyz",
    "nesf_paper/ybco13/all.extxyz",
    "cdvae/perov_5/val.csv",
    "cdvae/carbon_24/val.csv",
)


def run_one(path, frame: str, match: bool) -> dict:
    crystals = read_crystals(path)
    if frame == "periodic":
        crystals = [c.wrapped() for c in crystals]
    settings = ReconstructionSettings()
    bbox = default_bbox(crystals, settings) if frame == "paper" else None
    t0 = time.perf_counter()
    pred = reconstruct_exact(crystals, frame, settings, bbox=bbox)
    seconds = time.perf_counter() - t0
    metrics = evaluate_reconstruction(crystals, pred, frame, match=match)
    return {**metrics, "seconds": seconds, "seconds_per_structure": seconds / len(crystals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=None)
    ap.add_argument("--frames", nargs="+", default=["paper", "periodic"], choices=["paper", "periodic"])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--no-match", action="store_true", help="skip StructureMatcher")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = data_dir()
    results = {}
    lines = [
        "",
        "| data | frame | n | count err % | pos act A | pos det A | spec act % | spec det % | match % | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.datasets:
        for frame in args.frames:
            r = run_one(root / name, frame, not args.no_match)
            results[f"{name}:{frame}"] = r
            match = "n/a" if r["match_rate_pct"] != r["match_rate_pct"] else f"{r['match_rate_pct']:.1f}"
            lines.append(
                f"| {name} | {frame} | {r['n_structures']} | {r['atom_count_error_pct']:.2f} | "
                f"{r['position_error_actual']:.1e} | {r['position_error_detected']:.1e} | "
                f"{r['species_error_actual_pct']:.2f} | {r['species_error_detected_pct']:.2f} | {match} | "
                f"{r['seconds']:.2f} |"
            )
            print(lines[-1], flush=True)
    write_json(args.json, results)
    if not args.no_record:
        append_result("Exact-field reconstruction (published settings)", lines)


if __name__ == "__main__":
    main()
