"""Sampling temperature study: ``nesf sample`` at several temperatures, each scored by ``nesf generation-metrics``.

    python benchmarks/generation_study.py --model mp --reference REF.extxyz --root runs/relax
        [--temperatures 1.0 0.85 0.7 0.5] [--n 500] [--preset mp_20] [--in-process] [--json OUT.json] [--no-results]

For each temperature T the two commands below run one after the other (on one thread), unless
their outputs are already there (a study can be continued, or tabulated from runs made by hand
with the same commands):

    nesf sample --model MODEL --n N --out ROOT/TT --temperature T --seed 0 --threads 1 --grid 0 --quiet
    nesf generation-metrics ROOT/TT/all.extxyz REF --preset PRESET --jobs 1 --quiet --json ROOT/TT.metrics.json

(``--in-process``: the second in this process instead, the reference's fingerprints computed
once for all temperatures: the same function and numbers, less time), and the table gets,
beside the protocol's metrics, the mean number of elements and of atoms per
sample and per reference crystal. Use validation data as the reference, never a test split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from ase.data import atomic_masses

from _common import append_result, machine, write_json
from nesf.data.readers import read_crystals

KEYS = (
    ("struct_validity_pct", "struct. %", "{:.2f}"),
    ("comp_validity_pct", "comp. %", "{:.2f}"),
    ("cov_recall_pct", "COV-R %", "{:.2f}"),
    ("cov_precision_pct", "COV-P %", "{:.2f}"),
    ("density_emd", "density", "{:.3f}"),
    ("n_elements_emd", "#elem dist.", "{:.3f}"),
    ("elements_mean", "#elem mean", "{:.2f}"),
    ("single_atom_elements_mean", "1-atom elem.", "{:.2f}"),
    ("atoms_mean", "atoms mean", "{:.2f}"),
    ("density_mean", "density mean", "{:.2f}"),
    ("volume_per_atom_mean", "A^3/atom", "{:.1f}"),
)


def composition_stats(path: Path) -> dict:
    """Means per crystal (elements, elements with one atom, atoms, density g/cm^3, A^3/atom); % per #elements."""
    crystals = [c for c in read_crystals(path) if c.n_atoms]
    n_el = np.array([len(set(c.numbers.tolist())) for c in crystals])
    single = [int((np.unique(c.numbers, return_counts=True)[1] == 1).sum()) for c in crystals]
    density = [1.66053907 * float(atomic_masses[c.numbers].sum()) / c.volume for c in crystals]  # g/cm^3
    return {
        "density_mean": float(np.mean(density)),
        "volume_per_atom_mean": float(np.mean([c.volume / c.n_atoms for c in crystals])),
        "elements_mean": float(n_el.mean()),
        "single_atom_elements_mean": float(np.mean(single)),
        "atoms_mean": float(np.mean([c.n_atoms for c in crystals])),
        "elements_pct": {int(k): 100.0 * float(np.mean(n_el == k)) for k in sorted(set(n_el.tolist()))},
    }


def run(cmd: list[str], log: Path) -> float:
    """Run a command (output to ``log``); its wall time in s."""
    t0 = time.monotonic()
    with open(log, "w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT)
    return time.monotonic() - t0


def score_in_process(generated: Path, reference: str, preset: str, out: Path) -> float:
    """What ``nesf generation-metrics GENERATED REFERENCE --preset P --jobs 1 --json OUT`` computes, in this process.

    The reference's fingerprints are computed once per process and reused (the same function,
    the same numbers); returns the wall time in s.
    """
    import nesf.metrics.generation as gm
    from nesf.io.writers import write_json as write_json_atomic

    if not hasattr(gm, "_study_plain_fingerprints"):
        gm._study_plain_fingerprints = gm.fingerprints
        memo: dict = {}

        def fingerprints(crystals, progress=True, jobs=1):  # noqa: ANN001, ANN202
            key = tuple((c.id, c.n_atoms, float(c.cart.sum())) for c in crystals)
            if key not in memo:
                memo[key] = gm._study_plain_fingerprints(crystals, progress, jobs)
            return memo[key]

        gm.fingerprints = fingerprints
    t0 = time.monotonic()
    torch.set_num_threads(1)
    m = gm.generation_metrics(read_crystals(generated), read_crystals(reference), preset, progress=False, jobs=1)
    write_json_atomic(out, {"generated": str(generated), "reference": str(reference), **m})
    return time.monotonic() - t0


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mp")
    ap.add_argument("--reference", required=True, help="validation crystals (never a test split)")
    ap.add_argument("--root", required=True, help="folder of the samples and metrics")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.85, 0.7, 0.5])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--preset", default="mp_20")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="score in this process, the reference's fingerprints computed once (the numbers of the command)",
    )
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    rows, commands = [], []
    for t in args.temperatures:
        out, metrics = root / f"T{t}", root / f"T{t}.metrics.json"
        sample = ["nesf", "sample", "--model", args.model, "--n", str(args.n), "--out", str(out)]
        sample += ["--temperature", str(t), "--seed", "0", "--threads", "1", "--grid", "0", "--quiet", "--overwrite"]
        score = ["nesf", "generation-metrics", str(out / "all.extxyz"), args.reference, "--preset", args.preset]
        score += ["--jobs", "1", "--quiet", "--json", str(metrics)]
        commands += [" ".join(sample), " ".join(score)]
        seconds = {}
        if not (out / "summary.json").is_file():
            seconds["sample_s"] = run(sample, root / f"T{t}.sample.log")
        if not metrics.is_file() and args.in_process:
            seconds["metrics_in_process_s"] = score_in_process(out / "all.extxyz", args.reference, args.preset, metrics)
        elif not metrics.is_file():
            seconds["metrics_s"] = run(score, root / f"T{t}.metrics.log")
        m = json.loads(metrics.read_text())
        summary = json.loads((out / "summary.json").read_text())
        rows.append(
            {
                "temperature": t,
                **{k: m.get(k) for k, _, _ in KEYS if k in m},
                **composition_stats(out / "all.extxyz"),
                "n_decoded": summary["n_decoded"],
                "n_failed": summary["n_failed"],
                **seconds,
            }
        )
    ref = composition_stats(Path(args.reference))
    result = {
        "model": args.model,
        "reference": args.reference,
        "n": args.n,
        "preset": args.preset,
        "machine": machine(),
        "reference_stats": ref,
        "rows": rows,
        "commands": commands,
    }
    write_json(args.json, result)
    if args.no_results:
        return
    head = "| T | " + " | ".join(label for _, label, _ in KEYS) + " |"
    lines = ["", head, "|" + "---|" * (len(KEYS) + 1)]
    for r in rows:
        cells = ["-" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in KEYS]
        lines.append(f"| {r['temperature']} | " + " | ".join(cells) + " |")
    ref_cells = f"{ref['elements_mean']:.2f} | {ref['single_atom_elements_mean']:.2f} | {ref['atoms_mean']:.2f}"
    ref_cells += f" | {ref['density_mean']:.2f} | {ref['volume_per_atom_mean']:.1f}"
    lines.append(f"| reference | - | - | - | - | - | - | {ref_cells} |")
    lines += ["", "- commands, per temperature:", *[f"  - `{c}`" for c in commands]]
    if args.json:
        lines.append(f"- JSON: `{args.json}`")
    append_result(f"Sampling temperature, {args.model}, {args.n} samples each vs {args.reference}", lines)


if __name__ == "__main__":
    main()
