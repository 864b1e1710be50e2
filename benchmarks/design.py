"""Design with the latent space: shipped heads and evaluators, prediction, optimisation, conditional sampling.

Every figure uses the seeded split the shipped perov_5 and carbon_24 models were trained on
(``nesf split DATA --fraction 0.9 --seed 0`` of CDVAE's val.csv): heads and evaluators are fitted
on the training part, everything is reported on the held-out part.

Stages (``--stage``, any of them, in this order):

- ``ship``: fit the latent heads (perov_5 heat_ref and dir_gap, carbon_24 energy_per_atom) and
  their independent evaluators, write them to ``src/nesf/weights/heads/``;
- ``ship-evaluator``: fit the independent evaluators alone (the heads stay);
- ``ship-crystal``: fit the crystal heads (the same targets, read from the crystals' site tables)
  and write them beside the latent ones (``MODEL-TARGET.crystal.pt``);
- ``predict``: held-out MAE / R^2 of each head (latent and crystal) and evaluator beside a random
  forest on Magpie features (matminer) fitted on the same training part;
- ``optimize``: CDVAE's protocol from the first 100 held-out crystals (SR5 / SR10 / SR15 by the
  evaluator), with and without the trust region and the decode-encode cycle;
- ``conditional``: 200 perov_5 samples at dir_gap 1.5 +- 0.3 eV, plain prior draws and head-guided.

    python benchmarks/design.py --stage ship ship-crystal predict optimize conditional --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, append_result, command, data_dir, machine  # noqa: E402

OUT = REPO / "benchmarks" / "results" / "design"
HEADS = REPO / "src" / "nesf" / "weights" / "heads"
#: (model, target, head loss) of the shipped heads.
SHIPPED = (("perov_5", "heat_ref", "l1"), ("perov_5", "dir_gap", "mse"), ("carbon_24", "energy_per_atom", "l1"))


#: Site-table rows the evaluators read (perov_5: all five sites; carbon_24: none, every site is carbon).
EVALUATOR_SITES = {"perov_5": 5}


def split_data(name: str) -> tuple[list, np.ndarray, Path]:
    """The crystals of CDVAE's ``name/val.csv``, the training-part mask, and the file."""
    from nesf.data.readers import read_crystals
    from nesf.design.data import seeded_split

    path = data_dir() / "cdvae" / name / "val.csv"
    crystals = read_crystals(path)
    return crystals, seeded_split(len(crystals), 0.9, 0), path


def features(name: str, crystals: list) -> np.ndarray:
    """Evaluator features of crystals (structure only for the all-carbon set; site rows for perov_5)."""
    from nesf.design.features import crystal_features

    return crystal_features(crystals, composition=name != "carbon_24", sites=EVALUATOR_SITES.get(name, 0))


def shipped_card(name: str) -> dict:
    """What a shipped head's card says of its model, data and the command that made it."""
    note = f"CDVAE {name} val.csv, nesf split --fraction 0.9 --seed 0"
    return {
        "model": name,
        "train_data": f"{note}: training part",
        "val_data": f"{note}: held-out part",
        "command": command(),
    }


def ship_evaluator(name: str, target: str, units: str, crystals: list, train: np.ndarray, path: Path):  # noqa: ANN201
    """Fit the independent evaluator of ``name``/``target`` on the training part, score it on the rest, write it."""
    from nesf.design import fit_evaluator, save_evaluator
    from nesf.design.data import targets
    from nesf.design.evaluator import evaluate_evaluator

    y = targets(crystals, target, path)
    x = features(name, crystals)
    ev = fit_evaluator(
        None,
        y[train],
        "gbr",
        name != "carbon_24",
        features=x[train],
        card={
            "target": target,
            "units": units,
            "model": name,
            "train_data": shipped_card(name)["train_data"],
        },
        sites=EVALUATOR_SITES.get(name, 0),
    )
    evaluate_evaluator(ev, x[~train], y[~train])
    save_evaluator(HEADS / f"{name}-{target}.evaluator.pt", ev)
    return ev


def stage_ship_evaluator(args: argparse.Namespace) -> dict:
    """Fit and write the independent evaluators only (the heads stay)."""
    from nesf.design.workflow import UNITS

    out = {}
    for name, target, _ in SHIPPED:
        if name not in args.models:
            continue
        t0 = time.monotonic()
        crystals, train, path = split_data(name)
        ev = ship_evaluator(name, target, UNITS.get(target, ""), crystals, train, path)
        out[f"{name}/{target}"] = {"evaluator": ev.card, "seconds": round(time.monotonic() - t0, 1)}
        print(name, target, "evaluator MAE", ev.card["heldout_mae"], flush=True)
    return out


def stage_ship(args: argparse.Namespace) -> dict:
    """Fit and write the shipped heads and evaluators."""
    from nesf.api import NeSF
    from nesf.design import HeadConfig, fit_property, save_head

    HEADS.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, target, loss in SHIPPED:
        if name not in args.models:
            continue
        t0 = time.monotonic()
        crystals, train, path = split_data(name)
        model = NeSF.load(name)
        tr = [c for c, m in zip(crystals, train) if m]
        ho = [c for c, m in zip(crystals, train) if not m]
        cfg = HeadConfig(latent_dim=model.latent_dim, loss=loss, epochs=args.epochs)
        head = fit_property(model, tr, target, val=ho, cfg=cfg, train_source=path, val_source=path)
        head.card.update(shipped_card(name))
        save_head(HEADS / f"{name}-{target}.pt", head, model.vocab.to_dict())
        ev = ship_evaluator(name, target, head.card["units"], crystals, train, path)
        out[f"{name}/{target}"] = {
            "head": {k: v for k, v in head.card.items() if k != "command"},
            "evaluator": ev.card,
            "seconds": round(time.monotonic() - t0, 1),
        }
        print(name, target, "head MAE", head.card["val_mae"], "evaluator MAE", ev.card["heldout_mae"], flush=True)
    return out


def stage_ship_crystal(args: argparse.Namespace) -> dict:
    """Fit and write the shipped crystal heads."""
    from nesf.api import NeSF
    from nesf.design.crystal_head import CrystalHeadConfig, save_crystal_head
    from nesf.design.workflow import fit_property

    out = {}
    for name, target, loss in SHIPPED:
        if name not in args.models:
            continue
        t0 = time.monotonic()
        crystals, train, path = split_data(name)
        model = NeSF.load(name)
        tr = [c for c, m in zip(crystals, train) if m]
        ho = [c for c, m in zip(crystals, train) if not m]
        cfg = CrystalHeadConfig(max_sites=0, loss=loss, epochs=args.crystal_epochs)
        head = fit_property(
            model, tr, target, val=ho, cfg=cfg, train_source=path, val_source=path, reads="crystal", progress=True
        )
        head.card.update(shipped_card(name))
        save_crystal_head(HEADS / f"{name}-{target}.crystal.pt", head)
        out[f"{name}/{target}"] = {
            "head": {k: v for k, v in head.card.items() if k != "command"},
            "seconds": round(time.monotonic() - t0, 1),
        }
        print(name, target, "crystal head MAE", head.card["val_mae"], flush=True)
    return out


def stage_predict(args: argparse.Namespace) -> dict:
    """Held-out MAE / R^2 of the shipped heads and evaluators beside a Magpie random forest."""
    from sklearn.ensemble import RandomForestRegressor

    from nesf.api import NeSF
    from nesf.design.data import targets
    from nesf.design.evaluator import load_evaluator
    from nesf.design.features import N_MAGPIE
    from nesf.design.head import regression_metrics

    out = {}
    for name, target, _ in SHIPPED:
        if name not in args.models:
            continue
        crystals, train, path = split_data(name)
        ho = [c for c, m in zip(crystals, train) if not m]
        y = targets(crystals, target, path)
        model = NeSF.load(name)
        t0 = time.monotonic()
        mean, spread = model.predict(ho, target, reads="latent")
        head_s = time.monotonic() - t0
        crystal_head = None
        if (HEADS / f"{name}-{target}.crystal.pt").is_file():
            t0 = time.monotonic()
            c_mean, _ = model.predict(ho, target, reads="crystal")
            crystal_head = regression_metrics(c_mean, y[~train])
            crystal_head["seconds_per_crystal"] = (time.monotonic() - t0) / len(ho)
        x = features(name, crystals)
        ev = load_evaluator(HEADS / f"{name}-{target}.evaluator.pt")
        baseline_x = x[:, :N_MAGPIE] if name != "carbon_24" else x  # Magpie is constant for pure carbon
        rf = RandomForestRegressor(n_estimators=500, max_features=0.33, random_state=0, n_jobs=1)
        rf.fit(baseline_x[train], y[train])
        err = np.abs(mean - y[~train])
        out[f"{name}/{target}"] = {
            "n_train": int(train.sum()),
            "n_heldout": int((~train).sum()),
            "head": regression_metrics(mean, y[~train]),
            "crystal_head": crystal_head,
            "head_seconds_per_crystal": head_s / len(ho),
            "head_spread_error_corr": float(np.corrcoef(spread, err)[0, 1]),
            "evaluator": regression_metrics(ev.predict_features(x[~train]), y[~train]),
            "baseline_rf": regression_metrics(rf.predict(baseline_x[~train]), y[~train]),
            "baseline_features": "Magpie (132)" if name != "carbon_24" else "the evaluator's structure features",
            "mean_predictor": regression_metrics(np.full((~train).sum(), y[train].mean()), y[~train]),
        }
        print(name, target, json.dumps(out[f"{name}/{target}"]), flush=True)
    return out


def stage_optimize(args: argparse.Namespace) -> dict:
    """CDVAE's optimisation protocol from the first 100 held-out crystals."""
    from nesf.api import NeSF
    from nesf.design import OptimizeSettings, optimize
    from nesf.design.evaluator import load_evaluator

    runs = [
        ("perov_5", "heat_ref", True, True),
        ("perov_5", "heat_ref", False, True),
        ("perov_5", "heat_ref", True, False),
        ("perov_5", "heat_ref", False, False),
        ("carbon_24", "energy_per_atom", True, True),
    ]
    out = {}
    for name, target, trust, recycle in runs:
        if name not in args.models:
            continue
        crystals, train, _ = split_data(name)
        model = NeSF.load(name)
        starts = model.prepare([c for c, m in zip(crystals, train) if not m][: args.starts])
        ev = load_evaluator(HEADS / f"{name}-{target}.evaluator.pt")
        s = OptimizeSettings(steps=args.steps, trust=trust, recycle=recycle)
        t0 = time.monotonic()
        result, summary = optimize(model, target, starts, s, ev)
        summary["seconds"] = round(time.monotonic() - t0, 1)
        summary["unique_formulas_best"] = len({f for row in result.formulas[1:] for f in row if f})
        key = f"{name}/{target}/{'trust' if trust else 'no_trust'}/{'recycle' if recycle else 'no_recycle'}"
        out[key] = summary
        print(key, json.dumps(summary), flush=True)
    return out


def stage_conditional(args: argparse.Namespace) -> dict:
    """200 perov_5 samples at dir_gap 1.5 +- 0.3 eV: plain prior draws, and head-guided draws."""
    from nesf.api import NeSF
    from nesf.design import ConditionalSettings, conditional_sample, score_conditional
    from nesf.design.evaluator import load_evaluator
    from nesf.design.workflow import as_head

    if "perov_5" not in args.models:
        return {}
    model = NeSF.load("perov_5")
    head = as_head("dir_gap", model)
    ev = load_evaluator(HEADS / "perov_5-dir_gap.evaluator.pt")
    out = {}
    for guidance in args.guidance:
        s = ConditionalSettings(target=1.5, tolerance=0.3, n=200, guidance=guidance)
        t0 = time.monotonic()
        result = conditional_sample(model, head, s, seed=0)
        score_conditional(result, ev)
        summary = result.summary(0.3, 1.5)
        summary.update(
            {
                "guidance": guidance,
                "seconds": round(time.monotonic() - t0, 1),
                "evaluator_mae": ev.card.get("heldout_mae"),
            }
        )
        out[f"guidance_{guidance:g}"] = summary
        print(json.dumps(summary), flush=True)
    return out


def tables() -> str:
    """Markdown tables of the stages' JSON files (those that exist)."""
    out = []

    def load(stage: str) -> dict | None:
        path = OUT / f"{stage}.json"
        return json.loads(path.read_text())["results"] if path.is_file() else None

    def f(v: float | None, d: int = 3) -> str:
        return "n/a" if v is None else f"{v:.{d}f}"

    pred = load("predict")
    if pred:
        out += [
            "| model / property | training crystals | held-out | latent head MAE / R^2 | crystal head MAE / R^2 | "
            "evaluator MAE / R^2 | random forest MAE / R^2 (features) | mean of training MAE |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for key, r in pred.items():
            h, e, b = r["head"], r["evaluator"], r["baseline_rf"]
            c = r.get("crystal_head") or {"mae": None, "r2": None}
            out.append(
                f"| {key} | {r['n_train']} | {r['n_heldout']} | {f(h['mae'], 4)} / {f(h['r2'])} | "
                f"{f(c['mae'], 4)} / {f(c['r2'])} | "
                f"{f(e['mae'], 4)} / {f(e['r2'])} | {f(b['mae'], 4)} / {f(b['r2'])} ({r['baseline_features']}) "
                f"| {f(r['mean_predictor']['mae'], 4)} |"
            )
        out.append("")
    opt = load("optimize")
    if opt:
        out += [
            "| model / property / trust region / decode-encode cycle | starts | SR5 | SR10 | SR15 | valid decodes % "
            "| evaluator: start mean -> best mean | evaluator held-out MAE | s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for key, r in opt.items():
            out.append(
                f"| {key} | {r['n_starts']} | {f(r.get('sr5'), 2)} | {f(r.get('sr10'), 2)} | "
                f"{f(r.get('sr15'), 2)} | {f(r['valid_pct'], 1)} | {f(r.get('evaluator_start_mean'))} -> "
                f"{f(r.get('evaluator_best_mean'))} | {f(r.get('evaluator_mae'), 4)} | {r['seconds']:.0f} |"
            )
        out.append("")
    cond = load("conditional")
    if cond:
        out += [
            "| perov_5 dir_gap 1.5 +- 0.3 eV | delivered | drawn | unique formulas | valid % | within tolerance "
            "by the evaluator % | s |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, r in cond.items():
            out.append(
                f"| {key} | {r['n_delivered']} | {r['n_drawn']} | {r['n_unique_formulas']} | "
                f"{f(r['validity_pct'], 1)} | {f(r.get('within_tolerance_pct'), 1)} | {r['seconds']:.0f} |"
            )
    return "\n".join(out)


def main() -> None:
    """Run the stages asked for, write their JSON, append an entry to RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--stage",
        nargs="+",
        default=["predict", "optimize", "conditional"],
        choices=("ship", "ship-evaluator", "ship-crystal", "predict", "optimize", "conditional"),
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=200, help="latent head training epochs (ship)")
    ap.add_argument("--crystal-epochs", type=int, default=300, help="crystal head training epochs (ship-crystal)")
    ap.add_argument("--starts", type=int, default=100, help="held-out crystals to optimise from")
    ap.add_argument("--steps", type=int, default=5000, help="Adam steps")
    ap.add_argument("--guidance", type=float, nargs="+", default=[0.0, 2.0], help="conditional sampling guidance")
    ap.add_argument(
        "--models",
        nargs="+",
        default=["perov_5", "carbon_24"],
        choices=("perov_5", "carbon_24"),
        help="models the stages cover (default both; conditional sampling is perov_5 only); the stored JSON "
        "keeps the other models' records",
    )
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--tables", action="store_true", help="only print the tables of the stored JSON files")
    args = ap.parse_args()
    if args.tables:
        print(tables())
        return
    torch.set_num_threads(args.threads)
    from nesf.io.writers import write_json

    stages = {
        "ship": stage_ship,
        "ship-evaluator": stage_ship_evaluator,
        "ship-crystal": stage_ship_crystal,
        "predict": stage_predict,
        "optimize": stage_optimize,
        "conditional": stage_conditional,
    }
    for stage in ("ship", "ship-evaluator", "ship-crystal", "predict", "optimize", "conditional"):
        if stage not in args.stage:
            continue
        t0 = time.monotonic()
        result = stages[stage](args)
        if not result:  # nothing of this stage for the models asked for
            continue
        path = OUT / f"{stage}.json"
        if path.exists() and stage != "conditional":  # keep the records of models not run this time
            kept = json.loads(path.read_text()).get("results", {})
            result = {**{k: v for k, v in kept.items() if k.split("/")[0] not in args.models}, **result}
        record = {
            "stage": stage,
            "command": command(),
            "machine": machine(),
            "seconds": round(time.monotonic() - t0, 1),
            "results": result,
        }
        write_json(path, record)
        if not args.no_results:
            append_result(
                f"Design: {stage}",
                [f"- JSON: `benchmarks/results/design/{stage}.json`", f"- wall time: {record['seconds']:.0f} s"],
            )


if __name__ == "__main__":
    main()
