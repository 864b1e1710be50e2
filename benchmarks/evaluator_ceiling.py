"""How well a shipped evaluator recognises real crystals whose property lies in a target window.

Conditional sampling is scored by the independent evaluator: the share of samples it places
within ``target +- tolerance``. This script asks what that share can be at best: of the real
perovskites whose DFT value lies in the window, how many does the evaluator place there, on the
held-out crystals it never saw and on the training crystals it was fitted to. It also counts how
many held-out crystals the evaluator places in the window, and how many of those truly are.

    python benchmarks/evaluator_ceiling.py --property dir_gap --target 1.5 --tolerance 0.3 \\
        --json benchmarks/results/design/evaluator_ceiling_dir_gap.json

The split is the shipped heads' (``nesf split ../shared/data/cdvae/perov_5/val.csv --fraction
0.9 --seed 0``: 3,408 training, 379 held-out crystals).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir  # noqa: E402


def window_stats(predicted: np.ndarray, true: np.ndarray, target: float, tolerance: float) -> dict[str, float]:
    """Counts of one split: crystals truly in the window, placed there, and both."""
    truly = np.abs(true - target) <= tolerance
    placed = np.abs(predicted - target) <= tolerance
    return {
        "n": int(len(true)),
        "truly_in_window": int(truly.sum()),
        "placed_in_window": int(placed.sum()),
        "both": int((truly & placed).sum()),
        "recall_pct": float(100.0 * (truly & placed).sum() / max(truly.sum(), 1)),
        "precision_pct": float(100.0 * (truly & placed).sum() / max(placed.sum(), 1)),
        "nonzero_pct": float(100.0 * (true > 0).mean()),
    }


def main() -> None:
    """Print and optionally write the evaluator's window statistics on both parts of the split."""
    from nesf.data.readers import read_crystals
    from nesf.design.data import seeded_split, targets
    from nesf.design.evaluator import load_evaluator
    from nesf.design.registry import describe_source, heads_folder

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--property", default="dir_gap")
    ap.add_argument("--target", type=float, default=1.5)
    ap.add_argument("--tolerance", type=float, default=0.3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    evaluator = load_evaluator(heads_folder() / f"perov_5-{args.property}.evaluator.pt")
    crystals = read_crystals(data_dir() / "cdvae" / "perov_5" / "val.csv")
    train_mask = seeded_split(len(crystals), 0.9, 0)
    out: dict = {"property": args.property, "target": args.target, "tolerance": args.tolerance}
    out["evaluator"] = {**evaluator.card, "source": describe_source(evaluator.card.get("source"))}
    for name, part in (("heldout", ~train_mask), ("train", train_mask)):
        chosen = [c for c, m in zip(crystals, part) if m]
        out[name] = window_stats(evaluator.predict(chosen), targets(chosen, args.property), args.target, args.tolerance)
        print(name, json.dumps(out[name]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2, default=str))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
