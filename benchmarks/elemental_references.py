"""CHGNet energies of the elements, for stability hulls whose training set lacks an element's own crystal.

    python benchmarks/elemental_references.py --train ../shared/data/mp/train.extxyz \
        [--out src/nesf/relax/elemental_references.json] [--threads 1]

Every single-element crystal of the training file (Materials Project's, for the shipped table)
gets its CHGNet energy per atom as it is (no relaxation, as the hull's training crystals get
theirs); each element keeps its lowest. The table is written with the potential's name and
version, the data it came from and, per element, the energy (eV/atom), the id of the crystal that
gave it and the number of its crystals that were evaluated. :class:`nesf.relax.hull.HullProxy`
reads it for elements without a crystal of their own in a training set (perov_5 has none at all)
when the hull's energies come from the same potential.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True, help="crystals to take the elements' crystals from")
    ap.add_argument("--out", default=str(REPO / "src" / "nesf" / "relax" / "elemental_references.json"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from nesf.data.readers import iter_crystals
    from nesf.io.writers import atomic_write
    from nesf.relax.potential import model_tag, static_energies

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    elemental = [c for c in iter_crystals([args.train]) if c.n_atoms and len(set(c.numbers.tolist())) == 1]
    energies = static_energies(elemental)
    from ase.data import chemical_symbols

    table: dict[str, dict] = {}
    for crystal, energy in zip(elemental, energies):
        if energy is None:
            continue
        symbol = chemical_symbols[int(crystal.numbers[0])]
        row = table.setdefault(symbol, {"energy_per_atom_ev": float("inf"), "id": None, "crystals": 0})
        row["crystals"] += 1
        if energy < row["energy_per_atom_ev"]:
            row["energy_per_atom_ev"], row["id"] = round(float(energy), 6), crystal.id
    out = {
        "potential": model_tag(),
        "data": Path(args.train).name,
        "what": "lowest CHGNet energy per atom (eV/atom) among each element's single-element crystals, unrelaxed",
        "elements": dict(sorted(table.items())),
    }
    atomic_write(args.out, lambda p: p.write_text(json.dumps(out, indent=1) + "\n"))
    print(
        f"{len(table)} elements from {len(elemental)} single-element crystals in {time.perf_counter() - t0:.0f} s; "
        f"wrote {args.out}"
    )


if __name__ == "__main__":
    main()
