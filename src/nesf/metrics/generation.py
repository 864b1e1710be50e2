"""The field's generation metrics (the CDVAE protocol): validity, coverage, property distances.

Computed with the libraries the protocol was defined with: pymatgen for structures and
densities, SMACT for charge neutrality and the Pauling electronegativity test, matminer for
CrystalNN site fingerprints and Magpie composition features, scipy for Wasserstein distances.

- structural validity: every interatomic distance (periodic images included) >= 0.5 A and
  cell volume >= 0.1 A^3;
- compositional validity: a SMACT oxidation-state assignment that is charge neutral and passes
  the Pauling electronegativity test (single elements and all-metal compositions are valid);
- coverage: as published, a reference crystal counts as covered when its nearest generated
  crystal by structure (Euclidean distance of site-averaged CrystalNN fingerprints) lies
  within the structure cut-off and its nearest generated crystal by composition (Euclidean
  distance of Magpie features standardised with the protocol's fixed means and deviations,
  ``magpie_scaler.json``; missing features 0) lies within the composition cut-off; the two
  nearest crystals need not be the same one. COV-R is the covered share of the reference set;
  COV-P the share of all generated crystals (those without fingerprints count as uncovered)
  that are covered by the reference set in the same sense;
- Wasserstein distances of density (g/cm^3) and of the number of elements, between up to
  ``n_property`` valid generated crystals (seeded choice) and the reference set.
"""

from __future__ import annotations

import functools
import itertools
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nesf.data.crystal import Crystal, closest_pair
from nesf.metrics.fingerprint_cache import FingerprintCache, crystal_key

#: Crystals fingerprinted between two writes to the cache.
CACHE_BLOCK = 256

#: Published coverage cut-offs (structure, composition) per data set.
PRESETS = {"perov_5": (0.2, 4.0), "carbon_24": (0.2, 4.0), "mp_20": (0.4, 10.0)}


@dataclass
class Fingerprints:
    """Per-crystal features for coverage: ``struct`` ``[N, 61]`` and ``comp`` ``[N, 132]`` (NaN rows: failed)."""

    struct: np.ndarray
    comp: np.ndarray


def structure_valid(crystal: Crystal, cutoff: float = 0.5) -> bool:
    """Every interatomic distance >= ``cutoff`` A and volume >= 0.1 A^3."""
    if crystal.n_atoms == 0 or crystal.volume < 0.1:
        return False
    close = closest_pair(crystal)
    if close is None:  # one atom: its own images must not overlap either
        return float(np.linalg.norm(crystal.lattice, axis=1).min()) >= cutoff
    return close[2] >= cutoff


def composition_valid(crystal: Crystal) -> bool:
    """SMACT charge neutrality with the Pauling test; single elements and all-metal compositions pass.

    An element SMACT knows no oxidation state of (He, Ne, Ar, Rn, At, Pm) cannot be balanced, so
    a compound holding one fails unless it is all metal.
    """
    import smact
    from smact.screening import pauling_test

    if crystal.n_atoms == 0:
        return False
    symbols, counts = np.unique(crystal.symbols, return_counts=True)
    if len(symbols) == 1:
        return True
    gcd = np.gcd.reduce(counts)
    counts = (counts // gcd).tolist()
    elements = [smact.Element(s) for s in symbols]
    if all(s in smact.metals for s in symbols):
        return True
    electronegs = [e.pauling_eneg for e in elements]
    for ox_states in itertools.product(*[e.oxidation_states or [] for e in elements]):
        if sum(o * c for o, c in zip(ox_states, counts)) != 0:
            continue  # not charge neutral with this crystal's stoichiometry
        try:
            if pauling_test(ox_states, electronegs):
                return True
        except TypeError:  # an element without a Pauling electronegativity: the test cannot apply
            return True
    return False


@functools.cache
def _featurizers():  # noqa: ANN202
    from matminer.featurizers.composition import ElementProperty
    from matminer.featurizers.site import CrystalNNFingerprint

    # as published: missing Magpie features stay NaN (set to 0 after standardisation)
    return CrystalNNFingerprint.from_preset("ops"), ElementProperty.from_preset("magpie", impute_nan=False)


def _fingerprint(crystal: Crystal) -> tuple[np.ndarray, np.ndarray]:
    """Site-averaged CrystalNN fingerprint ``[61]`` and Magpie features ``[132]`` of one crystal (NaN: failed)."""
    site_fp, comp_fp = _featurizers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            s = crystal.to_pymatgen()
        except Exception:  # a degenerate generated cell: no fingerprints
            return np.full(61, np.nan), np.full(132, np.nan)
        try:
            struct = np.mean([site_fp.featurize(s, i) for i in range(len(s))], axis=0)
        except Exception:  # degenerate generated cells: no fingerprint
            struct = np.full(61, np.nan)
        try:
            comp = np.asarray(comp_fp.featurize(s.composition), dtype=float)
        except Exception:
            comp = np.full(132, np.nan)
    return struct, comp


def fingerprints(
    crystals: Sequence[Crystal],
    progress: bool = True,
    jobs: int = 1,
    cache: str | Path | FingerprintCache | None = None,
) -> Fingerprints:
    """Site-averaged CrystalNN fingerprints and Magpie features of crystals (NaN rows where they fail).

    Args:
        crystals: the crystals.
        progress: a progress bar.
        jobs: > 1 spreads the crystals over that many processes (the same numbers, in order).
        cache: a :class:`~nesf.metrics.fingerprint_cache.FingerprintCache` or its folder: rows
            found there are not computed again, new rows are stored there every
            ``CACHE_BLOCK`` crystals (a killed run keeps what it finished). None: no cache.
    """
    crystals = list(crystals)
    if cache is not None and not isinstance(cache, FingerprintCache):
        cache = FingerprintCache(cache)
    keys = [crystal_key(c) for c in crystals] if cache is not None else [None] * len(crystals)
    rows: list = [cache.get(k) if cache is not None else None for k in keys]
    todo = [i for i, r in enumerate(rows) if r is None]
    done_before = len(crystals) - len(todo)
    bar = tqdm(desc="fingerprints", unit="crystal", total=len(crystals), initial=done_before, disable=not progress)
    pool = None
    if jobs > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        block = CACHE_BLOCK if cache is not None else max(1, len(todo))
        for start in range(0, len(todo), block):
            part = todo[start : start + block]
            todo_crystals = [crystals[i] for i in part]
            if pool is not None:
                results = pool.map(_fingerprint, todo_crystals, chunksize=16)
            else:
                results = map(_fingerprint, todo_crystals)
            done = []
            for r in results:  # in order, as they come
                done.append(r)
                bar.update(1)
            for i, r in zip(part, done):
                rows[i] = r
            if cache is not None:
                cache.add([keys[i] for i in part], done)
    finally:
        if pool is not None:
            pool.shutdown()
        bar.close()
    if not rows:
        return Fingerprints(np.zeros((0, 61)), np.zeros((0, 132)))
    return Fingerprints(np.array([r[0] for r in rows], dtype=float), np.array([r[1] for r in rows], dtype=float))


@functools.cache
def _magpie_scaler() -> tuple[np.ndarray, np.ndarray]:
    """The protocol's fixed means and deviations of the 132 Magpie features."""
    data = json.loads(resources.files("nesf.metrics").joinpath("magpie_scaler.json").read_text())
    return np.asarray(data["means"], dtype=float), np.asarray(data["stds"], dtype=float)


def coverage(gen: Fingerprints, ref: Fingerprints, struct_cutoff: float, comp_cutoff: float) -> tuple[float, float]:
    """COV-R and COV-P in % (see the module docstring for the published definition)."""
    from scipy.spatial.distance import cdist

    mean, std = _magpie_scaler()
    ok_gen = np.isfinite(gen.struct).all(axis=1)
    ok_ref = np.isfinite(ref.struct).all(axis=1)
    n_gen, n_ref = len(gen.struct), len(ref.struct)
    if not ok_gen.any() or not ok_ref.any():
        return 0.0, 0.0
    gs, rs = gen.struct[ok_gen], ref.struct[ok_ref]
    gc = np.nan_to_num((gen.comp[ok_gen] - mean) / std, nan=0.0)
    rc = np.nan_to_num((ref.comp[ok_ref] - mean) / std, nan=0.0)
    ds, dc = cdist(gs, rs), cdist(gc, rc)  # [G, R]
    covered_ref = (ds.min(axis=0) <= struct_cutoff) & (dc.min(axis=0) <= comp_cutoff)
    covered_gen = (ds.min(axis=1) <= struct_cutoff) & (dc.min(axis=1) <= comp_cutoff)
    recall = 100.0 * covered_ref.sum() / n_ref
    precision = 100.0 * covered_gen.sum() / n_gen
    return float(recall), float(precision)


def generation_metrics(
    generated: Sequence[Crystal],
    reference: Sequence[Crystal],
    preset: str = "perov_5",
    n_property: int = 1000,
    seed: int = 0,
    progress: bool = True,
    jobs: int = 1,
    cache: str | Path | FingerprintCache | None = None,
) -> dict:
    """All metrics of the protocol as one dict (see the module docstring).

    ``jobs``: processes for fingerprints; ``cache``: their disk cache (:func:`fingerprints`).
    """
    from scipy.stats import wasserstein_distance

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not generated or not reference:
        raise ValueError("generation metrics need generated and reference crystals")
    struct_cut, comp_cut = PRESETS[preset]
    s_valid = np.array([structure_valid(c) for c in generated])
    single = all(len(set(c.numbers.tolist())) <= 1 for c in [*generated, *reference])
    c_valid = np.array([composition_valid(c) for c in generated])
    valid = s_valid & c_valid
    if cache is not None and not isinstance(cache, FingerprintCache):
        cache = FingerprintCache(cache)
    gen_fp = fingerprints(generated, progress, jobs, cache)
    ref_fp = fingerprints(reference, progress, jobs, cache)
    recall, precision = coverage(gen_fp, ref_fp, struct_cut, comp_cut)
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(valid)
    if len(idx) > n_property:
        idx = rng.choice(idx, n_property, replace=False)
    chosen = [generated[i] for i in idx]

    def density(c: Crystal) -> float:
        return float(c.to_pymatgen().density)

    def n_elements(c: Crystal) -> int:
        return len(set(c.numbers.tolist()))

    out = {
        "n_generated": len(generated),
        "n_reference": len(reference),
        "preset": preset,
        "struct_cutoff": struct_cut,
        "comp_cutoff": comp_cut,
        "struct_validity_pct": 100.0 * float(s_valid.mean()),
        "comp_validity_pct": None if single else 100.0 * float(c_valid.mean()),
        "validity_pct": 100.0 * float(valid.mean()),
        "cov_recall_pct": recall,
        "cov_precision_pct": precision,
        "n_property": len(chosen),
        "density_emd": float(wasserstein_distance([density(c) for c in chosen], [density(c) for c in reference]))
        if chosen
        else None,
        "n_elements_emd": None
        if single or not chosen
        else float(wasserstein_distance([n_elements(c) for c in chosen], [n_elements(c) for c in reference])),
    }
    return out


__all__ = [
    "PRESETS",
    "composition_valid",
    "coverage",
    "fingerprints",
    "generation_metrics",
    "structure_valid",
]
