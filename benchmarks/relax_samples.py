"""Relaxation of generated crystals with CHGNet: time per crystal, RMSD to relaxed, kept symmetry, S.U.N. shares.

    python benchmarks/relax_samples.py --samples S/all.extxyz [--limit 50] [--fmax 0.1] [--steps 500]
        [--train TRAIN] [--threads 1] [--json OUT.json] [--out DIR] [--no-results]

Relaxes the first ``--limit`` crystals of SAMPLES one by one (``nesf.relax.Relaxer``: FIRE, cell
and positions, ``--fmax`` eV/A, at most ``--steps`` steps) and reports wall-clock and CPU seconds
per crystal (CPU: this process's time, which is what the relaxation costs on a machine shared
with other jobs), the mean and median RMSD (A) between each sample and its relaxed form and
how it was measured, the share keeping its space group at 0.1 A, convergence, and the
uniqueness of samples and relaxed crystals. With ``--train`` also novelty and the stability
proxy (within 0.1 eV/atom of the hull of the training crystals' CHGNet energies, cached under
``~/.cache/nesf/hull``), judged on the relaxed crystals. Appends an entry to RESULTS.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import append_result, machine, write_json
from nesf.data.crystal import Crystal
from nesf.data.readers import read_crystals
from nesf.relax.checks import percent, unique_mask
from nesf.relax.metrics import relaxed_metrics
from nesf.relax.outputs import summarize
from nesf.relax.potential import Relaxer, RelaxSettings, model_tag


def main() -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", required=True, help="generated crystals (e.g. nesf sample's all.extxyz)")
    ap.add_argument("--limit", type=int, default=50, help="only the first N crystals (default 50)")
    ap.add_argument("--fmax", type=float, default=0.1, help="eV/A (default 0.1)")
    ap.add_argument("--steps", type=int, default=500, help="most FIRE steps per crystal (default 500)")
    ap.add_argument("--train", default=None, help="training crystals: novelty and the stability proxy")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--out", default=None, help="also write the relaxed crystals and table to this folder")
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    samples = [c for c in read_crystals(args.samples) if c.n_atoms][: args.limit]
    settings = RelaxSettings(fmax=args.fmax, steps=args.steps)
    relaxer = Relaxer(settings)
    a = 5.64  # warm-up on rock salt: the first call pays for CHGNet's lazy set-up
    relaxer.relax_one(Crystal(0.5 * a * (1 - np.eye(3)), [[0, 0, 0], [0.5 * a] * 3], [11, 17], "warm-up"))
    results, cpu = [], []
    for c in samples:
        t0 = time.process_time()
        results.append(relaxer.relax_one(c))
        cpu.append(time.process_time() - t0)
    s = summarize(results)
    relaxed = [r.relaxed for r in results if r.relaxed is not None]
    out = {
        "samples": args.samples,
        "n": len(samples),
        "potential": model_tag(),
        "fmax_ev_per_a": args.fmax,
        "steps_cap": args.steps,
        "machine": machine(),
        "atoms_per_cell_mean": float(np.mean([c.n_atoms for c in samples])),
        **s,
        "cpu_seconds_per_crystal": float(np.mean(cpu)),
        "unique_samples_pct": percent(unique_mask(samples)),
        "unique_relaxed_pct": percent(unique_mask(relaxed)),
        "rows": [r.row() for r in results],
    }
    if args.out:
        from nesf.io.writers import staged_folder
        from nesf.relax.outputs import write_relaxation

        with staged_folder(args.out, overwrite=True) as tmp:
            write_relaxation(tmp, results, settings, {"data": args.samples})
    if args.train:
        write_json(args.json, out)  # the relaxation's figures first: the hull part is the long one
        t0 = time.monotonic()
        m = relaxed_metrics(relaxed, read_crystals(args.train), progress=True)
        out["relaxed_metrics"] = {k: v for k, v in m.items() if k != "e_above_hull_ev"}
        out["relaxed_metrics_seconds"] = time.monotonic() - t0
    write_json(args.json, out)
    if args.no_results:
        return
    lines = [
        f"- {len(samples)} crystals ({out['atoms_per_cell_mean']:.1f} atoms per cell on average), {model_tag()}, "
        f"FIRE with cell, fmax {args.fmax} eV/A, at most {args.steps} steps",
        f"- wall {s['seconds_per_crystal']:.2f} s per crystal, CPU {out['cpu_seconds_per_crystal']:.2f} s per crystal; "
        f"{s['steps_mean']:.0f} steps on average, {s['converged_pct']:.0f} % converged, {s['n_failed']} failed",
        f"- RMSD to relaxed: mean {s['rmsd_to_relaxed_mean']:.3f} A, median {s['rmsd_to_relaxed_median']:.3f} A "
        f"(StructureMatcher for {s['rmsd_methods']['matcher']}, atom by atom for {s['rmsd_methods']['fixed_order']}); "
        f"space group kept at 0.1 A: {s['spacegroup_kept_pct']:.0f} %; "
        f"CHGNet energy {s['energy_per_atom_mean_ev']:.3f} eV/atom on average",
        f"- unique: {out['unique_samples_pct']:.1f} % of the samples, {out['unique_relaxed_pct']:.1f} % of the relaxed",
    ]
    if args.train:
        m = out["relaxed_metrics"]
        lines.append(
            f"- on the relaxed crystals against {m['n_training']} training crystals: novel {m['novel_pct']:.1f} %, "
            f"stable proxy {m['stable_proxy_pct']:.1f} %, S.U.N. {m['sun_pct']:.1f} % "
            f"({m['hull_training_crystals']} training crystals on the hulls, {m['hull_energies_computed']} energies "
            f"computed, {out['relaxed_metrics_seconds']:.0f} s)"
        )
    if args.json:
        lines.append(f"- JSON: `{args.json}`")
    append_result("Relaxation of generated crystals with CHGNet", lines)


if __name__ == "__main__":
    main()
