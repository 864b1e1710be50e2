"""Large sets: encode streams its input chunk by chunk, resumes a killed run exactly, and shards over processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nesf.cli import main
from nesf.data.crystal import Crystal
from nesf.io.writers import write_extxyz

REPO = Path(__file__).resolve().parents[2]
#: Crystals in the test file and crystals per chunk: 8 chunks, so a run can be stopped partway.
N, CHUNK = 16, "2"
FAST = ["--model", "perov_5", "--refine-steps", "2", "--restarts", "0", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def many(tmp_path_factory, classic):
    """16 crystals (one classic crystal under 16 ids) in one extxyz file."""
    small = [c for c in classic if c.n_atoms <= 12 and set(c.numbers) <= {8, 11, 12, 17, 20, 22, 38}]
    small = small or [c for c in classic if c.n_atoms <= 12]
    crystals = [Crystal(c.lattice, c.cart, c.numbers, f"{c.id}-{k}") for k in range(N) for c in small[:1]]
    crystals = [Crystal(c.lattice, c.cart, c.numbers, f"x{k:03d}") for k, c in enumerate(crystals)]
    path = tmp_path_factory.mktemp("many") / "many.extxyz"
    write_extxyz(path, crystals)
    return path


@pytest.fixture(scope="module")
def reference(many, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.npz"
    assert main(["encode", str(many), "--out", str(out), "--chunk-size", CHUNK, *FAST]) == 0
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def _run(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "nesf", *args], env=env, stderr=subprocess.PIPE, text=True)


def _kill_after(args: list[str], partial: Path, chunks: int) -> int:
    """Start ``nesf ARGS`` in a child process, SIGKILL it once ``partial`` holds ``chunks`` chunks; chunks left."""
    proc = _run(args)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(partial.glob("chunk-*.npz"))) < chunks:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(list(partial.glob("chunk-*.npz")))


def test_encode_writes_the_model_and_every_code_in_input_order(reference):
    assert reference["latents"].shape == (N, 192)
    assert list(reference["ids"]) == [f"x{k:03d}" for k in range(N)]
    assert str(reference["model"]) == "perov_5" and len(str(reference["model_sha256"])) == 64


def test_a_killed_encode_resumes_to_exactly_the_uninterrupted_codes(many, reference, tmp_path):
    out = tmp_path / "z.npz"
    partial = tmp_path / "z.npz.partial"
    done = _kill_after(["encode", str(many), "--out", str(out), "--chunk-size", CHUNK, *FAST], partial, 2)
    assert 2 <= done < 8 and not out.exists(), "the run was not stopped partway"
    # a half-done run is not silently restarted or overwritten
    assert main(["encode", str(many), "--out", str(out), "--chunk-size", CHUNK, *FAST]) == 2
    assert main(["encode", str(many), "--out", str(out), "--chunk-size", "8", "--resume", *FAST]) == 2
    assert main(["encode", str(many), "--out", str(out), "--chunk-size", CHUNK, "--resume", *FAST]) == 0
    assert not partial.exists()
    with np.load(out) as data:
        assert np.array_equal(data["latents"], reference["latents"])
        assert list(data["ids"]) == list(reference["ids"])


def test_two_processes_give_the_one_process_codes(many, reference, tmp_path):
    out = tmp_path / "two.npz"
    proc = _run(["encode", str(many), "--out", str(out), "--chunk-size", CHUNK, "--jobs", "2", *FAST])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    with np.load(out) as data:
        assert np.array_equal(data["latents"], reference["latents"])
        assert list(data["ids"]) == list(reference["ids"])


def _reconstruct_args(many: Path, out: Path, *extra: str) -> list[str]:
    csv = out.with_name(out.name + ".csv")
    return ["reconstruct", str(many), "--out", str(out), "--csv", str(csv), "--chunk-size", CHUNK, *FAST, *extra]


@pytest.fixture(scope="module")
def reconstructed(many, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "ref"
    assert main(_reconstruct_args(many, out)) == 0
    return out


def _folder(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def test_reconstruct_writes_every_crystal_in_input_order(reconstructed):
    files = _folder(reconstructed)
    assert len([n for n in files if n.endswith(".cif")]) == N
    ids = [
        line.split("material_id=")[1].split()[0].strip('"')
        for line in files["all.extxyz"].splitlines()
        if "material_id=" in line
    ]
    assert ids == [f"x{k:03d}" for k in range(N)]
    rows = reconstructed.with_name("ref.csv").read_text().splitlines()
    assert len(rows) == N + 1 and rows[1].startswith("x000,")


def test_a_killed_reconstruct_resumes_to_exactly_the_uninterrupted_cifs(many, reconstructed, tmp_path):
    out = tmp_path / "rec"
    partial = tmp_path / "rec.partial"
    done = _kill_after(_reconstruct_args(many, out), partial, 2)
    assert 2 <= done < 8 and not out.exists(), "the run was not stopped partway"
    assert main(_reconstruct_args(many, out)) == 2  # a half-done run is neither restarted nor overwritten
    assert main(_reconstruct_args(many, out, "--resume")) == 0
    assert not partial.exists()
    assert _folder(out) == _folder(reconstructed)
    assert out.with_name("rec.csv").read_text() == reconstructed.with_name("ref.csv").read_text()


def test_a_killed_evaluate_resumes_to_exactly_the_uninterrupted_table(many, tmp_path):
    def args(name: str, *extra: str) -> list[str]:
        js, csv = tmp_path / f"{name}.json", tmp_path / f"{name}.csv"
        return ["evaluate", str(many), "--json", str(js), "--csv", str(csv), "--chunk-size", CHUNK, *FAST, *extra]

    assert main(args("ref")) == 0
    partial = tmp_path / "cut.json.partial"
    _kill_after(args("cut"), partial, 2)
    assert partial.is_dir() and not (tmp_path / "cut.json").exists()
    assert main(args("cut", "--resume")) == 0
    assert (tmp_path / "cut.csv").read_text() == (tmp_path / "ref.csv").read_text()
    ref, cut = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("ref", "cut"))
    timing = {"seconds", "seconds_per_structure"}
    assert {k: v for k, v in cut.items() if k not in timing} == {k: v for k, v in ref.items() if k not in timing}
    assert len(ref["structures"]) == N and ref["n_structures"] == N


def test_two_processes_evaluate_like_one(many, tmp_path):
    out = {n: tmp_path / f"{n}.csv" for n in ("one", "two")}
    base = ["evaluate", str(many), "--chunk-size", CHUNK, *FAST]
    assert main([*base, "--csv", str(out["one"])]) == 0
    proc = _run([*base, "--csv", str(out["two"]), "--jobs", "2"])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert out["two"].read_text() == out["one"].read_text()


def test_a_killed_sample_resumes_to_exactly_the_uninterrupted_samples(tmp_path):
    def args(name: str, *extra: str) -> list[str]:
        out = tmp_path / name
        return [
            "sample",
            "--model",
            "perov_5",
            "--n",
            "32",
            "--out",
            str(out),
            "--chunk-size",
            "4",
            "--grid",
            "0",
            "--threads",
            "1",
            "--quiet",
            *extra,
        ]

    assert main(args("ref")) == 0
    partial = tmp_path / "cut.partial"
    _kill_after(args("cut"), partial, 2)
    assert partial.is_dir() and not (tmp_path / "cut").exists(), "the run was not stopped partway"
    assert main(args("cut")) == 2  # a half-done run is neither restarted nor overwritten
    assert main(args("cut", "--resume")) == 0
    assert _folder(tmp_path / "cut") == _folder(tmp_path / "ref")
    assert json.loads((tmp_path / "ref" / "summary.json").read_text())["n_requested"] == 32


def test_evaluate_without_outputs_prints_and_leaves_nothing(many, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", str(many), "--no-match", "--chunk-size", "16", *FAST]) == 0
    assert "structures" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    # resuming and several processes need an output beside which to keep the chunks
    assert main(["evaluate", str(many), "--resume", *FAST]) == 2
    assert main(["evaluate", str(many), "--jobs", "2", *FAST]) == 2


@pytest.mark.parametrize("extra", [[], ["--n-elements", "4", "--n", "8"]], ids=["one-code-each", "four-elements"])
def test_two_processes_sample_like_one(tmp_path, extra):
    # also: nesf's options pass through torchrun untouched (sample's --n is no abbreviation of --nnodes);
    # with a number of elements each chunk draws its own codes, so any split of the chunks gives the same samples
    base = ["sample", "--model", "perov_5", "--n", "16", "--chunk-size", "4", "--grid", "0", "--threads", "1", *extra]
    assert main([*base, "--out", str(tmp_path / "one"), "--quiet"]) == 0
    proc = _run([*base, "--out", str(tmp_path / "two"), "--jobs", "2", "--quiet"])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert _folder(tmp_path / "two") == _folder(tmp_path / "one")
