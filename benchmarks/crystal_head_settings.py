"""Settings of a crystal head compared on validation crystals (never the held-out ones).

A crystal head of perov_5 ``heat_ref`` is fitted on 90 % of the shipped heads' training part
(``nesf split --fraction 0.9 --seed 0`` of CDVAE's perov_5 val.csv, then ``seeded_split(..., 0.9,
seed=1)`` of its training part) and scored on the other 10 %; prints one line per run.

    python benchmarks/crystal_head_settings.py shipped '{}'
    python benchmarks/crystal_head_settings.py huber '{"loss": "huber"}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir  # noqa: E402


def main() -> None:
    """Fit one crystal head with the settings given (``CrystalHeadConfig`` fields as JSON); print its validation MAE."""
    from nesf.data.readers import read_crystals
    from nesf.design.crystal_head import CrystalHeadConfig, fit_crystal_head
    from nesf.design.data import seeded_split, targets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="a name for the run")
    ap.add_argument("settings", help="CrystalHeadConfig fields as JSON, e.g. '{\"epochs\": 600}'")
    ap.add_argument("--target", default="heat_ref")
    args = ap.parse_args()
    torch.set_num_threads(1)
    crystals = read_crystals(data_dir() / "cdvae" / "perov_5" / "val.csv")
    train = [c for c, m in zip(crystals, seeded_split(len(crystals), 0.9, 0)) if m]
    inner = seeded_split(len(train), 0.9, 1)
    fit = [c for c, m in zip(train, inner) if m]
    val = [c for c, m in zip(train, inner) if not m]
    cfg = CrystalHeadConfig(max_sites=max(c.n_atoms for c in fit), **json.loads(args.settings))
    t0 = time.monotonic()
    _, record = fit_crystal_head(fit, targets(fit, args.target), cfg, seed=0, val=(val, targets(val, args.target)))
    print(args.name, args.settings, len(fit), len(val), json.dumps(record.val), f"{time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
