"""Train several named variants side by side on one device, each for the same wall time.

    python benchmarks/train_variants.py VARIANT [VARIANT ...] --train TRAIN --val VAL --out DIR
        --minutes M [--device cuda] [--batch-size B] [--lr LR] [--ema D] [--label-smoothing S]
        [--vocab all] [--seed 0] [--tf32]

Each variant (``benchmarks/variants.py``) trains in its
own process on the same device for ``--minutes`` of wall time (the cosine schedule runs over
that time), writing ``DIR/VARIANT/`` (``last.pt``, ``best.pt``, ``history.csv``) and a small
inference checkpoint ``DIR/VARIANT.pt`` (no optimiser state). ``DIR/summary.json`` records the
command, the device, and each variant's steps, epochs, seconds per step, parameters and final
validation losses. On a GPU the processes share the card, which a single small-model run
leaves mostly idle between its kernel launches; on a CPU give each one thread
(``--threads 1``) and at most one variant per core.

Training data is best given as prepared sets (``nesf prepare``): the canonical setting and the
crystal systems are then computed once, not in every process. Evaluation (StructureMatcher)
is a separate step: ``nesf evaluate --model DIR/VARIANT.pt VAL``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue as queue_module
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from variants import VARIANTS


def _train_one(args: argparse.Namespace, variant: str) -> dict:
    """Train one variant (in a child process) and export its last checkpoint."""
    from nesf.data.readers import read_crystals
    from nesf.models.config import get_preset
    from nesf.training.checkpoint import export_model
    from nesf.training.loop import Trainer

    signal.signal(signal.SIGTERM, _interrupt)  # a stopped run still writes last.pt (and is exported)
    torch.set_num_threads(args.threads)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model_changes, train_changes = VARIANTS[variant]
    model_cfg, train_cfg = get_preset("default")
    common = {
        "batch_size": args.batch_size,
        "lr": args.lr,
        "ema_decay": args.ema,
        "label_smoothing": args.label_smoothing,
    }
    model_cfg = replace(model_cfg, **model_changes)
    # options given on the command line override the variant's
    train_cfg = replace(train_cfg, **{**train_changes, **{k: v for k, v in common.items() if v is not None}})
    out = Path(args.out) / variant
    trainer = Trainer(
        read_crystals(args.train),
        read_crystals(args.val),
        out,
        model_cfg,
        train_cfg,
        seed=args.seed,
        device=args.device,
        progress=False,
        vocab=args.vocab,
    )
    result = trainer.run(epochs=args.epochs, minutes=args.minutes, save_every_minutes=2.0)
    card = {"variant": variant, "data": Path(args.train).name, "device": args.device}
    export_model(out / "last.pt", Path(args.out) / f"{variant}.pt", card)
    last = trainer.history[-1] if trainer.history else {}
    return {
        "variant": variant,
        "steps": result.steps,
        "epochs": result.epochs,
        "seconds_per_step": trainer.elapsed / max(1, result.steps),
        "parameters": sum(p.numel() for p in trainer.model.parameters()),
        "latent_dim": trainer.model_cfg.latent_dim,
        "final": {k: last.get(k) for k in ("val_loss", "val_position", "val_species", "val_lattice", "train_loss")},
        "best_val": result.best_val,
    }


def _interrupt(signum, frame) -> None:  # noqa: ANN001, ARG001
    raise KeyboardInterrupt


def _child(args: argparse.Namespace, variant: str, queue: mp.Queue) -> None:
    try:
        queue.put(_train_one(args, variant))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which carries on
        out = Path(args.out) / variant
        if (out / "last.pt").is_file():  # interrupted: export what was trained
            from nesf.training.checkpoint import export_model

            export_model(out / "last.pt", Path(args.out) / f"{variant}.pt", {"variant": variant, "interrupted": True})
        queue.put({"variant": variant, "error": f"{type(err).__name__}: {err}"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    ap.add_argument("--train", required=True, help="training crystals (a prepared .pt set is fastest)")
    ap.add_argument("--val", required=True, help="validation crystals")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--minutes", type=float, required=True, help="training wall time of every variant")
    ap.add_argument("--epochs", type=int, default=10_000, help="epoch cap (default: the time budget decides)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (default 1)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--ema", type=float, default=None, help="moving average of the weights (decay per step)")
    ap.add_argument("--label-smoothing", type=float, default=None)
    ap.add_argument("--vocab", choices=("data", "all"), default="data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tf32", action="store_true", help="CUDA: TensorFloat-32 matrix products")
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start = time.time()
    procs = [ctx.Process(target=_child, args=(args, v, queue)) for v in args.variants]
    for p in procs:
        p.start()

    def stop_children(signum, frame) -> None:  # noqa: ANN001, ARG001 - SIGTERM: every child saves and exports
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGTERM, stop_children)
    results: list[dict] = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=2.0))
        except queue_module.Empty:
            if not any(p.is_alive() for p in procs) and queue.empty():
                break
    for p in procs:
        p.join()
    done = {r["variant"] for r in results}
    results += [{"variant": v, "error": "the process ended without a result"} for v in args.variants if v not in done]
    device = args.device
    if device.startswith("cuda") and torch.cuda.is_available():
        device = f"{device} ({torch.cuda.get_device_name(0)})"
    summary = {
        "command": "python benchmarks/train_variants.py " + " ".join(sys.argv[1:]),
        "device": device,
        "torch": torch.__version__,
        "wall_seconds": round(time.time() - start, 1),
        "results": sorted(results, key=lambda r: args.variants.index(r["variant"])),
    }
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
