"""Exact reconstruction of the real datasets (../shared/data) in both frames."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from nesf.data.crystal import Crystal
from nesf.data.readers import read_crystals
from nesf.metrics.matcher import match_metrics
from nesf.metrics.paper import paper_metrics
from nesf.reconstruction.exact import reconstruct_exact

#: dataset -> number of leading structures used (None: all)
DATASETS = {
    "nesf_paper/icsg3d/test.extxyz": None,
    "nesf_paper/lim_l6/test.extxyz": None,
    "nesf_paper/ybco13/all.extxyz": None,
    "cdvae/perov_5/val.csv": 300,
    "cdvae/carbon_24/val.csv": 150,
}


def _head_csv(src: Path, n: int, dst: Path) -> Path:
    """Copy the header and first ``n`` rows of a CSV (parsing all CIFs of the full file is slow)."""
    csv.field_size_limit(1 << 28)
    with open(src, newline="") as fin, open(dst, "w", newline="") as fout:
        reader = csv.DictReader(fin)
        writer = csv.DictWriter(fout, fieldnames=reader.fieldnames)
        writer.writeheader()
        for i, row in enumerate(reader):
            if i >= n:
                break
            writer.writerow(row)
    return dst


@pytest.fixture(scope="module")
def datasets(shared_data: Path, tmp_path_factory) -> dict[str, list[Crystal]]:
    tmp = tmp_path_factory.mktemp("shared_heads")
    out = {}
    for name, n in DATASETS.items():
        path = shared_data / name
        if not path.is_file():
            pytest.fail(f"missing dataset file {path}")
        if n is not None and path.suffix == ".csv":
            path = _head_csv(path, n, tmp / path.name)
        crystals = read_crystals(path)
        out[name] = crystals[:n] if n is not None else crystals
    return out


@pytest.fixture(scope="module")
def reconstructions(datasets) -> dict:
    """(dataset, frame) -> (true crystals, reconstructed crystals), computed once."""
    cache: dict = {}

    def get(name: str, frame: str):
        if (name, frame) not in cache:
            true = datasets[name]
            if frame == "periodic":
                true = [c.wrapped() for c in true]
            cache[name, frame] = (true, reconstruct_exact(true, frame))
        return cache[name, frame]

    return get


def test_dataset_sizes(datasets):
    sizes = {k: len(v) for k, v in datasets.items()}
    assert sizes == {
        "nesf_paper/icsg3d/test.extxyz": 360,
        "nesf_paper/lim_l6/test.extxyz": 301,
        "nesf_paper/ybco13/all.extxyz": 100,
        "cdvae/perov_5/val.csv": 300,
        "cdvae/carbon_24/val.csv": 150,
    }


@pytest.mark.slow
@pytest.mark.parametrize("frame", ["periodic", "paper"])
@pytest.mark.parametrize("name", list(DATASETS))
def test_exact_reconstruction_of_dataset(name, frame, reconstructions):
    true, pred = reconstructions(name, frame)
    m = paper_metrics(true, pred, frame)
    wrong = [t.id for t, p in zip(true, pred) if t.n_atoms != p.n_atoms]
    assert m["atom_count_error_pct"] == 0, f"{len(wrong)} crystals with a wrong atom count, e.g. {wrong[:5]}"
    assert m["position_error_actual"] < 1e-3 and m["position_error_detected"] < 1e-3, m
    assert m["species_error_actual_pct"] == 0 and m["species_error_detected_pct"] == 0, m


@pytest.mark.slow
def test_ybco13_structure_matcher(reconstructions):
    true, pred = reconstructions("nesf_paper/ybco13/all.extxyz", "periodic")
    m = match_metrics(true, pred, n_jobs=2)
    assert m["match_rate_pct"] == 100.0
    assert m["rmse"] < 1e-3
