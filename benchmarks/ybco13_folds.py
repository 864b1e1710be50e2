"""YBCO13, the paper's 20-fold protocol: train on each fold's train split, select on its val split,
test on its 5 test crystals; report every metric's mean and standard deviation over the folds.

    python benchmarks/ybco13_folds.py [--init MODEL] [--epochs 40] [--folds 0 1 ...] [--json OUT]

``--init`` starts every fold from a trained model (a shipped name or a checkpoint), which is how
a 90-crystal training set gets a useful model on a CPU; without it each fold trains from scratch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import append_result, data_dir, write_json
from nesf.api import NeSF
from nesf.data.readers import read_crystals
from nesf.metrics.report import evaluate_reconstruction
from nesf.models.config import get_preset
from nesf.registry import resolve_model_path
from nesf.training.loop import Trainer

KEYS = (
    "atom_count_error_pct",
    "position_error_actual",
    "position_error_detected",
    "species_error_actual_pct",
    "species_error_detected_pct",
    "lattice_length_mae",
    "lattice_angle_mae_deg",
    "match_rate_pct",
    "rmse",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", default=None, help="shipped model name or checkpoint to start each fold from")
    ap.add_argument("--epochs", type=int, default=40, help="epochs per fold (cosine schedule)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--folds", type=int, nargs="+", default=None, help="fold numbers (default: all 20)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = data_dir() / "nesf_paper" / "ybco13"
    crystals = {c.id: c for c in read_crystals(root / "all.extxyz")}
    folds = json.loads((root / "folds.json").read_text())
    names = sorted(folds, key=int) if args.folds is None else [str(k) for k in args.folds]
    init = str(resolve_model_path(args.init)) if args.init else None
    model_cfg, train_cfg = get_preset("default")
    train_cfg = type(train_cfg)(**{**train_cfg.__dict__, "batch_size": args.batch_size, "lr": args.lr})
    per_fold = {}
    t_start = time.perf_counter()
    for name in names:
        split = {k: [crystals[i] for i in folds[name][k]] for k in ("train", "val", "test")}
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(
                split["train"],
                split["val"],
                tmp,
                model_cfg,
                train_cfg,
                seed=args.seed,
                progress=False,
                init=init,
                vocab="all" if init else "data",
            )
            trainer.run(epochs=args.epochs)
            model = NeSF.load(Path(tmp) / "last.pt")
        test = model.prepare(split["test"])
        t0 = time.perf_counter()
        pred = model.reconstruct_crystals(test)
        seconds = time.perf_counter() - t0
        metrics = evaluate_reconstruction(test, pred, model.frame, n_jobs=1)
        metrics["seconds_per_structure"] = seconds / len(test)
        per_fold[name] = metrics
        print(f"fold {name}: " + ", ".join(f"{k} {metrics[k]:.4g}" for k in KEYS), flush=True)
    summary = {}
    for key in KEYS:
        values = np.array([m[key] for m in per_fold.values()], dtype=float)
        values = values[np.isfinite(values)]
        summary[key] = {
            "mean": float(values.mean()) if len(values) else None,
            "std": float(values.std()) if len(values) else None,
        }
    result = {
        "folds": names,
        "init": args.init,
        "epochs": args.epochs,
        "summary": summary,
        "per_fold": per_fold,
        "seconds": time.perf_counter() - t_start,
    }
    write_json(args.json, result)
    if not args.no_record:
        lines = [
            f"- {len(names)} folds, {args.epochs} epochs each, "
            f"{'starting from ' + args.init if args.init else 'from scratch'}; "
            f"{result['seconds'] / 60:.1f} min in all",
            "",
            "| metric | mean | std |",
            "|---|---|---|",
        ]
        for key in KEYS:
            s = summary[key]
            if s["mean"] is not None:
                lines.append(f"| {key} | {s['mean']:.4f} | {s['std']:.4f} |")
        append_result("YBCO13, 20-fold protocol (test crystals of each fold)", lines)


if __name__ == "__main__":
    main()
