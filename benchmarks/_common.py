"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def data_dir() -> Path:
    """The shared datasets (``NESF_DATA_DIR`` or ``../shared/data``)."""
    path = Path(os.environ.get("NESF_DATA_DIR", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        sys.exit(f"datasets not found at {path}; set NESF_DATA_DIR")
    return path


def add_model_data_args(ap) -> None:  # noqa: ANN001 - an argparse.ArgumentParser
    """The options of every study of a model on a data file: --model, --data, --limit, --threads, --json."""
    ap.add_argument("--model", required=True, help="shipped model name or checkpoint")
    ap.add_argument("--data", required=True, help="crystals (validation data)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N crystals")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)


def add_sweep_args(ap) -> None:  # noqa: ANN001 - an argparse.ArgumentParser
    """The options every sweep of a model over a data file shares (those above and --no-results)."""
    add_model_data_args(ap)
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")


def parse_changes(text: str, defaults: dict) -> tuple[str, dict]:
    """``name:field=value,...`` as a name and changed fields, typed as in ``defaults`` (tuples as ``a/b/c``)."""
    name, _, rest = text.partition(":")
    changes: dict = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in defaults:
            raise SystemExit(f"{text!r}: expected field=value with a field of {sorted(defaults)}, got {item!r}")
        kind = type(defaults[key])
        if kind is tuple:
            changes[key] = tuple(float(v) for v in value.split("/"))
        elif kind is bool:
            changes[key] = bool(int(value))
        else:
            changes[key] = value if kind is str else kind(float(value))
    return name, changes


def machine() -> str:
    """A short description of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def command() -> str:
    """The command line that ran this benchmark."""
    return "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def write_json(path: str | None, data: dict) -> None:
    """Write the result JSON (if a path is given) and print it."""
    text = json.dumps(data, indent=2)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


def append_result(title: str, lines: list[str]) -> None:
    """Append a dated entry to benchmarks/RESULTS.md."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    entry = [f"\n### {title} ({stamp})", f"- machine: {machine()}", f"- command: `{command()}`", *lines, ""]
    with open(RESULTS, "a") as fh:
        fh.write("\n".join(entry))
