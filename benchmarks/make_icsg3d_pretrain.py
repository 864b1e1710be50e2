"""The pre-training set of the shipped icsg3d model, free of icsg3d val and test crystals.

    python benchmarks/make_icsg3d_pretrain.py OUT.extxyz

lim_l6 train + val + test and icsg3d train_recovered, each material once, without any crystal
whose id is in icsg3d val or test (the shared lim_l6 and train_recovered files hold 116 of the
360 icsg3d test crystals).
"""

from __future__ import annotations

import sys

from _common import data_dir
from nesf.data.readers import read_crystals
from nesf.io.writers import write_extxyz


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = data_dir() / "nesf_paper"
    held = {c.id for name in ("icsg3d/test", "icsg3d/val") for c in read_crystals(root / f"{name}.extxyz")}
    sources = ("icsg3d/train_recovered", "lim_l6/train", "lim_l6/val", "lim_l6/test")
    seen: set[str] = set()
    out = []
    for name in sources:
        for c in read_crystals(root / f"{name}.extxyz"):
            if c.id not in held and c.id not in seen:
                seen.add(c.id)
                out.append(c)
    write_extxyz(sys.argv[1], out)
    print(f"wrote {len(out)} crystals to {sys.argv[1]} ({len(held)} icsg3d val/test ids kept out)")


if __name__ == "__main__":
    main()
