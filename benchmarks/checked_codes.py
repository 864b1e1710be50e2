"""Checked codes under several refinement variants: how many crystals come back with their input's composition.

    python benchmarks/checked_codes.py --model mp --data valbig.extxyz \
        --variant default --variant old:missed_atom_weight=1,restart_from=encoder [--limit N] [--threads 1] \
        [--json OUT.json]

Each variant (``name:field=value,...``: fields of :class:`~nesf.encoding.refine.RefineSettings`
changed from the model's refinement) encodes every crystal of DATA (its first N) as
``NeSF.reconstruct`` does, checked codes and restarts included, and counts the crystals whose
decoded crystal has the input's composition, and those with the input's atom count. Unlike
``restart_schemes.py``, which runs independent restarts from the encoder's code, this follows the
chain of the check (each restart knows what the earlier decodes missed), so it measures the
default as users get it. Choose on validation data; keep test splits for the figures. Nothing
is appended to RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

from _common import add_model_data_args, parse_changes, write_json


def main() -> None:
    from nesf.encoding.refine import RefineSettings

    defaults = RefineSettings().to_dict()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_data_args(ap)
    ap.add_argument(
        "--variant", action="append", default=None, help="name:field=value,... (repeatable; default: the default)"
    )
    args = ap.parse_args()

    import torch

    from nesf.api import NeSF
    from nesf.data.readers import read_crystals
    from nesf.encoding.checked import composition as composition_of

    torch.set_num_threads(args.threads)
    base = NeSF.load(args.model)
    inner, _ = base.to_model_setting(base.prepare(read_crystals(args.data)[: args.limit]))
    out = {"model": args.model, "data": args.data, "n": len(inner), "variants": []}
    for name, changes in [parse_changes(v, defaults) for v in (args.variant or ["default"])]:
        model = base.with_refinement(**changes)
        t0 = time.perf_counter()
        codes, decoded = model._encode_in_setting(inner)
        if decoded is None:  # no check: decode the codes as they are
            decoded = model.decode_crystals(codes)
        composition = [composition_of(d) == composition_of(c) for d, c in zip(decoded, inner)]
        count = [d.n_atoms == c.n_atoms for d, c in zip(decoded, inner)]
        row = {
            "name": name,
            "changes": changes,
            "composition_right": sum(composition),
            "count_right": sum(count),
            "wrong_count_ids": [c.id for c, ok in zip(inner, count) if not ok],
            **model.restart_counts,
            "seconds": time.perf_counter() - t0,
        }
        out["variants"].append(row)
        print(
            f"{name}: composition right {row['composition_right']}, atom count right {row['count_right']} "
            f"of {len(inner)} ({row['seconds']:.0f} s)",
            flush=True,
        )
    write_json(args.json, out)


if __name__ == "__main__":
    main()
