"""Fuzz the crystal readers: seeded hostile inputs, each read in a forked worker with time and memory limits.

    python benchmarks/fuzz_inputs.py [--cases 3000] [--seed 0] [--timeout 20] [--memory-gb 4] [--json OUT]

Every case is a file made from a valid crystal (CIF, extxyz, CSV, POSCAR, pymatgen JSON) by one
mutation of a known class. Each class says what a trustworthy reader must do with it:

- ``refuse``: the file is not a valid crystal (bad occupancy, impossible cell, missing
  positions, absurd counts, malformed symmetry operations, type symbols that name no element,
  absurd, unknown or non-CIF coordinates, junk or moved lines in loops, a file cut inside a
  number, megabyte lines, ...): it must be refused with a clear error;
- ``keep``: the file holds exactly the original crystal(s) (a byte-order mark, other line
  endings, extra blank lines, a second block of another composition, ...): it must be read,
  unchanged;
- ``any``: random damage (flipped bytes, truncation, deleted or repeated lines): refusing and
  reading are both fine, but a read must not lose blocks.

Outcomes: ``exact`` (read, as expected), ``refused`` (a clean one-line error naming the file),
``changed`` (read, but not as the class demands: a ``keep`` file read differently or a
``refuse`` file accepted), ``lost`` (fewer blocks read than the file holds), ``unexpected``
(another exception, or an error that does not name the file), ``timeout``, ``memory``. A
reader passes when the last five are all zero.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Outcomes that mean the reader misbehaved.
BAD_OUTCOMES = ("changed", "lost", "unexpected", "timeout", "memory")


@dataclass
class Case:
    """One fuzz input: a file name, its bytes, what a reader must do, and the crystals it holds if kept."""

    name: str
    data: bytes
    kind: str  # "refuse", "keep" or "any"
    mutation: str
    expected: list | None = None  # [(n_atoms, sorted numbers)] per block, for "keep"


# ------------------------------------------------------------------ base files
def base_crystals():  # noqa: ANN201
    from nesf.data.examples import demo_crystals

    return demo_crystals()


def cif_text(crystal, name: str) -> str:  # noqa: ANN001
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(crystal.to_pymatgen(), symprec=0.01))
    return re.sub(r"(?m)^data_\S*", f"data_{name}", text, count=1)


def extxyz_text(crystals) -> str:  # noqa: ANN001
    import io

    import ase.io

    buf = io.StringIO()
    ase.io.write(buf, [c.to_ase() for c in crystals], format="extxyz")
    return buf.getvalue()


def fingerprint(crystals) -> list:  # noqa: ANN001
    return [(c.n_atoms, sorted(int(z) for z in c.numbers)) for c in crystals]


# ------------------------------------------------------------------ mutations
def _lines(text: str) -> list[str]:
    return text.split("\n")


def cif_mutations(rng: np.random.Generator) -> dict[str, tuple[str, Callable[[str], str]]]:
    """CIF mutation classes: name -> (kind, function of the CIF text)."""

    def set_key(text: str, key: str, value: str) -> str:
        return re.sub(rf"(?m)^({re.escape(key)}\s+)\S+", lambda m: m.group(1) + value, text)

    def occupancy(text: str) -> str:
        bad = str(rng.choice(["-1", "0", "nan", "2.5", "abc", "-0.5"]))
        lines = _lines(text)
        rows = [i for i, ln in enumerate(lines) if re.match(r"^\s+[A-Z][a-z]?\S*\s+\S+\s+\d+\s", ln)]
        if not rows:
            return text + "\n_bad"
        i = int(rng.choice(rows))
        parts = lines[i].split()
        parts[-1] = bad
        lines[i] = "  " + "  ".join(parts)
        return "\n".join(lines)

    def no_symmetry(text: str) -> str:
        text = re.sub(r"(?s)loop_\s*\n\s*_symmetry_equiv_pos_site_id.*?(?=\nloop_)", "", text)
        text = re.sub(r"(?m)^_symmetry_Int_Tables_number.*$", "", text)
        return set_key(text, "_symmetry_space_group_name_H-M", "'Q z 7'")

    def empty_op(text: str) -> str:
        return re.sub(r"(?m)^(\s+1\s+)'x, y, z'", r"\1''", text, count=1)

    def huge_op(text: str) -> str:
        return re.sub(r"(?m)^(\s+1\s+)'x, y, z'", lambda m: m.group(1) + "'x+" + "7" * 5000 + ", y, z'", text, count=1)

    def duplicate_block(text: str) -> str:
        return text + "\n" + text

    def angle(text: str) -> str:
        key = str(rng.choice(["_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma"]))
        return set_key(text, key, str(rng.choice(["400", "1e308", "0", "-90", "180", "nan", "360"])))

    def length(text: str) -> str:
        key = str(rng.choice(["_cell_length_a", "_cell_length_b", "_cell_length_c"]))
        return set_key(text, key, str(rng.choice(["-5", "0", "1e6", "1e308", "nan", "inf", "4e6"])))

    def bom(text: str) -> str:
        return "\ufeff" + text

    def crlf(text: str) -> str:
        return text.replace("\n", "\r\n")

    def blank_lines(text: str) -> str:
        return text.replace("\n", "\n\n")

    def second_block(text: str) -> str:
        return text + "\n" + re.sub(r"(?m)^data_(\S*)", r"data_\1_copy", text, count=1)

    def symop_rows(lines: list[str]) -> list[int]:
        return [i for i, ln in enumerate(lines) if re.match(r"^\s+\d+\s+'[^']*'\s*$", ln)]

    def malformed_op(text: str) -> str:
        lines = _lines(text)
        i = int(rng.choice(symop_rows(lines)))
        number = lines[i].split()[0]
        lines[i] = f"  {number}  '{rng.choice(MALFORMED_OPS)}'"
        return "\n".join(lines)

    def symop_header(text: str) -> str:
        lines = _lines(text)
        rows = symop_rows(lines)
        head = [i for i in range(rows[0]) if lines[i].strip().startswith("_symmetry_equiv_pos")]
        if rng.random() < 0.5:  # header and rows swapped
            block = [lines[i] for i in rows] + [lines[i] for i in head]
            lines[head[0] : rows[-1] + 1] = block
        else:  # header repeated
            lines.insert(head[-1] + 1, lines[head[-1]])
        return "\n".join(lines)

    def atom_rows(lines: list[str]) -> list[int]:
        return [i for i, ln in enumerate(lines) if re.match(r"^\s+[A-Z][a-z]?\S*\s+\S+\s+\d+\s", ln)]

    def type_symbol(text: str) -> str:
        lines = _lines(text)
        i = int(rng.choice(atom_rows(lines)))
        parts = lines[i].split()
        parts[0] = str(rng.choice(["119", "12", "?", "Xx", "Q", "cl"]))
        lines[i] = "  " + "  ".join(parts)
        return "\n".join(lines)

    def fraction(text: str) -> str:
        lines = _lines(text)
        i = int(rng.choice(atom_rows(lines)))
        parts = lines[i].split()
        parts[int(rng.integers(3, 6))] = str(rng.choice(BAD_FRACTIONS))
        lines[i] = "  " + "  ".join(parts)
        return "\n".join(lines)

    def loop_junk(text: str) -> str:
        lines = _lines(text)
        rows = atom_rows(lines) if rng.random() < 0.6 else symop_rows(lines)
        junk = str(rng.choice(["garbage", "_cell_volume   179.4", "1 2 3", "# x\nfoo bar", "_atom_site_label"]))
        lines.insert(int(rng.choice(rows)) + int(rng.integers(0, 2)), junk)
        return "\n".join(lines)

    def cut_in_number(text: str) -> str:
        numbers = [m for m in re.finditer(r"\d\.\d{2,}", text) if m.start() > len(text) // 3]
        m = numbers[int(rng.integers(len(numbers)))]
        return text[: int(rng.integers(m.start() + 1, m.end()))]

    def other_block(text: str) -> str:
        return text + "\n" + OTHER_BLOCK

    def megabyte_line(text: str) -> str:
        filler = str(rng.choice(["1 ", "x", "0.5 "])) * 1_000_000
        lines = _lines(text)
        lines.insert(int(rng.integers(1, len(lines))), f"_nesf_note {filler}")
        return "\n".join(lines)

    return {
        "cif-occupancy": ("refuse", occupancy),
        "cif-unknown-space-group": ("refuse", no_symmetry),
        "cif-empty-symop": ("refuse", empty_op),
        "cif-huge-symop": ("refuse", huge_op),
        "cif-duplicate-block": ("refuse", duplicate_block),
        "cif-angle": ("refuse", angle),
        "cif-length": ("refuse", length),
        "cif-bom": ("keep", bom),
        "cif-crlf": ("keep", crlf),
        "cif-blank-lines": ("keep", blank_lines),
        "cif-two-blocks": ("keep", second_block),
        "cif-malformed-op": ("refuse", malformed_op),
        "cif-symop-header": ("refuse", symop_header),
        "cif-type-symbol": ("refuse", type_symbol),
        "cif-fraction": ("refuse", fraction),
        "cif-loop-junk": ("refuse", loop_junk),
        "cif-cut-in-number": ("refuse", cut_in_number),
        "cif-other-block": ("keep", other_block),
        "cif-megabyte-line": ("refuse", megabyte_line),
    }


#: Symmetry operations that are none (each must be refused, never applied).
MALFORMED_OPS = [
    "a, b, c",
    "x, y",
    "x, y, z, w",
    "x, x, x",
    "-y+inf/2, x, z",
    "x, y, z+0x10/3",
    "x, y, z++-2/2",
    "x, y\x00, z",
    "x, y, z+1/0",
    "2x, y, z",
    "x+y+z, y, z",
]
#: Fractional coordinates a CIF may not hold (absurd, unknown, or not CIF numbers).
BAD_FRACTIONS = ["1e30", "1e308", "99999999999999999999999", ".", "?", "1_000", "inf", "nan", "0x10", "1" * 100_000]
#: A valid block of another composition (KBr, rock salt), written the way pymatgen writes CIFs.
OTHER_BLOCK = """data_KBr
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   4.66
_cell_length_b   4.66
_cell_length_c   4.66
_cell_angle_alpha   60.0
_cell_angle_beta   60.0
_cell_angle_gamma   60.0
_symmetry_Int_Tables_number   1
_chemical_formula_structural   KBr
_chemical_formula_sum   'K1 Br1'
_cell_formula_units_Z   1
loop_
 _symmetry_equiv_pos_site_id
 _symmetry_equiv_pos_as_xyz
  1  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_symmetry_multiplicity
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  K  K0  1  0.00000000  0.00000000  0.00000000  1
  Br  Br1  1  0.50000000  0.50000000  0.50000000  1
"""
OTHER_FINGERPRINT = (2, [19, 35])


def damage(rng: np.random.Generator, data: bytes) -> tuple[str, bytes]:
    """Random damage: flipped bytes, truncation, deleted or repeated lines."""
    how = str(rng.choice(["flip", "truncate", "delete-line", "repeat-line", "insert-junk"]))
    b = bytearray(data)
    if how == "flip":
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
        return how, bytes(b)
    if how == "truncate":
        return how, bytes(b[: int(rng.integers(1, len(b)))])
    lines = bytes(b).split(b"\n")
    i = int(rng.integers(len(lines)))
    if how == "delete-line":
        del lines[i]
    elif how == "repeat-line":
        lines.insert(i, lines[i])
    else:
        lines.insert(i, bytes(rng.integers(32, 127, size=int(rng.integers(1, 80)), dtype=np.uint8)))
    return how, b"\n".join(lines)


def extxyz_mutations(rng: np.random.Generator) -> dict[str, tuple[str, Callable[[str], str]]]:
    def count(text: str) -> str:
        lines = _lines(text)
        lines[0] = str(rng.choice(["1000000000", "0", "-3", "x", "1e9", "99999"]))
        return "\n".join(lines)

    def no_positions(text: str) -> str:
        return text.replace(":pos:R:3", "")

    def bad_lattice(text: str) -> str:
        value = str(rng.choice(["nan", "1e30", "4e6", "inf", "1e308"]))
        return re.sub(r'Lattice="(\S+)', lambda m: f'Lattice="{value}', text, count=1)

    def overlap(text: str) -> str:
        lines = _lines(text)
        n = int(lines[0])
        lines[0] = str(n + 1)
        lines.insert(2, lines[2])
        return "\n".join(lines)

    def bom(text: str) -> str:
        return "\ufeff" + text

    def crlf(text: str) -> str:
        return text.replace("\n", "\r\n")

    def cut_in_number(text: str) -> str:
        numbers = [m for m in re.finditer(r"\d\.\d{2,}", text) if m.start() > len(text) // 2]
        m = numbers[int(rng.integers(len(numbers)))]
        return text[: int(rng.integers(m.start() + 1, m.end()))]

    def python_number(text: str) -> str:
        lines = _lines(text)
        parts = lines[2].split()
        parts[int(rng.integers(1, 4))] = str(rng.choice(["1_000", "inf", "0x10", "1.0.0", "nan", "--1"]))
        lines[2] = " ".join(parts)
        return "\n".join(lines)

    return {
        "extxyz-cut-in-number": ("refuse", cut_in_number),
        "extxyz-python-number": ("refuse", python_number),
        "extxyz-count": ("refuse", count),
        "extxyz-no-positions": ("refuse", no_positions),
        "extxyz-lattice": ("refuse", bad_lattice),
        "extxyz-overlap": ("refuse", overlap),
        "extxyz-bom": ("keep", bom),
        "extxyz-crlf": ("keep", crlf),
    }


def make_cases(n: int, seed: int) -> list[Case]:
    """``n`` seeded cases, cycling over the mutation classes and the base crystals."""
    import csv
    import io

    rng = np.random.default_rng(seed)
    crystals = base_crystals()
    cif_muts = cif_mutations(rng)
    xyz_muts = extxyz_mutations(rng)
    classes = [
        *cif_muts,
        *xyz_muts,
        "csv-no-header",
        "csv-cr",
        "csv-duplicate-block",
        "damage-cif",
        "damage-extxyz",
        "damage-csv",
        "damage-poscar",
        "damage-json",
    ]
    cases = []
    for k in range(n):
        cls = classes[k % len(classes)]
        c = crystals[int(rng.integers(len(crystals)))]
        name = f"case{k:05d}"
        cif = cif_text(c, c.id)
        if cls in cif_muts:
            kind, fn = cif_muts[cls]
            text = fn(cif)
            blocks = 2 if cls == "cif-two-blocks" else 1
            expected = fingerprint([c] * blocks) + ([OTHER_FINGERPRINT] if cls == "cif-other-block" else [])
            cases.append(Case(f"{name}.cif", text.encode(), kind, cls, expected))
        elif cls in xyz_muts:
            kind, fn = xyz_muts[cls]
            cases.append(Case(f"{name}.extxyz", fn(extxyz_text([c])).encode(), kind, cls, fingerprint([c])))
        elif cls.startswith("csv"):
            buf = io.StringIO()
            w = csv.writer(buf)
            if cls != "csv-no-header":
                w.writerow(["material_id", "cif"])
            w.writerow([c.id, cif + ("\n" + cif if cls == "csv-duplicate-block" else "")])
            text = buf.getvalue()
            if cls == "csv-cr":
                text = text.replace("\r\n", "\r").replace("\n", "\r")
            kind = "keep" if cls == "csv-cr" else "refuse"
            cases.append(Case(f"{name}.csv", text.encode(), kind, cls, fingerprint([c])))
        else:
            fmt = cls.split("-")[1]
            if fmt == "cif":
                data = cif.encode()
            elif fmt == "extxyz":
                data = extxyz_text([c]).encode()
            elif fmt == "csv":
                buf = io.StringIO()
                csv.writer(buf).writerows([["material_id", "cif"], [c.id, cif]])
                data = buf.getvalue().encode()
            elif fmt == "poscar":
                from pymatgen.io.vasp import Poscar

                data = Poscar(c.to_pymatgen()).get_str().encode()
            else:
                data = json.dumps(c.to_pymatgen().as_dict()).encode()
            how, data = damage(rng, data)
            suffix = {"cif": ".cif", "extxyz": ".extxyz", "csv": ".csv", "poscar": ".vasp", "json": ".json"}[fmt]
            cases.append(Case(f"{name}{suffix}", data, "any", f"{cls}/{how}"))
    return cases


# ------------------------------------------------------------------ running
def read_one(path: str) -> tuple[str, object]:
    """Read a file in this process: ("ok", fingerprint) or ("error", (class name, message))."""
    from nesf.data.readers import read_crystals
    from nesf.errors import NesfError

    try:
        return "ok", fingerprint(read_crystals(path))
    except NesfError as exc:
        return "error", ("NesfError", str(exc))
    except MemoryError:
        return "memory", None
    except Exception as exc:  # anything else is a finding
        return "error", (type(exc).__name__, str(exc)[:300])


def run_case(case: Case, folder: Path, timeout: float, memory_gb: float) -> dict:
    """Write the case, read it in a forked worker with limits, and classify the outcome."""
    path = folder / case.name
    path.write_bytes(case.data)
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the worker
        os.close(r)
        try:
            limit = int(memory_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            result = read_one(str(path))
        except MemoryError:
            result = ("memory", None)
        except BaseException as exc:  # noqa: BLE001 - report, never raise in the worker
            result = ("error", (type(exc).__name__, str(exc)[:300]))
        with os.fdopen(w, "wb") as fh:
            pickle.dump(result, fh)
        os._exit(0)
    os.close(w)
    deadline = t0 + timeout
    status = None
    while time.perf_counter() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.002)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        return {"name": case.name, "mutation": case.mutation, "kind": case.kind, "outcome": "timeout"}
    with os.fdopen(r, "rb") as fh:
        raw = fh.read()
    seconds = time.perf_counter() - t0
    try:
        status_word, payload = pickle.loads(raw)  # our own worker's result, never foreign data
    except Exception:  # the worker died (killed by the memory limit inside a C extension, ...)
        status_word, payload = "memory", None
    outcome = classify(case, status_word, payload, str(path))
    out = {"name": case.name, "mutation": case.mutation, "kind": case.kind, "outcome": outcome, "seconds": seconds}
    if status_word == "error":
        out["error"] = payload[1][:200]
    return out


def classify(case: Case, status: str, payload, path: str) -> str:  # noqa: ANN001
    if status == "memory":
        return "memory"
    if status == "error":
        cls, message = payload
        if cls != "NesfError" or path not in message or "\n" in message:
            return "unexpected"
        return "unexpected" if case.kind == "keep" else "refused"
    if case.kind == "refuse":
        return "changed"
    if case.kind == "keep":
        return "exact" if payload == case.expected else "changed"
    text = case.data.decode("utf-8", errors="replace")
    blocks = len(re.findall(r"(?im)^[ \t\ufeff]*data_", text)) if case.name.endswith(".cif") else None
    if blocks is not None and len(payload) < blocks:
        return "lost"
    return "exact"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    ap.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit per case")
    ap.add_argument("--json", default=None)
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args()
    from pymatgen.io.cif import CifParser  # noqa: F401

    import nesf.data.readers  # noqa: F401 - imported once here, inherited by every forked worker

    t0 = time.perf_counter()
    cases = make_cases(args.cases, args.seed)
    results = []
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory() as tmp:
        for case in tqdm(cases, desc="fuzz", unit="case"):
            results.append(run_case(case, Path(tmp), args.timeout, args.memory_gb))
    table = summarize(results)
    bad = sum(table["total"][o] for o in BAD_OUTCOMES)
    report = {
        "cases": len(results),
        "seed": args.seed,
        "timeout_s": args.timeout,
        "memory_gb": args.memory_gb,
        "seconds": time.perf_counter() - t0,
        "outcomes": dict(table["total"]),
        "by_class": {k: dict(v) for k, v in table["by_class"].items()},
        "failures": [r for r in results if r["outcome"] in BAD_OUTCOMES][:50],
        "slowest_s": max(r.get("seconds", 0.0) for r in results),
    }
    print(format_table(table))
    print(
        f"{bad} misbehaviours in {len(results)} cases ({report['seconds']:.0f} s; slowest {report['slowest_s']:.1f} s)"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if not args.no_results:
        sys.path.insert(0, str(Path(__file__).parent))
        from _common import append_result

        append_result(
            f"Reader fuzzing, {len(results)} seeded cases",
            [
                f"- {bad} misbehaviours (changed, lost, unexpected, timeout, memory); slowest case "
                f"{report['slowest_s']:.1f} s; {report['seconds']:.0f} s in all",
                "",
                format_table(table),
            ],
        )
    sys.exit(1 if bad else 0)


def summarize(results: list[dict]) -> dict:
    total: Counter = Counter()
    by_class: dict[str, Counter] = {}
    for r in results:
        cls = r["mutation"].split("/")[0]
        by_class.setdefault(cls, Counter())[r["outcome"]] += 1
        total[r["outcome"]] += 1
    return {"total": total, "by_class": by_class}


def format_table(table: dict) -> str:
    cols = ("exact", "refused", *BAD_OUTCOMES)
    lines = ["| class | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for cls in sorted(table["by_class"]):
        c = table["by_class"][cls]
        lines.append(f"| {cls} | " + " | ".join(str(c.get(o, 0)) for o in cols) + " |")
    t = table["total"]
    lines.append("| **all** | " + " | ".join(f"**{t.get(o, 0)}**" for o in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
