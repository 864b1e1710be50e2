"""Fast codes: match rate against seconds per crystal for ways of getting a crystal's latent code.

    python benchmarks/fast_codes.py --model mp --data val300.extxyz [--limit N] [--threads 1] \
        [--variant NAME:FIELD=VALUE,...] [--json OUT.json]

Each variant (``name:field=value,...``; ``@fast`` stands for the fast preset's changes,
:mod:`nesf.encoding.presets`, as ``nesf ... --fast`` applies them: fields of
:class:`~nesf.encoding.refine.RefineSettings` changed from the model's refinement, or of
:class:`~nesf.reconstruction.settings.ReconstructionSettings` changed from its decoding (tuples
as ``a/b/c``; ``batch_size`` is the refinement's); the default list below when none is given) reconstructs every
crystal of DATA (its first N) as ``nesf evaluate`` does and is scored with StructureMatcher
(CDVAE settings). The table printed at the end is the trade-off curve: match rate, RMSE over
matched crystals, atom-count error and seconds per crystal on this machine (one process, the
given threads; matching not counted). Choose on validation data; keep test splits for figures.
"""

from __future__ import annotations

import argparse
import time

from _common import add_model_data_args, parse_changes, write_json

#: The trade-off curve measured when no --variant is given: from the encoder's own code to the
#: exhaustive checked search.
DEFAULT_VARIANTS = (
    "one-pass:steps=0,restarts=0",
    "refine10:steps=10,lr=0.1,restarts=0",
    "refine30:steps=30,restarts=0",
    "enc-first+r2:check_encoder=1,restarts=2",
    "enc-first+r6:check_encoder=1",
    "fast:@fast",
    "checked:check_encoder=0",
)


def expand_presets(text: str, grid_spacing: float) -> str:
    """A variant with ``@fast`` replaced by the fast preset's changes as ``field=value`` items.

    ``grid_spacing``: the model's own particle grid (A), from which the preset sets its own.
    """
    from nesf.encoding.presets import FAST_REFINEMENT, fast_decoding

    def value(v: object) -> str:
        if isinstance(v, bool):
            return str(int(v))
        return "/".join(map(str, v)) if isinstance(v, tuple) else str(v)

    items = {**FAST_REFINEMENT, **fast_decoding(grid_spacing)}
    return text.replace("@fast", ",".join(f"{k}={value(v)}" for k, v in items.items()))


def main() -> None:
    from nesf.encoding.refine import RefineSettings
    from nesf.reconstruction.settings import ReconstructionSettings

    refine_defaults = RefineSettings().to_dict()
    decode_defaults = ReconstructionSettings().to_dict()
    defaults = {**decode_defaults, **refine_defaults}
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_data_args(ap)
    ap.add_argument("--variant", action="append", default=None, help="name:field=value,... (repeatable)")
    args = ap.parse_args()

    import torch

    from nesf.api import NeSF
    from nesf.data.readers import read_crystals
    from nesf.metrics.report import evaluate_reconstruction

    torch.set_num_threads(args.threads)
    base = NeSF.load(args.model)
    crystals = base.prepare(read_crystals(args.data)[: args.limit])
    out = {"model": args.model, "data": args.data, "n": len(crystals), "threads": args.threads, "variants": []}
    base.reconstruct_crystals(crystals[:2])  # first-call warm-up, not counted
    own_grid = base.settings.grid_spacing
    variants = [parse_changes(expand_presets(v, own_grid), defaults) for v in (args.variant or DEFAULT_VARIANTS)]
    for name, changes in variants:
        model = base.with_refinement(**{k: v for k, v in changes.items() if k in refine_defaults})
        decoding = {k: v for k, v in changes.items() if k not in refine_defaults}
        if decoding:
            model = model.with_settings(**decoding)
        t0 = time.perf_counter()
        back = model.reconstruct_crystals(crystals)
        seconds = time.perf_counter() - t0
        m = evaluate_reconstruction(crystals, back, model.frame, n_jobs=1)
        row = {
            "name": name,
            "changes": changes,
            "match_rate_pct": m["match_rate_pct"],
            "rmse": m["rmse"],
            "atom_count_error_pct": m["atom_count_error_pct"],
            "position_error_actual_matched": m["position_error_actual_matched"],
            "lattice_length_mae": m["lattice_length_mae"],
            "spacegroup_kept_pct": m["spacegroup_kept_pct"],
            "seconds_per_crystal": seconds / len(crystals),
            **model.restart_counts,
        }
        out["variants"].append(row)
        write_json(args.json, out)
        print(f"{name}: match {row['match_rate_pct']:.2f} %, {row['seconds_per_crystal']:.3f} s/crystal", flush=True)
    print(f"\n{args.model} on {args.data} ({len(crystals)} crystals, {args.threads} thread(s))")
    head = f"{'variant':<16} {'match %':>8} {'RMSE':>7} {'count err %':>11} {'pos err A':>9} {'lattice A':>9}"
    print(head + f" {'sg kept %':>9} {'s/crystal':>9}")
    for r in out["variants"]:
        print(
            f"{r['name']:<16} {r['match_rate_pct']:>8.2f} {r['rmse']:>7.4f} {r['atom_count_error_pct']:>11.2f} "
            f"{r['position_error_actual_matched']:>9.4f} {r['lattice_length_mae']:>9.4f} "
            f"{r['spacegroup_kept_pct']:>9.1f} {r['seconds_per_crystal']:>9.3f}"
        )


if __name__ == "__main__":
    main()
