"""Cost of dropping overlapping atoms in decoding: the same prior codes decoded with and without it.

    python benchmarks/overlap_cost.py [--model mp] [--n 256] [--repeat 2] [--threads 1] [--json OUT.json]

Decodes ``n`` codes drawn from the model's prior (seed 0) as ``nesf sample`` does, alternately
with :func:`nesf.reconstruction.cluster.drop_overlapping` and with it replaced by the identity;
the first decode is a warm-up. Prints the best wall time of each over ``repeat`` rounds.
"""

from __future__ import annotations

import argparse
import time

from _common import write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mp")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    import nesf.reconstruction.reconstruct as reconstruct
    from nesf.api import NeSF

    torch.set_num_threads(args.threads)
    model = NeSF.load(args.model).for_sampling()
    z = model.prior().sample(args.n, seed=0)
    real = reconstruct.drop_overlapping
    model.decode_crystals(z[:64])  # warm-up
    seconds: dict[str, list[float]] = {"with": [], "without": []}
    try:
        for _ in range(args.repeat):
            for name, fn in (("with", real), ("without", lambda atoms, owner, *rest: (atoms, owner))):
                reconstruct.drop_overlapping = fn
                t0 = time.perf_counter()
                model.decode_crystals(z)
                seconds[name].append(time.perf_counter() - t0)
    finally:
        reconstruct.drop_overlapping = real
    best = {k: min(v) for k, v in seconds.items()}
    write_json(
        args.json,
        {
            "model": args.model,
            "n": args.n,
            "seconds": seconds,
            "best": best,
            "overhead_pct": 100.0 * (best["with"] / best["without"] - 1.0),
        },
    )


if __name__ == "__main__":
    main()
