"""Exact cells and pinned origins: round trips under variants of the refinement and the decoding.

    python benchmarks/cell_and_origin.py --model mp --data runs/val200r.extxyz \
        --variant "before:lattice_fit=0,pin_origin=0" --variant "pin:lattice_fit=0" \
        --variant "fit:pin_origin=0" --variant "default:" [--limit N] [--threads 1] [--json OUT] [--no-results]

``--data demo`` round-trips the dozen textbook crystals of ``nesf demo``. Each variant
(``name:field=value,...``) changes fields of the model's refinement
(:class:`~nesf.encoding.refine.RefineSettings`, e.g. ``lattice_fit``) and of its decoding
(:class:`~nesf.reconstruction.settings.ReconstructionSettings`, e.g. ``pin_origin``), re-encodes
(checked codes, the default test-time search) and decodes every crystal, and is scored against
the inputs: StructureMatcher match rate and RMSE, the paper's position errors over matched and
all crystals, the lattice-length error, space groups kept, and the largest distance of any
input atom to its nearest decoded atom (the median over crystals and the largest). Choose on
validation data; keep test splits for the figures.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import fields

from _common import add_sweep_args, append_result, parse_changes, write_json

#: Columns of the table: (key, header, format).
COLUMNS = (
    ("match_rate_pct", "match %", "{:.1f}"),
    ("atom_count_error_pct", "count err %", "{:.1f}"),
    ("rmse_matched", "RMSE matched", "{:.4f}"),
    ("position_error_actual_matched", "pos act matched A", "{:.4f}"),
    ("position_error_actual", "pos act all A", "{:.4f}"),
    ("lattice_length_mae", "lattice len MAE A", "{:.4f}"),
    ("spacegroup_kept_pct", "space group kept %", "{:.1f}"),
    ("max_move_median", "largest move, median A", "{:.4f}"),
    ("max_move_max", "largest move, max A", "{:.3f}"),
    ("seconds_per_crystal", "s/crystal", "{:.2f}"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_args(ap)
    ap.add_argument("--variant", action="append", required=True, help="name:field=value,... (repeatable)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from nesf.api import NeSF
    from nesf.data.examples import demo_crystals
    from nesf.data.readers import read_crystals
    from nesf.metrics.paper import pairwise_distances
    from nesf.metrics.report import evaluate_reconstruction

    torch.set_num_threads(args.threads)
    base = NeSF.load(args.model)
    source = demo_crystals() if args.data == "demo" else read_crystals(args.data)
    crystals = base.prepare(source)[: args.limit]
    refine_fields = {f.name for f in fields(base.refinement)}
    defaults = {**base.settings.to_dict(), **base.refinement.to_dict()}
    rows = []
    for text in args.variant:
        name, changes = parse_changes(text, defaults)
        model = base
        refine = {k: v for k, v in changes.items() if k in refine_fields}
        decode = {k: v for k, v in changes.items() if k not in refine_fields}
        model = model.with_refinement(**refine) if refine else model
        model = model.with_settings(**decode) if decode else model
        start = time.perf_counter()
        pred = model.reconstruct_crystals(crystals)
        seconds = time.perf_counter() - start
        metrics = evaluate_reconstruction(crystals, pred, model.frame, match=True, n_jobs=1)
        moves = [float(d.min(axis=1).max()) for d in pairwise_distances(crystals, pred, model.frame) if d.size]
        row = {
            "variant": name,
            "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()},
            **{key: metrics.get(key) for key, _, _ in COLUMNS if key in metrics},
            "max_move_median": float(np.median(moves)) if moves else float("nan"),
            "max_move_max": float(np.max(moves)) if moves else float("nan"),
            "max_moves": [None if not p.n_atoms else m for p, m in zip(pred, moves)] if args.data == "demo" else None,
            "seconds_per_crystal": seconds / len(crystals),
        }
        rows.append(row)
        print(name, {k: row[k] for k, _, _ in COLUMNS}, flush=True)
    write_json(args.json, {"model": args.model, "data": args.data, "n": len(crystals), "rows": rows})
    if not args.no_results:
        head = "| variant | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
        lines = [
            f"- {len(crystals)} crystals of `{args.data}`, model `{args.model}`; checked codes (test-time search)",
            "",
            head,
            "|" + "---|" * (len(COLUMNS) + 1),
        ]
        for row in rows:
            cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in COLUMNS]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
        append_result(f"Exact cells and pinned origins, `{args.model}` on `{args.data}`", lines)


if __name__ == "__main__":
    main()
