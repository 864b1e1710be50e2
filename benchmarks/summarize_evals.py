"""Append a table of `nesf evaluate --json` results to benchmarks/RESULTS.md.

python benchmarks/summarize_evals.py --title "..." NAME=eval.json [NAME=eval.json ...] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json

from _common import append_result

COLUMNS = (
    ("n_structures", "n", "{:d}"),
    ("atom_count_error_pct", "count err %", "{:.2f}"),
    ("position_error_actual", "pos act A", "{:.4f}"),
    ("position_error_detected", "pos det A", "{:.4f}"),
    ("species_error_actual_pct", "spec act %", "{:.2f}"),
    ("species_error_detected_pct", "spec det %", "{:.2f}"),
    ("lattice_length_mae", "len MAE A", "{:.4f}"),
    ("lattice_angle_mae_deg", "angle MAE deg", "{:.3f}"),
    ("match_rate_pct", "match %", "{:.2f}"),
    ("rmse", "RMSE", "{:.4f}"),
    ("seconds_per_structure", "s/crystal", "{:.3f}"),
)


def fmt(value, spec: str) -> str:
    if value is None or value != value:
        return "n/a"
    return spec.format(int(value)) if spec == "{:d}" else spec.format(float(value))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--title", required=True)
    ap.add_argument("--note", action="append", default=[])
    ap.add_argument("runs", nargs="+", help="NAME=path/to/eval.json")
    args = ap.parse_args()
    lines = [f"- {n}" for n in args.note]
    lines += ["", "| run | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for item in args.runs:
        name, path = item.rsplit("=", 1)
        data = json.loads(open(path).read())
        lines.append(f"| {name} | " + " | ".join(fmt(data.get(k), f) for k, _, f in COLUMNS) + " |")
    print("\n".join(lines))
    append_result(args.title, lines)


if __name__ == "__main__":
    main()
