"""Record sampling defaults chosen on validation data in a shipped prior (the flow's weights unchanged).

    python benchmarks/set_prior_temperature.py src/nesf/weights/priors/mp.pt 0.85 --evidence "TEXT"
    python benchmarks/set_prior_temperature.py src/nesf/weights/priors/mp.pt 0.9 \
        --element-counts-from ../shared/data/mp/train.extxyz --evidence "TEXT"
    python benchmarks/set_prior_temperature.py src/nesf/weights/priors/perov_5.pt \
        --makeup-from runs/data/perov_5/train.extxyz --evidence "TEXT"

Loads the prior (``weights_only=True``), sets ``PriorConfig.temperature`` (when given) and, with
``--element-counts-from``, ``PriorConfig.element_counts``: the histogram of the number of
elements of the crystals the prior was fitted to, from which samplers draw each sample's count
(:mod:`nesf.generation.elements`); with ``--makeup-from``, ``PriorConfig.makeup_counts``: the
joint table of (number of elements, number of atoms) of those crystals in the model's own cells
(read as ``nesf fit-prior`` reads them), from which samplers also draw each sample's number of
atoms. Adds the values and their evidence to its card and saves it again (a new file SHA-256;
the same flow and the same model it was fitted to). New priors take ``nesf fit-prior
--temperature T [--atom-counts]`` and record the histogram (and the table) themselves.
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prior")
    ap.add_argument("temperature", type=float, nargs="?", default=None)
    ap.add_argument("--element-counts-from", metavar="DATA", help="the crystals the prior was fitted to")
    ap.add_argument("--makeup-from", metavar="DATA", help="the crystals the prior was fitted to (make-up table)")
    ap.add_argument("--model", default=None, help="with --makeup-from: the prior's model (default: its card's)")
    ap.add_argument("--evidence", required=True, help="where the choice comes from (a RESULTS.md entry)")
    args = ap.parse_args()

    import ase.io

    from nesf.generation.elements import element_count_histogram
    from nesf.generation.prior import LatentPrior, load_prior, save_prior

    if args.temperature is None and args.element_counts_from is None and args.makeup_from is None:
        ap.error("give a temperature, --element-counts-from, --makeup-from, or several")
    prior, ck = load_prior(args.prior)
    card, changes = dict(ck["model_card"]), {}
    if args.temperature is not None:
        changes["temperature"] = args.temperature
        card.update(temperature=args.temperature, temperature_evidence=args.evidence)
    if args.element_counts_from is not None:
        counts = [len(set(atoms.numbers)) for atoms in ase.io.iread(args.element_counts_from)]
        if str(card.get("n_crystals")) not in ("None", str(len(counts))):
            ap.error(f"{args.element_counts_from}: {len(counts)} crystals; the prior's card: {card['n_crystals']}")
        changes["element_counts"] = element_count_histogram(counts)
        card.update(element_counts_from=str(args.element_counts_from), element_counts_evidence=args.evidence)
    if args.makeup_from is not None:
        from nesf.api import NeSF
        from nesf.data.readers import read_crystals
        from nesf.generation.elements import makeup_table

        crystals = NeSF.load(args.model or card["model"]).prepare(read_crystals(args.makeup_from))
        if str(card.get("n_crystals")) not in ("None", str(len(crystals))):
            ap.error(f"{args.makeup_from}: {len(crystals)} crystals; the prior's card: {card['n_crystals']}")
        changes["makeup_counts"] = makeup_table(crystals)
        card.update(makeup_counts_from=str(args.makeup_from), makeup_counts_evidence=args.evidence)
    moved = LatentPrior(replace(prior.cfg, **changes))
    moved.load_state_dict(prior.state_dict())
    save_prior(args.prior, moved.eval(), ck["vocab"], card, int(ck.get("seed", 0)))
    print(f"{args.prior}: {changes}")


if __name__ == "__main__":
    main()
