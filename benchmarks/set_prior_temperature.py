"""Record sampling defaults chosen on validation data in a shipped prior (the flow's weights unchanged).

    python benchmarks/set_prior_temperature.py src/nesf/weights/priors/mp.pt 0.85 --evidence "TEXT"
    python benchmarks/set_prior_temperature.py src/nesf/weights/priors/mp.pt 0.9 \
        --element-counts-from ../shared/data/mp/train.extxyz --evidence "TEXT"

Loads the prior (``weights_only=True``), sets ``PriorConfig.temperature`` (when given) and, with
``--element-counts-from``, ``PriorConfig.element_counts``: the histogram of the number of
elements of the crystals the prior was fitted to, from which samplers draw each sample's count
(:mod:`nesf.generation.elements`). Adds the values and their evidence to its card and saves it
again (a new file SHA-256; the same flow and the same model it was fitted to). New priors take
``nesf fit-prior --temperature T`` and record the histogram themselves.
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prior")
    ap.add_argument("temperature", type=float, nargs="?", default=None)
    ap.add_argument("--element-counts-from", metavar="DATA", help="the crystals the prior was fitted to")
    ap.add_argument("--evidence", required=True, help="where the choice comes from (a RESULTS.md entry)")
    args = ap.parse_args()

    import ase.io

    from nesf.generation.elements import element_count_histogram
    from nesf.generation.prior import LatentPrior, load_prior, save_prior

    if args.temperature is None and args.element_counts_from is None:
        ap.error("give a temperature, --element-counts-from, or both")
    prior, ck = load_prior(args.prior)
    card, changes = dict(ck["model_card"]), {}
    if args.temperature is not None:
        changes["temperature"] = args.temperature
        card.update(temperature=args.temperature, temperature_evidence=args.evidence)
    if args.element_counts_from is not None:
        counts = [len(set(atoms.numbers)) for atoms in ase.io.iread(args.element_counts_from)]
        if card.get("n_crystals") not in (None, len(counts)):
            ap.error(f"{args.element_counts_from}: {len(counts)} crystals; the prior's card: {card['n_crystals']}")
        changes["element_counts"] = element_count_histogram(counts)
        card.update(element_counts_from=str(args.element_counts_from), element_counts_evidence=args.evidence)
    moved = LatentPrior(replace(prior.cfg, **changes))
    moved.load_state_dict(prior.state_dict())
    save_prior(args.prior, moved.eval(), ck["vocab"], card, int(ck.get("seed", 0)))
    print(f"{args.prior}: {changes}")


if __name__ == "__main__":
    main()
