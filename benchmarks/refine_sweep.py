"""Latent refinement: reconstruction quality and time against the number of refinement steps.

    python benchmarks/refine_sweep.py --model lim_l6 --data lim_l6/val.extxyz --steps 0 15 30 60 \
        [--lr 0.03] [--restarts 0 4] [--limit N] [--threads 1] [--json OUT.json] [--no-results]

Every crystal of DATA (or its first N) is encoded, its code refined for each number of steps on
its own exact field (``NeSF.with_refinement``; 0 is the encoder's code), checked by decoding with
up to each number of restarts (``RefineSettings.restarts``; 0: no check) and decoded; the paper's
metrics and the StructureMatcher match rate of each are written to the JSON and, as a table, to
benchmarks/RESULTS.md. Choose the default on validation data; keep test splits for the figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import REPO, add_sweep_args, append_result, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_args(ap)
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 15, 30, 60])
    ap.add_argument("--lr", type=float, nargs="+", default=[0.03], help="peak step sizes to try (each with each)")
    ap.add_argument("--restarts", type=int, nargs="+", default=[0], help="checked restarts to try (each with each)")
    args = ap.parse_args()

    import torch

    from nesf.api import NeSF
    from nesf.data.readers import read_crystals
    from nesf.metrics.report import evaluate_reconstruction

    torch.set_num_threads(args.threads)
    base = NeSF.load(args.model)
    crystals = base.prepare(read_crystals(args.data)[: args.limit])
    rows = []
    for lr in args.lr:
        for steps in args.steps:
            for restarts in args.restarts:
                if steps == 0 and (lr != args.lr[0] or restarts != args.restarts[0]):
                    continue  # the encoder's code depends neither on the step size nor on restarts
                model = base.with_refinement(steps=steps, lr=lr, restarts=restarts)
                t0 = time.perf_counter()
                back = model.reconstruct_crystals(crystals)
                seconds = time.perf_counter() - t0
                m = evaluate_reconstruction(crystals, back, model.frame, n_jobs=1)
                row = {"steps": steps, "lr": lr, "restarts": restarts if steps else 0, **model.restart_counts}
                rows.append({**row, "seconds_per_crystal": seconds / len(crystals), **m})
                print(
                    f"steps {steps} lr {lr} restarts {row['restarts']}: match {m['match_rate_pct']:.2f} %, "
                    f"{seconds / len(crystals):.3f} s/crystal"
                )
    data_name = "/".join(Path(args.data).parts[-2:])
    write_json(args.json, {"model": args.model, "data": data_name, "n": len(crystals), "rows": rows})
    if args.no_results:
        return
    lines = [
        "",
        "| steps | peak step | restarts | count err % | pos act / det A | spec act / det % | lattice len MAE A | "
        "match % | RMSE | s/crystal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['steps']} | {r['lr']:g} | {r['restarts']} | {r['atom_count_error_pct']:.2f} | "
            f"{r['position_error_actual']:.4f} / "
            f"{r['position_error_detected']:.4f} | {r['species_error_actual_pct']:.2f} / "
            f"{r['species_error_detected_pct']:.2f} | {r['lattice_length_mae']:.4f} | {r['match_rate_pct']:.2f} | "
            f"{r['rmse']:.4f} | {r['seconds_per_crystal']:.3f} |"
        )
    append_result(f"Latent refinement steps, {args.model} on {data_name} ({len(crystals)} crystals)", lines)
    print(f"appended to {(REPO / 'benchmarks' / 'RESULTS.md').relative_to(REPO)}")


if __name__ == "__main__":
    main()
