"""Reconstruction settings for a learned field: match rate and atom-count error against each setting.

    python benchmarks/recon_sweep.py --model mp --data VAL.extxyz [--limit N] \
        [--vary min_particles=5,3 max_residual=0.6,1.2 nms_radius=0.4,0.6 ...] \
        [--refine-steps N] [--threads 1] [--json OUT.json] [--no-results]

Every crystal of DATA (or its first N) is encoded once (codes refined as the model's defaults
say, or with N refinement steps and no check: 0 gives the encoder's own codes); the codes are
then decoded with the model's reconstruction settings and with each variant
of ``--vary`` (one setting changed at a time), and each set of reconstructions is scored with the
paper's metrics and the StructureMatcher match rate. Choose defaults on validation data; keep test
splits for the figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import REPO, add_sweep_args, append_result, write_json

DEFAULT_VARY = [
    "min_particles=5,3",
    "max_residual=0.6,1.2",
    "nms_radius=0.4,0.6",
    "grid_spacing=0.4",
    "n_steps=128",
]


def parse_vary(items: list[str]) -> list[tuple[str, object]]:
    """``["name=v1,v2", ...]`` -> ``[(name, v1), (name, v2), ...]`` with ints kept as ints."""
    out: list[tuple[str, object]] = []
    for item in items:
        name, _, values = item.partition("=")
        if not values:
            raise SystemExit(f"--vary {item!r}: expected NAME=V1,V2")
        for v in values.split(","):
            out.append((name, int(v) if v.lstrip("-").isdigit() else float(v)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_args(ap)
    ap.add_argument("--vary", nargs="+", default=DEFAULT_VARY, help="NAME=V1,V2 (a ReconstructionSettings field)")
    ap.add_argument("--refine-steps", type=int, default=None, help="refinement steps, no check (0: encoder's codes)")
    args = ap.parse_args()

    import torch

    from nesf.api import NeSF
    from nesf.data.readers import read_crystals
    from nesf.metrics.report import evaluate_reconstruction

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = NeSF.load(args.model)
    if args.refine_steps is not None:
        base = base.with_refinement(steps=args.refine_steps, restarts=0)
    crystals = base.prepare(read_crystals(args.data)[: args.limit])
    inner, transforms = base.to_model_setting(crystals)
    t0 = time.perf_counter()
    z = base._encode_in_setting(inner)[0]
    base.decode_crystals(z[:2])  # first-call warm-up, not counted
    print(f"encoded {len(crystals)} crystals in {time.perf_counter() - t0:.0f} s")
    rows = []
    for name, value in [("(model default)", None), *parse_vary(args.vary)]:
        model = base if value is None else base.with_settings(**{name: value})
        t0 = time.perf_counter()
        queries: list[int] = []
        decoded = model.decode_crystals(
            z, ids=[c.id for c in crystals], exact_cells=model.fits_cells, field_queries=queries
        )
        seconds = time.perf_counter() - t0
        back = [d if t is None else t.to_input(d) for t, d in zip(transforms, decoded)]
        m = evaluate_reconstruction(crystals, back, model.frame, n_jobs=1)
        label = name if value is None else f"{name}={value}"
        work = sum(queries) / max(len(crystals), 1)
        rows.append(
            {"setting": label, "decode_seconds_per_crystal": seconds / len(crystals), "field_queries": work, **m}
        )
        print(
            f"{label}: match {m['match_rate_pct']:.2f} %, count error {m['atom_count_error_pct']:.2f} %, "
            f"{seconds / len(crystals):.3f} s/crystal, {work:.0f} field queries per crystal",
            flush=True,
        )
    data_name = "/".join(Path(args.data).parts[-2:])
    write_json(
        args.json,
        {"model": args.model, "data": data_name, "n": len(crystals), "base": base.settings.to_dict(), "rows": rows},
    )
    if args.no_results:
        return
    lines = [
        "",
        "| setting | count err % | pos act / det A | spec act / det % | match % | RMSE | decode s/crystal | queries |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['atom_count_error_pct']:.2f} | {r['position_error_actual']:.4f} / "
            f"{r['position_error_detected']:.4f} | {r['species_error_actual_pct']:.2f} / "
            f"{r['species_error_detected_pct']:.2f} | {r['match_rate_pct']:.2f} | {r['rmse']:.4f} | "
            f"{r['decode_seconds_per_crystal']:.3f} | {r['field_queries']:.0f} |"
        )
    append_result(f"Reconstruction settings, {args.model} on {data_name} ({len(crystals)} crystals)", lines)
    print(f"appended to {(REPO / 'benchmarks' / 'RESULTS.md').relative_to(REPO)}")


if __name__ == "__main__":
    main()
