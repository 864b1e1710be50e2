"""Average the weights of checkpoints fine-tuned from one model (a "model soup").

    python benchmarks/average_checkpoints.py A.pt B.pt [C.pt ...] --out SOUP.pt [--weights 0.5 0.5]

Runs continued from the same initial model with different settings (learning rate, seed) often
land in one basin, where the average of their weights is at least as good as the best of them.
The checkpoints must share the architecture and species vocabulary; floating-point tensors are
averaged (weighted), integer buffers are taken from the first. The result keeps the first
checkpoint's configuration, domain and history, drops the optimiser state (it cannot be resumed,
only evaluated, exported or used with ``--init``), and records what it averages in ``init_from``.
Judge it on validation data beside its parts.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="two or more training checkpoints of one architecture")
    ap.add_argument("--out", required=True, help="the averaged checkpoint to write")
    ap.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per checkpoint (default equal)")
    args = ap.parse_args()

    from nesf.training.checkpoint import load_checkpoint, save_checkpoint

    if len(args.checkpoints) < 2:
        raise SystemExit("give at least two checkpoints")
    weights = args.weights or [1.0] * len(args.checkpoints)
    if len(weights) != len(args.checkpoints) or min(weights) < 0 or sum(weights) <= 0:
        raise SystemExit("--weights: one non-negative weight per checkpoint, not all zero")
    weights = [w / sum(weights) for w in weights]
    cks = [load_checkpoint(p) for p in args.checkpoints]
    first = cks[0]
    for path, ck in zip(args.checkpoints[1:], cks[1:]):
        for key in ("model_config", "vocab", "frame"):
            if ck.get(key) != first.get(key):
                raise SystemExit(f"{path}: its {key} differs from {args.checkpoints[0]}'s (one architecture only)")
        if set(ck["state_dict"]) != set(first["state_dict"]):
            raise SystemExit(f"{path}: its weights are not named as {args.checkpoints[0]}'s")
    state = {}
    for name, tensor in first["state_dict"].items():
        if tensor.is_floating_point():
            state[name] = sum(w * ck["state_dict"][name].double() for w, ck in zip(weights, cks)).to(tensor.dtype)
        else:
            state[name] = tensor.clone()
    skip = {"format", "format_version", "nesf_version", "sha256", "training", "state_dict", "init_from"}
    payload = {k: v for k, v in first.items() if k not in skip}
    payload["state_dict"] = state
    payload["init_from"] = {
        "average_of": [Path(p).name for p in args.checkpoints],
        "weights": [round(w, 6) for w in weights],
        "parts_init_from": [ck.get("init_from") for ck in cks],
    }
    out = save_checkpoint(args.out, payload)
    print(f"wrote {out}: the weighted average ({', '.join(f'{w:.3f}' for w in weights)}) of {len(cks)} checkpoints")


if __name__ == "__main__":
    main()
