"""Start-up of a one-crystal command: where the seconds before and after the crystal's own work go.

    python benchmarks/startup.py [--model mp] [--crystal FILE] [--repeat 3] [--json OUT] [--no-results]

Runs ``nesf reconstruct --model M FILE --out TMP --json TMP.json --threads 1`` in a fresh process
``--repeat`` times and reads the crystal's own compute from the JSON (``seconds``: encoding,
checking and decoding). The difference to the wall time is the start-up and wind-down a user
pays on top: interpreter and imports, model load, input reading, StructureMatcher and writing.
The same phases are also timed one by one in a fresh process (``--_phases``). The best of the
repeats is reported (the machine's other load only adds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import append_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def one_run(model: str, crystal: Path, folder: Path) -> dict:
    """One ``nesf reconstruct`` of one crystal: wall seconds and the crystal's own seconds."""
    out, js = folder / "out", folder / "r.json"
    cmd = [sys.executable, "-m", "nesf", "reconstruct", "--model", model, str(crystal), "--out", str(out)]
    cmd += ["--json", str(js), "--threads", "1", "--quiet", "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"nesf reconstruct failed:\n{proc.stderr[-3000:]}")
    own = json.loads(js.read_text())["seconds"]
    return {"wall_s": wall, "crystal_s": own, "overhead_s": wall - own}


def phases(model: str, crystal: Path) -> dict:
    """Seconds of each phase in this (fresh) process."""
    out = {}
    t = time.perf_counter()
    import torch  # noqa: F401

    out["import_torch_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from nesf.cli import main  # noqa: F401
    from nesf.registry import load_model

    out["import_nesf_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m = load_model(model, priors=False)
    out["load_model_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from nesf.data.readers import read_crystals

    crystals = m.prepare(read_crystals(crystal))
    out["read_prepare_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pred = m.reconstruct_crystals(crystals)
    out["first_round_trip_s"] = time.perf_counter() - t
    t = time.perf_counter()
    m.reconstruct_crystals(crystals)
    out["second_round_trip_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from nesf.metrics.matcher import match_rmse

    match_rmse(crystals, pred, n_jobs=1)
    out["match_s"] = time.perf_counter() - t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mp")
    ap.add_argument("--crystal", default=str(REPO / "src" / "nesf" / "examples" / "classic_crystals.extxyz"))
    ap.add_argument("--index", type=int, default=0, help="which crystal of the file (default the first)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-results", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from nesf.data.readers import read_crystals
        from nesf.io.writers import write_extxyz

        one = Path(tmp) / "one.extxyz"
        c = read_crystals(args.crystal)[args.index]
        write_extxyz(one, [c])
        runs = [one_run(args.model, one, Path(tmp)) for _ in range(args.repeat)]
        probe = subprocess.run(
            [sys.executable, __file__, "--_phases", args.model, str(one)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        split = json.loads(probe.stdout)
    best = min(runs, key=lambda r: r["overhead_s"])
    report = {"model": args.model, "crystal": c.id, "atoms": c.n_atoms, "runs": runs, "best": best, "phases": split}
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_results:
        lines = [
            "",
            f"- one-crystal `nesf reconstruct --model {args.model}` ({c.id}, {c.n_atoms} atoms), best of "
            f"{args.repeat}: wall {best['wall_s']:.2f} s, the crystal's own compute {best['crystal_s']:.2f} s, "
            f"start-up and wind-down {best['overhead_s']:.2f} s",
            "- phases in a fresh process: "
            + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.2f} s" for k, v in split.items()),
        ]
        append_result(f"Start-up of a one-crystal command (`{args.model}`)", lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--_phases":
        print(json.dumps(phases(sys.argv[2], Path(sys.argv[3]))))
    else:
        main()
