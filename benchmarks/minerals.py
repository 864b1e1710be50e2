"""A model on the 51 named classic crystals and minerals that ship with nesf, and on re-set copies.

    python benchmarks/minerals.py [--model mp] [--threads 1] [--json OUT.json] [--no-results]

The crystals (``nesf.data.examples.MINERAL_NAMES``: the demo's, the classic set's and further
minerals, built from their space groups and rounded experimental Wyckoff positions) are written to
a temporary extxyz and evaluated with ``nesf evaluate --resettle`` (each crystal also with a moved
origin, permuted axes, its Niggli cell, and all three). None of them is taken from a shared data
file, so they test a model on crystals it was not chosen on. Appends the match rate, the atom-count
error and the crystals that failed to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import REPO, append_result, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mp", help="shipped model name or checkpoint (default mp)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()

    from nesf.cli import main as nesf_main
    from nesf.data.examples import MINERAL_NAMES, demo_crystals
    from nesf.io.writers import write_extxyz

    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "minerals.extxyz", Path(tmp) / "eval.json"
        write_extxyz(data, demo_crystals(MINERAL_NAMES))
        cmd = ["evaluate", "--model", args.model, str(data), "--resettle", "--quiet", "--jobs", "1"]
        code = nesf_main([*cmd, "--threads", str(args.threads), "--json", str(out)])
        if code != 0:
            raise SystemExit(f"nesf evaluate failed with exit code {code}")
        result = json.loads(out.read_text())
    failed = [r for r in result["structures"] if not r["matched"]]
    summary = {
        "model": args.model,
        "n": result["n_structures"],
        "match_rate_pct": result["match_rate_pct"],
        "atom_count_error_pct": result["atom_count_error_pct"],
        "rmse": result["rmse"],
        "resettled_match_rate_pct": {k: m["match_rate_pct"] for k, m in result.get("resettled", {}).items()},
        "failed": [{k: r[k] for k in ("id", "formula_in", "formula_out", "n_atoms_in", "n_atoms_out")} for r in failed],
        "refinement": result.get("refinement"),
    }
    write_json(args.json, summary)
    if args.no_results:
        return
    copies = ", ".join(f"{k} {v:.2f} %" for k, v in summary["resettled_match_rate_pct"].items())
    lines = [
        f"- match {summary['match_rate_pct']:.2f} % of {summary['n']}, atom-count error "
        f"{summary['atom_count_error_pct']:.2f} %, RMSE {summary['rmse']:.4f}; re-set copies: {copies}",
        "- not matched: "
        + (
            ", ".join(f"{r['id']} ({r['n_atoms_in']} -> {r['n_atoms_out']} atoms, {r['formula_out']})" for r in failed)
            or "none"
        ),
    ]
    append_result(f"Classic crystals and minerals, model {args.model}", lines)
    print(f"appended to {(REPO / 'benchmarks' / 'RESULTS.md').relative_to(REPO)}")


if __name__ == "__main__":
    main()
