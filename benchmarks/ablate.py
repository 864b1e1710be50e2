"""Equal-budget ablations: train a named variant for M CPU-minutes, evaluate it on validation data.

    python benchmarks/ablate.py VARIANT --data lim_l6 --minutes 20 [--threads 1] [--seed 0]
        [--init MODEL] [--val-limit N] [--json OUT.json] [--keep DIR]

Trains VARIANT (see ``VARIANTS``) on the training part of DATA for ``--minutes`` of wall time
with ``--threads`` torch threads (two variants may run side by side, one thread each), then
evaluates the last checkpoint on the validation part (never a test split), as given and on
re-set copies (random origin; permuted axes), and appends one row to the ablation table in
``benchmarks/RESULTS.md``: all metrics, match rate / RMSE, the re-set figures, seconds per
step, parameters and latent size, with the command that made it.

Data (``../shared/data`` or ``NESF_DATA_DIR``): ``lim_l6`` (train / val), ``icsg3d``
(train_recovered without val and test ids / val), ``perov_5`` and ``carbon_24`` (the seeded
90 % / 10 % split of CDVAE's val.csv that ``nesf split --seed 0`` makes: train / held-out),
``mp`` (train / val).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from _common import RESULTS, command, data_dir, machine, write_json
from nesf.api import NeSF
from nesf.data.readers import read_crystals
from nesf.data.setting import resettle
from nesf.metrics.report import evaluate_reconstruction
from nesf.models.config import get_preset
from nesf.training.loop import Trainer
from variants import VARIANTS

TABLE_HEADER = (
    "| variant | data | min | steps | s/step | params | latent | count err % | pos act / det A | "
    "spec act / det % | match % | RMSE | re-set origin: count % / match % | re-set axes: count % / match % | date |"
)

ABLATION_HEADING = "## Ablations at an equal CPU budget (validation data)"


def splits(name: str, cache: Path) -> tuple[list, list]:
    """Training and validation crystals of a data set."""
    root = data_dir()
    if name == "lim_l6":
        d = root / "nesf_paper" / "lim_l6"
        return read_crystals(d / "train.extxyz"), read_crystals(d / "val.extxyz")
    if name == "icsg3d":
        d = root / "nesf_paper" / "icsg3d"
        val, test = read_crystals(d / "val.extxyz"), read_crystals(d / "test.extxyz")
        drop = {c.id for c in val + test}
        return [c for c in read_crystals(d / "train_recovered.extxyz") if c.id not in drop], val
    if name in ("perov_5", "carbon_24"):
        crystals = read_crystals(root / "cdvae" / name / "val.csv")
        order = np.random.default_rng(0).permutation(len(crystals))  # as `nesf split --seed 0`
        n_first = min(len(crystals) - 1, max(1, round(0.9 * len(crystals))))
        return [crystals[i] for i in order[:n_first]], [crystals[i] for i in order[n_first:]]
    if name == "mp":
        d = root / "mp"
        return read_crystals(d / "train.extxyz"), read_crystals(d / "val.extxyz")
    raise SystemExit(f"unknown data set {name!r}")


def evaluate(model: NeSF, crystals: list, seed: int) -> dict:
    """Metrics as given and on re-set copies (random origin, permuted axes)."""
    out = {}
    for kind in ("given", "origin", "axes"):
        inputs = (
            crystals
            if kind == "given"
            else [resettle(c, kind, np.random.default_rng([seed, len(kind)])) for c in crystals]
        )
        prepared = model.prepare(inputs)
        t0 = time.perf_counter()
        pred = model.reconstruct_crystals(prepared)
        m = evaluate_reconstruction(prepared, pred, model.frame, n_jobs=1)
        m["seconds_per_structure"] = (time.perf_counter() - t0) / len(prepared)
        out[kind] = m
    return out


def table_row(r: dict) -> str:
    g, o, a = r["metrics"]["given"], r["metrics"]["origin"], r["metrics"]["axes"]
    return (
        f"| {r['variant']} | {r['data']} | {r['minutes']:g} | {r['steps']} | {r['seconds_per_step']:.2f} | "
        f"{r['parameters'] / 1e6:.2f} M | {r['latent_dim']} | {g['atom_count_error_pct']:.2f} | "
        f"{g['position_error_actual']:.3f} / {g['position_error_detected']:.3f} | "
        f"{g['species_error_actual_pct']:.1f} / {g['species_error_detected_pct']:.1f} | "
        f"{g['match_rate_pct']:.1f} | {g['rmse']:.4f} | {o['atom_count_error_pct']:.1f} / {o['match_rate_pct']:.1f} | "
        f"{a['atom_count_error_pct']:.1f} / {a['match_rate_pct']:.1f} | {r['date']} |"
    )


def append_row(r: dict) -> None:
    """Add a row (and its command) to the ablation table of RESULTS.md, creating the table if needed."""
    text = RESULTS.read_text()
    row = table_row(r)
    note = f"  - {r['variant']} on {r['data']}, {r['minutes']:g} min: `{r['command']}` ({r['machine']})"
    if ABLATION_HEADING not in text:
        block = (
            f"\n{ABLATION_HEADING}\n"
            "Each row: `python benchmarks/ablate.py VARIANT --data DATA --minutes M --threads 1` (commands below the "
            "table); validation data only; re-set copies: every crystal with a random origin, or with its axes "
            "permuted (right-handed).\n\n"
            f"{TABLE_HEADER}\n|{'---|' * (TABLE_HEADER.count('|') - 1)}\n"
            f"{row}\n\nCommands:\n{note}\n"
        )
        RESULTS.write_text(text + block)
        return
    head, rest = text.split(ABLATION_HEADING, 1)
    table_end = rest.index("\n\nCommands:\n")
    commands_end = rest.find("\n\n", table_end + len("\n\nCommands:\n"))
    commands_end = len(rest) if commands_end < 0 else commands_end
    rest = rest[:table_end] + "\n" + row + rest[table_end:commands_end] + "\n" + note + rest[commands_end:]
    RESULTS.write_text(head + ABLATION_HEADING + rest)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variant", choices=sorted(VARIANTS))
    ap.add_argument("--data", default="lim_l6", choices=("lim_l6", "icsg3d", "perov_5", "carbon_24", "mp"))
    ap.add_argument("--minutes", type=float, required=True, help="training wall time")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default=None, help="start from this model (shipped name or checkpoint)")
    ap.add_argument("--val-limit", type=int, default=None, help="evaluate on the first N validation crystals")
    ap.add_argument("--json", default=None, help="result JSON (default benchmarks/results/ablations/...)")
    ap.add_argument("--keep", default=None, help="keep the run folder here (default: a temporary one)")
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_changes, train_changes = VARIANTS[args.variant]
    model_cfg, train_cfg = get_preset("default")
    model_cfg, train_cfg = replace(model_cfg, **model_changes), replace(train_cfg, **train_changes)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "run"
        train, val = splits(args.data, Path(tmp))
        init = None
        if args.init:
            from nesf.registry import resolve_model_path

            init = str(resolve_model_path(args.init))
        trainer = Trainer(
            train,
            val,
            out,
            model_cfg,
            train_cfg,
            seed=args.seed,
            progress=False,
            init=init,
            vocab="all" if args.init else "data",
            setting=model_cfg.setting if args.init else None,
        )
        result = trainer.run(epochs=10_000, minutes=args.minutes)
        model = NeSF.load(out / "last.pt")
        val_eval = val[: args.val_limit] if args.val_limit else val
        val_eval = [c for c in val_eval if set(c.numbers.tolist()) <= set(model.vocab.numbers)]
        metrics = evaluate(model, val_eval, args.seed)
    record = {
        "variant": args.variant,
        "data": args.data,
        "minutes": args.minutes,
        "threads": args.threads,
        "seed": args.seed,
        "init": args.init,
        "steps": result.steps,
        "epochs": result.epochs,
        "seconds_per_step": trainer.elapsed / max(1, result.steps),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "latent_dim": trainer.model_cfg.latent_dim,
        "n_val": len(val_eval),
        "model_changes": {k: list(v) if isinstance(v, tuple) else v for k, v in model_changes.items()},
        "train_changes": train_changes,
        "metrics": metrics,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "command": command(),
    }
    path = args.json or str(
        Path(__file__).parent / "results" / "ablations" / f"{args.variant}_{args.data}_{args.minutes:g}min.json"
    )
    write_json(path, json.loads(json.dumps(record, default=float)))
    if not args.no_results:
        append_row(record)


if __name__ == "__main__":
    main()
