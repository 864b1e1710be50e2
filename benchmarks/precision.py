"""Crystallographic precision of decoded crystals under variants of the post-processing (no retraining).

    python benchmarks/precision.py --model mp --data mp/val.extxyz --limit 250 \
        --codes runs/precision/mp_val250.pt \
        [--variant clustered:polish_steps=0 --variant sym:symmetrize=1,symmetry_tolerances=0.01/0.1/0.2 ...] \
        [--threads 1] [--json OUT.json] [--no-results]

The checked codes of the first N crystals of DATA (the model's default refinement and restarts,
in the model's setting) are computed once and kept in CODES (computed when the file is
missing). Each variant (``name:field=value,...``: fields of
:class:`~nesf.reconstruction.settings.ReconstructionSettings` changed from the model's; tuples
as ``a/b/c``, booleans as 0/1) decodes them (variants that differ only in symmetrisation share
one decode) and is scored against the inputs: StructureMatcher match rate, RMSE over matched
crystals and over all (unmatched counted at stol), the paper's position errors over all and
over matched crystals, and the share of matched crystals that keep the input's space group and
crystal system (spglib, 0.1 A). Choose on validation data; keep test splits for the figures.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from _common import REPO, add_sweep_args, append_result, parse_changes, write_json

#: What is compared unless --variant says otherwise.
DEFAULT_VARIANTS = (
    "clustered:polish_steps=0",
    "polish_near:polish_radii=0.2/0.4/0.6",
    "default",
    "symmetrize:symmetrize=1",
    "symmetrize_0.4:symmetrize=1,symmetry_tolerances=0.01/0.02/0.05/0.1/0.15/0.2/0.3/0.4,symmetry_mean_move=0",
    "clustered+symmetrize:polish_steps=0,symmetrize=1",
)

#: Settings that act after decoding (variants differing only in these share a decode).
AFTER_DECODE = ("symmetrize", "symmetry_tolerances", "symmetry_rule", "symmetry_mean_move", "symmetry_max_strain")

#: Columns of the table: (key, header, format).
COLUMNS = (
    ("match_rate_pct", "match %", "{:.1f}"),
    ("rmse_matched", "RMSE matched", "{:.4f}"),
    ("rmse_all", "RMSE all", "{:.4f}"),
    ("position_error_actual", "pos act all A", "{:.4f}"),
    ("position_error_actual_matched", "pos act matched A", "{:.4f}"),
    ("position_error_detected_matched", "pos det matched A", "{:.4f}"),
    ("lattice_length_mae", "lattice len MAE A", "{:.4f}"),
    ("atom_count_error_pct", "count err %", "{:.1f}"),
    ("spacegroup_kept_pct", "space group kept %", "{:.1f}"),
    ("crystal_system_kept_pct", "crystal system kept %", "{:.1f}"),
    ("symmetrized_pct", "snapped %", "{:.1f}"),
    ("seconds_per_crystal", "s/crystal", "{:.3f}"),
)


def load_codes(model, crystals: list, path: Path):  # noqa: ANN001, ANN201 - NeSF, torch.Tensor
    """The checked codes of ``crystals`` (model's setting), from ``path`` or computed and saved there."""
    import torch

    ids = [c.id for c in crystals]
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if list(saved["ids"][: len(ids)]) != ids:
            raise SystemExit(f"{path}: codes of other crystals; delete it or name another --codes file")
        return saved["codes"][: len(ids)]
    t0 = time.perf_counter()
    codes, _ = model._encode_in_setting(crystals)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"codes": codes, "ids": ids}, path)
    print(f"encoded {len(ids)} crystals in {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
    return codes


def score(inner: list, pred: list, frame: str) -> dict:
    """The figures of one variant (see the module docstring)."""
    from nesf.metrics.matcher import match_rmse
    from nesf.metrics.paper import paper_metrics
    from nesf.metrics.report import matched_metrics

    rmse = match_rmse(inner, pred, n_jobs=1)
    out = {**paper_metrics(inner, pred, frame), **matched_metrics(inner, pred, rmse, frame)}
    out["symmetrized_pct"] = 100.0 * sum("symmetrized" in p.info for p in pred) / len(pred)
    return out


def main() -> None:
    from nesf.reconstruction.settings import ReconstructionSettings

    defaults = ReconstructionSettings().to_dict()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sweep_args(ap)
    ap.add_argument("--codes", required=True, help="checked codes of the crystals (.pt; computed when missing)")
    ap.add_argument("--variant", action="append", default=None, help="name:field=value,... (repeatable)")
    args = ap.parse_args()

    import torch

    from nesf.api import NeSF
    from nesf.data.readers import read_crystals
    from nesf.reconstruction.symmetry import finish_decoded

    torch.set_num_threads(args.threads)
    base = NeSF.load(args.model)
    inner, _ = base.to_model_setting(base.prepare(read_crystals(args.data)[: args.limit]))
    codes = load_codes(base, inner, Path(args.codes))
    ids = [c.id for c in inner]
    decoded: dict[str, tuple[list, float]] = {}
    rows = []
    for name, changes in [parse_changes(v, defaults) for v in (args.variant or DEFAULT_VARIANTS)]:
        settings = replace(base.settings, **changes)
        decode_settings = replace(settings, **{k: defaults[k] for k in AFTER_DECODE})  # symmetrize off
        key = repr(decode_settings)
        if key not in decoded:
            t0 = time.perf_counter()
            decoded[key] = (base.with_settings(**decode_settings.to_dict()).decode_crystals(codes, ids=ids), 0.0)
            decoded[key] = (decoded[key][0], time.perf_counter() - t0)
        crystals, seconds = decoded[key]
        t0 = time.perf_counter()
        pred = finish_decoded(crystals, settings, periodic=base.frame == "periodic")
        seconds += time.perf_counter() - t0
        row = {"name": name, "changes": changes, **score(inner, pred, base.frame)}
        row["seconds_per_crystal"] = seconds / len(inner)
        rows.append(row)
        print(" ".join(f"{h}={fmt.format(row[k])}" for k, h, fmt in COLUMNS) + f"  [{name}]", flush=True)
    data_name = "/".join(Path(args.data).parts[-2:])
    json_path = args.json or str(
        REPO / "benchmarks" / "results" / "precision" / f"{args.model}_{Path(args.data).stem}{len(inner)}.json"
    )
    write_json(json_path, {"model": args.model, "data": data_name, "n": len(inner), "rows": rows})
    lines = [
        "",
        "| variant | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | " + " | ".join(fmt.format(r[k]) for k, _, fmt in COLUMNS) + " |")
    lines.append("")
    lines += [f"- {r['name']}: {r['changes'] or 'the model settings'}" for r in rows]
    print("\n".join(lines))
    if not args.no_results:
        append_result(f"Decoding precision, {args.model} on {data_name} ({len(inner)} crystals)", lines)
        print(f"appended to {(REPO / 'benchmarks' / 'RESULTS.md').relative_to(REPO)}")


if __name__ == "__main__":
    main()
