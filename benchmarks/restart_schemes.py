"""Restarts of checked codes: how many crystals some restart brings back, for several restart schemes.

    python benchmarks/restart_schemes.py --model mp --data valbig.extxyz --restarts 6 \
        --scheme default --scheme posw1:position_weight=1 [--limit N] [--threads 1] [--json OUT.json]

Each crystal of DATA (its first N) is encoded and refined once as the model's refinement says
(the first code); then, for each scheme, ``--restarts`` codes are refined from the encoder's code
with the settings of restart 1, 2, ... (``RefineSettings.restart``) changed as the scheme says
(``name:field=value,...``: fields of :class:`~nesf.encoding.refine.RefineSettings` set on each
restart's settings; ``position_weight=1`` gives the restarts before their position weight was
raised), and every code is decoded. A code passes when its crystal has its input's composition (the check of
checked codes). Printed and written: for each scheme, how many crystals pass with the first code
or one of the first k restarts, k = 1 .. ``--restarts``, and how many pass with each restart
alone. Every restart is run for every crystal, so the curves compare schemes on the same crystals;
choose on validation data, keep test splits for the figures. Nothing is appended to RESULTS.md.
These restarts are independent and start from the encoder's code, so they carry no weights on
atoms an earlier decode missed (``missed_atom_weight``); ``checked_codes.py`` follows the check's
chain as users get it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from _common import add_model_data_args, parse_changes, write_json


def main() -> None:
    from nesf.encoding.refine import RefineSettings

    defaults = RefineSettings().to_dict()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_data_args(ap)
    ap.add_argument("--restarts", type=int, default=6, help="restarts per scheme")
    ap.add_argument(
        "--scheme",
        action="append",
        default=None,
        help="name:field=value,... (repeatable; default: the default restarts)",
    )
    args = ap.parse_args()

    import torch

    from nesf.api import NeSF
    from nesf.data.batch import CrystalBatch
    from nesf.data.readers import read_crystals
    from nesf.encoding.checked import composition as composition_of
    from nesf.encoding.refine import refine_latents

    torch.set_num_threads(args.threads)
    schemes = [parse_changes(s, defaults) for s in (args.scheme or ["default"])]
    model = NeSF.load(args.model)
    inner, _ = model.to_model_setting(model.prepare(read_crystals(args.data)[: args.limit]))
    want = [composition_of(c) for c in inner]
    r = model.refinement
    t0 = time.perf_counter()

    def passes(z: torch.Tensor) -> list[bool]:
        return [composition_of(d) == w for d, w in zip(model.decode_crystals(z), want)]

    batch = CrystalBatch.from_crystals(inner, model.vocab).to(model.device)
    with torch.no_grad():
        z0, _, _ = model.model.encode(batch.cart, batch.frac, batch.species, batch.mask, batch.lattice_params)
    first = passes(refine_latents(model.model, batch, z0, model.train_cfg, r, model.bbox))
    print(f"first code: {sum(first)} of {len(inner)} pass", flush=True)
    out = {"model": args.model, "data": args.data, "n": len(inner), "first": sum(first), "schemes": []}
    for name, changes in schemes:
        ok = list(first)
        cumulative, alone = [], []
        for k in range(1, args.restarts + 1):
            settings = replace(r.restart(k), **changes)
            z = refine_latents(model.model, batch, z0, model.train_cfg, settings, model.bbox)
            this = passes(z)
            ok = [a or b for a, b in zip(ok, this)]
            cumulative.append(sum(ok))
            alone.append(sum(this))
            print(
                f"{name} restart {k}: {alone[-1]} pass alone, {cumulative[-1]} with the first code or an earlier "
                f"restart ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        out["schemes"].append({"name": name, "changes": changes, "cumulative": cumulative, "alone": alone})
    out["seconds"] = time.perf_counter() - t0
    write_json(args.json, out)


if __name__ == "__main__":
    main()
