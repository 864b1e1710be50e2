"""Resolution study: what a voxel grid (ICSG3D-style autoencoder) and a structure field (NeSF) cost
and allow at increasing resolution.

Voxel model, grids d = 16, 32, 48, 64 over the cell plus a 25 % margin (``nesf.voxel``):

* parameters of the default architecture (VAE + lattice head + species U-Net);
* one training step, batch 8: seconds and memory (see "Memory" below);
* decoding one crystal: the networks (VAE decoder, lattice head, U-Net) in seconds and memory,
  plus the atom extraction (peaks, merging, votes), timed on true densities;
* the position error the resolution allows, MEASURED: the TRUE density and label grids of the
  test crystals are voxelised and atoms extracted from them (a perfect autoencoder's output);
  for reference the RMS error of snapping atoms to voxel centres, h / 2 for a voxel edge h.

NeSF:

* exact-field reconstruction (``reconstruct_exact``, periodic frame) at particle-grid spacings
  0.5, 0.25, 0.1 A: errors and seconds per crystal;
* decoding one crystal (the subset's median-volume cell) with a freshly initialised
  default-preset ``NeSFModel`` at those spacings, as ``nesf.api.NeSF`` decodes (same settings,
  the cell given): seconds and memory. An untrained field does not converge, so all 64 particle
  steps run: an upper bound of a trained model's decoding time.

Networks are freshly initialised: cost does not depend on the weights; accuracy of trained
models is not what this measures.

Memory: every cost is measured in a fresh subprocess (one per model and resolution) with
glibc's default allocator (``NESF_NO_MALLOPT=1``). Just before the measured operation the
kernel's peak-RSS counter is reset (``echo 5 > /proc/self/clear_refs``) and the resident set
read (``VmRSS``); afterwards the peak (``VmHWM``) is read: the operation's memory is the peak
minus the resident set before it, i.e. what it added at its high point (activations,
gradients, optimiser state, particles). Where the counter cannot be reset (not Linux) the
``ru_maxrss`` difference is used, a lower bound. The process's overall peak (``ru_maxrss``:
interpreter, torch, data and model included) is reported too. tracemalloc does not see torch's
allocations and is not used.

    python benchmarks/resolution_study.py [--n-crystals 40] [--json OUT.json] [--png OUT.png]
        [--sizes 16 32 48 64] [--spacings 0.5 0.25 0.1] [--threads 1] [--data PATH] [--record]

Data: ``icsg3d/test.extxyz`` of the shared datasets (``NESF_DATA_DIR`` or ``../shared/data``);
the subset is ``--n-crystals`` crystals evenly spaced through the file.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import append_result, data_dir, machine, write_json

HERE = Path(__file__).resolve()
METRIC_KEYS = (
    "atom_count_error_pct",
    "position_error_actual",
    "position_error_detected",
    "species_error_actual_pct",
    "species_error_detected_pct",
)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mb(key: str) -> float:
    """A memory line of /proc/self/status (``VmRSS``, ``VmHWM``), MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(key)


class OperationMemory:
    """Memory an operation adds at its high point, MB (see the module docstring).

    ``with OperationMemory() as m: ...`` then ``m.added_mb`` (peak minus resident before) and
    ``m.method`` (``"VmHWM reset"`` or the fallback ``"ru_maxrss difference (lower bound)"``).
    """

    def __enter__(self) -> OperationMemory:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak-RSS counter to the current resident set
            self.method = "VmHWM reset"
            self.before = _status_mb("VmRSS")
        except OSError:
            self.method = "ru_maxrss difference (lower bound)"
            self.before = peak_rss_mb()
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_mb("VmHWM") if self.method == "VmHWM reset" else peak_rss_mb()
        self.added_mb = peak - self.before


def load_subset(path: str, n: int) -> list:
    """``n`` crystals evenly spaced through the file, in standard orientation."""
    from nesf.data.readers import read_crystals

    crystals = read_crystals(path)
    idx = np.unique(np.linspace(0, len(crystals) - 1, min(n, len(crystals))).round().astype(int))
    return [crystals[i].standardized() for i in idx]


def file_vocab(path: str):  # noqa: ANN201
    from nesf.data.readers import read_crystals
    from nesf.data.vocab import SpeciesVocab

    return SpeciesVocab.from_crystals(read_crystals(path))


def median_cell(crystals: list):  # noqa: ANN201
    order = np.argsort([c.volume for c in crystals], kind="stable")
    return crystals[int(order[len(order) // 2])]


# ---------------------------------------------------------------------- children (fresh processes)
def child_voxel_train(args: argparse.Namespace) -> dict:
    """One (or ``--train-steps``) training step(s) of a fresh voxel model, batch ``--batch``."""
    import torch

    from nesf.voxel.model import VoxelConfig, count_parameters
    from nesf.voxel.train import VoxelTrainer

    crystals = load_subset(args.data, args.n_crystals)
    train = (crystals * args.batch)[: args.batch]
    cfg = VoxelConfig(d=args.d, batch_size=args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = VoxelTrainer(train, train[:1], tmp, cfg, seed=0, progress=False, vocab=file_vocab(args.data))
        index = torch.arange(args.batch)
        times = []
        with OperationMemory() as mem:
            for _ in range(args.train_steps):
                t0 = time.perf_counter()
                trainer.train_step(index)
                times.append(time.perf_counter() - t0)
    return {
        "parameters": count_parameters(trainer.model),
        "parameters_vae": count_parameters(trainer.model.vae),
        "parameters_unet": count_parameters(trainer.model.unet),
        "train_step_seconds": times[-1],
        "train_seconds_per_crystal": times[-1] / args.batch,
        "train_step_memory_mb": mem.added_mb,
        "train_process_peak_mb": peak_rss_mb(),
        "memory_method": mem.method,
    }


def child_voxel_decode(args: argparse.Namespace) -> dict:
    """Decoding networks of a fresh voxel model for one latent (VAE decoder, lattice head, U-Net)."""
    import torch

    from nesf.voxel.api import VoxelAutoencoder
    from nesf.voxel.model import VoxelConfig, VoxelModel

    vocab = file_vocab(args.data)
    torch.manual_seed(0)
    model = VoxelAutoencoder(VoxelModel(VoxelConfig(d=args.d), len(vocab)), vocab)
    z = torch.randn(1, model.latent_dim, generator=torch.Generator().manual_seed(0))
    with OperationMemory() as mem:
        t0 = time.perf_counter()
        model.decode_grids(z)
        first = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model.decode_grids(z)
        times.append(time.perf_counter() - t0)
    return {
        "decode_network_seconds": statistics.median(times),
        "decode_network_first_seconds": first,
        "decode_memory_mb": mem.added_mb,
        "decode_process_peak_mb": peak_rss_mb(),
        "memory_method": mem.method,
    }


def child_nesf_decode(args: argparse.Namespace) -> dict:
    """A fresh default-preset NeSF model decodes the median-volume cell at ``--spacing``."""
    from dataclasses import replace

    import torch

    from nesf.api import NEURAL_SETTINGS
    from nesf.data.batch import CrystalBatch
    from nesf.models.autoencoder import NeSFModel
    from nesf.models.config import get_preset
    from nesf.reconstruction.reconstruct import reconstruct
    from nesf.voxel.model import count_parameters

    crystal = median_cell(load_subset(args.data, args.n_crystals))
    vocab = file_vocab(args.data)
    model_cfg, _ = get_preset("default")
    torch.manual_seed(0)
    model = NeSFModel(model_cfg, len(vocab)).eval()
    batch = CrystalBatch.from_crystals([crystal], vocab)
    settings = replace(NEURAL_SETTINGS, grid_spacing=args.spacing, batch_size=1)
    lattice = torch.as_tensor(crystal.lattice, dtype=torch.float32).unsqueeze(0)
    with torch.no_grad():
        z, _, _ = model.encode(batch.cart, batch.frac, batch.species, batch.mask, batch.lattice_params)
        with OperationMemory() as mem:
            t0 = time.perf_counter()
            atoms = reconstruct(model.bind(z, lattice), 1, settings, None)
            seconds = time.perf_counter() - t0
    return {
        "parameters": count_parameters(model),
        "decode_seconds": seconds,
        "decode_memory_mb": mem.added_mb,
        "decode_process_peak_mb": peak_rss_mb(),
        "memory_method": mem.method,
        "decode_cell": crystal.id,
        "decode_cell_volume_A3": crystal.volume,
        "particles_initial": int(round(crystal.volume / args.spacing**3)),
        "atoms_found_by_untrained_field": len(atoms[0].cart),
    }


CHILDREN = {"voxel-train": child_voxel_train, "voxel-decode": child_voxel_decode, "nesf-decode": child_nesf_decode}


def run_child(kind: str, args: argparse.Namespace, **extra: object) -> dict:
    """Run one measurement in a fresh interpreter; returns its JSON result."""
    cmd = [sys.executable, str(HERE), "--child", kind, "--data", args.data, "--n-crystals", str(args.n_crystals)]
    cmd += ["--threads", str(args.threads), "--batch", str(args.batch), "--train-steps", str(args.train_steps)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    env = {**os.environ, "NESF_NO_MALLOPT": "1", "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {extra} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- in-process accuracy
def voxel_accuracy(crystals: list, vocab, d: int) -> dict:  # noqa: ANN001
    """Atoms extracted from the TRUE density and labels at grid size ``d``, against the truth."""
    from nesf.metrics.paper import paper_metrics
    from nesf.voxel.extract import extract_crystals
    from nesf.voxel.grid import voxel_size, voxelize
    from nesf.voxel.model import VoxelConfig

    cfg = VoxelConfig(d=d)
    t0 = time.perf_counter()
    density, labels = voxelize(crystals, d, cfg.sigma_factor, cfg.label_factor, vocab)
    t1 = time.perf_counter()
    lattices = np.stack([c.lattice for c in crystals])
    pred = extract_crystals(density.numpy(), lattices, vocab, labels.numpy(), ids=[c.id for c in crystals])
    t2 = time.perf_counter()
    metrics = paper_metrics(crystals, pred, "periodic")
    edge = np.mean([voxel_size(c.lattice, d).mean() for c in crystals])
    return {
        **{k: float(metrics[k]) for k in METRIC_KEYS},
        "voxel_edge_mean_A": float(edge),
        "snap_rms_error_A": float(edge / 2.0),
        "voxelize_seconds_per_crystal": (t1 - t0) / len(crystals),
        "extract_seconds_per_crystal": (t2 - t1) / len(crystals),
    }


def exact_accuracy(crystals: list, spacing: float) -> dict:
    """Exact-field reconstruction at particle spacing ``spacing`` (periodic frame)."""
    from nesf.metrics.paper import paper_metrics
    from nesf.reconstruction.exact import reconstruct_exact
    from nesf.reconstruction.settings import ReconstructionSettings

    t0 = time.perf_counter()
    pred = reconstruct_exact(crystals, "periodic", ReconstructionSettings(grid_spacing=spacing, batch_size=8))
    seconds = time.perf_counter() - t0
    metrics = paper_metrics(crystals, pred, "periodic")
    return {**{k: float(metrics[k]) for k in METRIC_KEYS}, "exact_seconds_per_crystal": seconds / len(crystals)}


# ---------------------------------------------------------------------- report
def table(result: dict) -> str:
    """Markdown table of the study."""
    head = (
        "| model | resolution | parameters | train step, batch 8 [s] | train step memory [MB] "
        "| decode 1 crystal [s] | decode memory [MB] | atom-count error [%] "
        "| position error actual / detected [A] | species error [%] |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in result["voxel"]:
        acc = r["true_density"]
        lines.append(
            f"| voxel d={r['d']} | {acc['voxel_edge_mean_A']:.3f} A voxel | {r['parameters'] / 1e6:.2f} M "
            f"| {r['train_step_seconds']:.2f} | {r['train_step_memory_mb']:.0f} "
            f"| {r['decode_seconds_per_crystal']:.3f} | {r['decode_memory_mb']:.0f} "
            f"| {acc['atom_count_error_pct']:.1f} "
            f"| {acc['position_error_actual']:.4f} / {acc['position_error_detected']:.4f} "
            f"| {acc['species_error_actual_pct']:.1f} |"
        )
    for r in result["nesf"]:
        acc = r["exact_field"]
        lines.append(
            f"| NeSF | {r['spacing']} A particles | {r['parameters'] / 1e6:.2f} M | n/a | n/a "
            f"| {r['decode_seconds']:.2f} | {r['decode_memory_mb']:.0f} | {acc['atom_count_error_pct']:.1f} "
            f"| {acc['position_error_actual']:.1e} / {acc['position_error_detected']:.1e} "
            f"| {acc['species_error_actual_pct']:.1f} |"
        )
    return "\n".join(lines)


def plot(result: dict, path: str) -> None:
    """Position error, decoding memory and decoding time against resolution (Angstrom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from nesf.io.writers import atomic_write

    vox, nes = result["voxel"], result["nesf"]
    vx = [r["true_density"]["voxel_edge_mean_A"] for r in vox]
    nx = [r["spacing"] for r in nes]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.plot(vx, [r["true_density"]["position_error_actual"] for r in vox], "o-", label="voxel: true density, measured")
    ax.plot(vx, [r["true_density"]["snap_rms_error_A"] for r in vox], "k:", label="voxel: snap to centre (h/2)")
    floor = [max(r["exact_field"]["position_error_actual"], 1e-8) for r in nes]
    ax.plot(nx, floor, "s-", label="NeSF: exact field")
    ax.set_xlabel("voxel edge / particle spacing [A]")
    ax.set_ylabel("position error, actual [A]")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    for ax, key, nkey, label in (
        (axes[1], "decode_memory_mb", "decode_memory_mb", "decoding memory, one crystal [MB]"),
        (axes[2], "decode_seconds_per_crystal", "decode_seconds", "decoding time, one crystal [s]"),
    ):
        ax.plot(
            vx, [max(r[key], 1e-3) for r in vox], "o-", label="voxel (d = " + ", ".join(str(r["d"]) for r in vox) + ")"
        )
        ax.plot(nx, [max(r[nkey], 1e-3) for r in nes], "s-", label="NeSF (untrained field, 64 steps)")
        ax.set_xlabel("voxel edge / particle spacing [A]")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ticks = [0.1, 0.15, 0.2, 0.3, 0.5]
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.invert_xaxis()
        ax.grid(alpha=0.3)
    fig.suptitle(f"resolution study, {result['n_crystals']} icsg3d test crystals, {result['threads']} CPU thread(s)")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="extxyz file (default: icsg3d/test.extxyz of the shared data)")
    ap.add_argument("--n-crystals", type=int, default=40, help="crystals of the subset (default 40)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 48, 64], help="voxel grid sizes d")
    ap.add_argument("--spacings", type=float, nargs="+", default=[0.5, 0.25, 0.1], help="NeSF particle spacings, A")
    ap.add_argument("--batch", type=int, default=8, help="training batch of the voxel model (default 8)")
    ap.add_argument("--train-steps", type=int, default=1, help="timed training steps; the last one is reported")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--png", default=None, help="write the plot here")
    ap.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    ap.add_argument("--replot", metavar="IN.json", help="only redraw --png and the table from an earlier --json")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--d", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--spacing", type=float, default=0.5, help=argparse.SUPPRESS)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.data is None:
        args.data = str(data_dir() / "nesf_paper" / "icsg3d" / "test.extxyz")
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    if args.replot:
        result = json.loads(Path(args.replot).read_text())
        if args.png:
            plot(result, args.png)
        print(table(result))
        return

    t_start = time.perf_counter()
    crystals = load_subset(args.data, args.n_crystals)
    vocab = file_vocab(args.data)
    result: dict = {
        "data": os.path.relpath(args.data, HERE.parents[1]),
        "n_crystals": len(crystals),
        "threads": args.threads,
        "machine": machine(),
        "note": "freshly initialised networks for cost; accuracy from TRUE voxel densities and EXACT fields",
        "voxel": [],
        "nesf": [],
    }
    for d in args.sizes:
        print(f"voxel d={d} ...", file=sys.stderr, flush=True)
        row = {"d": d, **run_child("voxel-train", args, d=d), **run_child("voxel-decode", args, d=d)}
        row["true_density"] = voxel_accuracy(crystals, vocab, d)
        row["decode_seconds_per_crystal"] = (
            row["decode_network_seconds"] + row["true_density"]["extract_seconds_per_crystal"]
        )
        result["voxel"].append(row)
    for spacing in args.spacings:
        print(f"NeSF spacing {spacing} A ...", file=sys.stderr, flush=True)
        row = {"spacing": spacing, **run_child("nesf-decode", args, spacing=spacing)}
        row["exact_field"] = exact_accuracy(crystals, spacing)
        result["nesf"].append(row)
    result["seconds_total"] = time.perf_counter() - t_start
    text = table(result)
    result["table"] = text
    write_json(args.json, result)
    if args.png:
        plot(result, args.png)
    print()
    print(text)
    if args.record:
        append_result("Resolution study: voxel autoencoder vs NeSF", ["", text])
    print(f"\npeak memory of this (parent) process: {peak_rss_mb():.0f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
