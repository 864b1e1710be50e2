"""How well the heat of formation of perov_5 can be told from its sites, on the split the heads use.

    python benchmarks/perovskite_sites.py [--json OUT.json]

Every perov_5 crystal is a 5-atom ABX3 cell: two cations and three anions. The B cation is the
one nearest to another atom (octahedral), the A cation the other. Features: eleven element
properties (pymatgen) of A and of B, the counts of O, N, S and F among the anions, the cell length
and volume, and the anions' mean electronegativity. Two regressors from scikit-learn are fitted
on the training part of ``nesf split --fraction 0.9 --seed 0`` of CDVAE's val.csv (3,408
crystals) and scored on its held-out part (379), the data of the shipped ``heat_ref`` head. The
figure bounds what a model told exactly which element sits on which site can learn from this
many crystals, beside the head on latent codes (``nesf fit-property``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_dir, machine  # noqa: E402

#: pymatgen ``Element`` properties used per site.
PROPS = (
    "Z",
    "X",
    "row",
    "group",
    "atomic_radius",
    "atomic_mass",
    "mendeleev_no",
    "ionization_energy",
    "electron_affinity",
    "molar_volume",
    "melting_point",
)
ANIONS = ("O", "N", "S", "F")


def element_props(symbol: str) -> list[float]:
    """The :data:`PROPS` of an element (0 where pymatgen has none)."""
    from pymatgen.core import Element

    el, out = Element(symbol), []
    for name in PROPS:
        try:
            out.append(float(getattr(el, name) or 0.0))
        except (TypeError, ValueError, AttributeError):
            out.append(0.0)
    return out


def site_features(crystal) -> list[float]:  # noqa: ANN001 - a nesf Crystal
    """Features of one ABX3 cell (see the module docstring)."""
    from pymatgen.core import Element

    st = crystal.to_pymatgen()
    symbols = [s.specie.symbol for s in st]
    cations = [i for i, s in enumerate(symbols) if s not in ANIONS]
    if len(cations) != 2:  # fall back on the two least electronegative elements
        cations = sorted(range(len(st)), key=lambda i: Element(symbols[i]).X)[:2]
    nearest = {i: min(st.get_distance(i, j) for j in range(len(st)) if j != i) for i in cations}
    b, a = sorted(cations, key=lambda i: nearest[i])
    anions = [symbols[i] for i in range(len(st)) if i not in cations]
    counts = [anions.count(e) for e in ANIONS]
    return (
        element_props(symbols[a])
        + element_props(symbols[b])
        + counts
        + [st.lattice.a, st.volume, float(np.mean([Element(e).X for e in anions]))]
    )


def main() -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

    from nesf.data.readers import read_crystals
    from nesf.design.data import seeded_split, targets
    from nesf.io.writers import write_json

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    path = data_dir() / "cdvae" / "perov_5" / "val.csv"
    crystals = read_crystals(path)
    train = seeded_split(len(crystals), 0.9, 0)
    y = targets(crystals, "heat_ref", path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = np.array([site_features(c) for c in crystals])
    models = {
        "gradient boosting (absolute error, 2000 rounds, lr 0.05)": HistGradientBoostingRegressor(
            max_iter=2000, learning_rate=0.05, loss="absolute_error", random_state=0
        ),
        "random forest (500 trees)": RandomForestRegressor(n_estimators=500, random_state=0, n_jobs=1),
    }
    out = {"n_train": int(train.sum()), "n_heldout": int((~train).sum()), "machine": machine(), "mae_eV": {}}
    for name, model in models.items():
        t0 = time.monotonic()
        model.fit(x[train], y[train])
        mae = float(np.abs(model.predict(x[~train]) - y[~train]).mean())
        out["mae_eV"][name] = mae
        print(f"{name}: held-out MAE {mae:.4f} eV/cell ({time.monotonic() - t0:.0f} s)")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
