"""Record the sampling temperature chosen on validation data as a shipped prior's default (weights unchanged).

    python benchmarks/set_prior_temperature.py src/nesf/weights/priors/mp.pt 0.85 --evidence "TEXT"

Loads the prior (``weights_only=True``), sets ``PriorConfig.temperature``, adds ``temperature`` and
``temperature_evidence`` to its card, and saves it again (a new file SHA-256; the same flow and
the same model it was fitted to). New priors take ``nesf fit-prior --temperature T`` instead.
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prior")
    ap.add_argument("temperature", type=float)
    ap.add_argument("--evidence", required=True, help="where the choice comes from (a RESULTS.md entry)")
    args = ap.parse_args()

    from nesf.generation.prior import LatentPrior, load_prior, save_prior

    prior, ck = load_prior(args.prior)
    moved = LatentPrior(replace(prior.cfg, temperature=args.temperature))
    moved.load_state_dict(prior.state_dict())
    card = {**ck["model_card"], "temperature": args.temperature, "temperature_evidence": args.evidence}
    save_prior(args.prior, moved.eval(), ck["vocab"], card, int(ck.get("seed", 0)))
    print(f"{args.prior}: default sampling temperature {args.temperature}")


if __name__ == "__main__":
    main()
