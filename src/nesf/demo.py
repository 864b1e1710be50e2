"""``nesf demo``: round-trip well-known crystals through a shipped model and draw the result.

Everything the demo needs ships with the package (the model's weights; the crystals are built
from their space groups by :func:`nesf.data.examples.demo_crystals`), so it runs offline on a
fresh install.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nesf.data.crystal import Crystal

#: The shipped model the demo uses unless told otherwise.
DEMO_MODEL = "lim_l6"


def _field_plane(crystal: Crystal) -> tuple[int, float]:
    """A c-plane through the first atom, so the slice shows arrows converging on atoms."""
    return 2, float(crystal.frac[0, 2] % 1.0)


def plot_demo(
    model,  # noqa: ANN001 - nesf.api.NeSF
    pairs: Sequence[tuple[Crystal, Crystal]],
    rms: Sequence[float | None],
    path: str | Path,
    title: str,
) -> Path:
    """One row per crystal: input and reconstruction (3D views) and a slice of the learned field.

    Field arrows are drawn at half length: each points halfway to the atom the network says is nearest.
    """
    from nesf.viz.plots import draw_atoms_3d, draw_field_slice, pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(len(pairs), 3, figsize=(13.5, 4.1 * len(pairs)), squeeze=False)
    for r, ((true, pred), err) in enumerate(zip(pairs, rms)):
        verdict = "matched" if err is not None else "not matched"
        if err is not None:
            verdict += f", RMSE {err:.3f}"
        draw_atoms_3d(axes[r, 0], true, f"{true.id}: input {true.formula} ({true.n_atoms} atoms)")
        label = pred.formula if pred.n_atoms else "empty"
        draw_atoms_3d(axes[r, 1], pred, f"reconstruction: {label} ({pred.n_atoms} atoms)\n{verdict}")
        axes[r, 1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        z = model.encode_crystals([true])
        lattice = torch.as_tensor(true.lattice, dtype=torch.float32, device=model.device).unsqueeze(0)
        plane = _field_plane(true)
        draw_field_slice(
            axes[r, 2],
            model.model.bind(z, lattice),
            true,
            model.vocab.symbols,
            plane,
            n=18,
            arrow_scale=0.5,
            title=f"learned field, plane c = {plane[1]:.2f} (arrows: position, colour: species)",
        )
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def run_demo(
    out_dir: str | Path = "nesf-demo",
    model_name: str = DEMO_MODEL,
    n_plot: int = 4,
    progress: bool = True,
) -> dict:
    """Round-trip the demo crystals; print a table; write CIFs, an extxyz, metrics JSON and a PNG.

    Args:
        out_dir: output folder (created).
        model_name: shipped model name or checkpoint path.
        n_plot: crystals drawn in ``demo.png``.
        progress: progress bar while decoding.

    Returns:
        The metrics dict (also written to ``OUT/metrics.json``).
    """
    from nesf.api import NeSF
    from nesf.data.examples import demo_crystals
    from nesf.io.writers import safe_filename, write_cif, write_extxyz, write_json
    from nesf.metrics.matcher import match_rmse
    from nesf.metrics.report import evaluate_reconstruction, format_table

    t_start = time.perf_counter()
    out = Path(out_dir)
    model = NeSF.load(model_name)
    crystals = [c for c in model.prepare(demo_crystals()) if all(z in model.vocab.numbers for z in c.numbers)]
    if not crystals:
        raise ValueError(f"model {model_name}: none of the demo crystals' elements are in its vocabulary")
    t0 = time.perf_counter()
    pred = model.reconstruct_crystals(crystals, progress=progress)
    seconds = time.perf_counter() - t0
    metrics = evaluate_reconstruction(crystals, pred, model.frame, match=False)
    rms = match_rmse(crystals, pred, n_jobs=1)
    found = [r for r in rms if r is not None]
    metrics["match_rate_pct"] = 100.0 * len(found) / len(crystals)
    metrics["rmse"] = float(np.mean(found)) if found else float("nan")
    metrics["seconds"] = seconds
    metrics["seconds_per_structure"] = seconds / len(crystals)

    print(format_table(metrics, title=f"demo: {len(crystals)} well-known crystals through model '{model_name}'"))
    print()
    print(f"{'crystal':<20} {'input':<10} {'reconstruction':<16} {'atoms':>7}  StructureMatcher")
    for c, p, r in zip(crystals, pred, rms):
        verdict = f"match, RMSE {r:.4f}" if r is not None else "no match"
        print(f"{c.id:<20} {c.formula:<10} {(p.formula or '-'):<16} {c.n_atoms:>3}/{p.n_atoms:<3}  {verdict}")

    out.mkdir(parents=True, exist_ok=True)
    for sub, items in (("inputs", crystals), ("reconstructions", pred)):
        (out / sub).mkdir(exist_ok=True)
        for c in items:
            write_cif(out / sub / f"{safe_filename(c.id)}.cif", c)
    write_extxyz(out / "reconstructions.extxyz", pred)
    per_crystal = [
        {
            "id": c.id,
            "input": c.formula,
            "reconstruction": p.formula,
            "atoms_in": c.n_atoms,
            "atoms_out": p.n_atoms,
            "rmse": r,
        }
        for c, p, r in zip(crystals, pred, rms)
    ]
    shown = list(range(min(n_plot, len(crystals))))
    png = plot_demo(
        model,
        [(crystals[i], pred[i]) for i in shown],
        [rms[i] for i in shown],
        out / "demo.png",
        title=f"NeSF autoencoder '{model_name}': input vs reconstruction, and the learned structure field",
    )
    result = {"model": str(model_name), **metrics, "crystals": per_crystal}
    write_json(out / "metrics.json", result)
    print(
        f"\nwrote {out}/inputs/*.cif, {out}/reconstructions/*.cif, reconstructions.extxyz, metrics.json and {png.name}"
        f" ({time.perf_counter() - t_start:.1f} s)"
    )
    return result


__all__ = ["DEMO_MODEL", "plot_demo", "run_demo"]
