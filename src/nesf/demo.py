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

from nesf import DEFAULT_MODEL
from nesf.data.crystal import Crystal

#: The shipped model the demo uses unless told otherwise (the general one).
DEMO_MODEL = DEFAULT_MODEL


def _field_plane(crystal: Crystal) -> tuple[int, float]:
    """A c-plane through the first atom, so the slice shows arrows converging on atoms."""
    return 2, float(crystal.frac[0, 2] % 1.0)


def plot_demo(
    model,  # noqa: ANN001 - nesf.api.NeSF
    pairs: Sequence[tuple[Crystal, Crystal]],
    rms: Sequence[float | None],
    path: str | Path,
    title: str,
    n_fields: int = 3,
    per_row: int = 3,
) -> Path:
    """Every crystal's input and reconstruction side by side (same view), and slices of learned fields.

    A grid of equal panels: ``per_row`` crystals per row, each as two 3D views (input,
    reconstruction, in the input's cell and origin, atoms wrapped, periodic images on the cell's
    faces, edges and corners) with one species key under the pair; then a row of ``n_fields``
    slices of the learned field of the first crystals (arrows at half length: each points
    halfway to the atom the network says is nearest; colour: the species field; beneath: the
    distance to that atom). One palette for the whole picture (:func:`nesf.viz.plots.picture_colors`).
    """
    from nesf.viz.plots import (
        add_panel,
        draw_atoms_3d,
        draw_field_slice,
        picture_colors,
        pyplot,
        save_figure,
        species_key_below,
    )

    plt = pyplot()
    n = len(pairs)
    rows = -(-n // per_row)
    n_fields = min(n_fields, n)
    panel, above, below, gap = 2.1, 0.5, 0.45, 0.35  # inches: a 3D view, its title, its key, between pairs
    field, field_above, field_below = 3.0, 0.9, 0.85  # the field slices' panels
    header = 0.45
    width = per_row * (2 * panel + gap) + gap
    height = header + rows * (above + panel + below) + ((field_above + field + field_below) if n_fields else 0.0)
    fig = plt.figure(figsize=(width, height))
    seen = [model.field_of(pairs[k][0]) for k in range(n_fields)]
    colors = picture_colors(*[c for pair in pairs for c in pair])
    for k, ((true, pred), err) in enumerate(zip(pairs, rms)):
        r, c = divmod(k, per_row)
        left, top = gap + c * (2 * panel + gap), header + r * (above + panel + below) + above
        ax_in, ax_out = add_panel(fig, left, top, panel, panel), add_panel(fig, left + panel, top, panel, panel)
        verdict = "no match" if err is None else f"match, RMSE {err:.3f}"
        draw_atoms_3d(ax_in, true, f"{true.id}\ninput {true.formula} ({true.n_atoms})", colors=colors)
        label = pred.formula if pred.n_atoms else "empty"
        draw_atoms_3d(ax_out, pred, f"{verdict}\noutput {label} ({pred.n_atoms})", colors=colors)
        species_key_below(ax_in, np.concatenate([true.numbers, pred.numbers]), anchor_x=1.0, y=0.0, colors=colors)
    if n_fields:
        setting = " (canonical cell)" if getattr(model, "setting", "as_given") == "canonical" else ""
        top = header + rows * (above + panel + below)
        fig.text(
            0.5,
            1.0 - (top + 0.3) / height,
            f"learned fields{setting}: arrows point halfway to the nearest atom, colour = species field",
            ha="center",
            fontsize=11,
        )
        slot = width / n_fields
        for k, (fld, crystal) in enumerate(seen):
            plane = _field_plane(crystal)
            ax = add_panel(fig, k * slot + (slot - field) / 2 - 0.1, top + field_above, field, field)
            name = f"{pairs[k][0].id}, {'abc'[plane[0]]} = {plane[1]:.2f}"
            draw_field_slice(ax, fld, crystal, model.vocab.symbols, plane, arrow_scale=0.5, title=name, colors=colors)
    fig.suptitle(title, y=1.0 - 0.15 / height)
    return save_figure(fig, path)


def run_demo(
    out_dir: str | Path = "nesf-demo",
    model_name: str = DEMO_MODEL,
    n_plot: int = 3,
    progress: bool = True,
    refine_steps: int | None = None,
    overwrite: bool = False,
    decoding: dict | None = None,
) -> dict:
    """Round-trip the demo crystals; print a table; write CIFs, an extxyz, metrics JSON and a PNG.

    Args:
        out_dir: output folder (created whole at the end; a non-empty one is refused unless ``overwrite``).
        model_name: shipped model name or checkpoint path.
        n_plot: crystals whose learned field is drawn in ``demo.png`` (every crystal is drawn).
        progress: progress bar while decoding.
        refine_steps: refinement steps of each encoded code (None: the model's default; 0: none).
        overwrite: replace a non-empty ``out_dir`` (only once the new one is complete).
        decoding: reconstruction settings to change (``NeSF.with_settings``, e.g. ``{"symmetrize": True}``).

    Returns:
        The metrics dict (also written to ``OUT/metrics.json``).
    """
    from nesf.api import NeSF
    from nesf.data.examples import demo_crystals
    from nesf.io.writers import check_output_folder, staged_folder
    from nesf.metrics.matcher import match_rmse
    from nesf.metrics.paper import largest_displacements
    from nesf.metrics.report import evaluate_reconstruction, format_table, matched_metrics
    from nesf.reconstruction.symmetry import REPORT_SYMPREC, space_groups

    t_start = time.perf_counter()
    out = check_output_folder(out_dir, overwrite)  # refused before the work, not after
    model = NeSF.load(model_name)
    if refine_steps is not None:
        model = model.with_refinement(steps=refine_steps)
    if decoding:
        model = model.with_settings(**decoding)
    crystals = [c for c in model.prepare(demo_crystals()) if all(z in model.vocab.numbers for z in c.numbers)]
    if not crystals:
        raise ValueError(f"model {model_name}: none of the demo crystals' elements are in its vocabulary")
    t0 = time.perf_counter()
    pred = model.reconstruct_crystals(crystals, progress=progress)
    seconds = time.perf_counter() - t0
    metrics = evaluate_reconstruction(crystals, pred, model.frame, match=False)
    rms = match_rmse(crystals, pred, n_jobs=1)
    found = [r for r in rms if r is not None]
    metrics.update(matched_metrics(crystals, pred, rms, model.frame))
    groups_in, groups_out = space_groups(crystals, REPORT_SYMPREC), space_groups(pred, REPORT_SYMPREC)
    # largest distance of an input atom to its nearest reconstructed atom (minimum image), Angstrom: after the
    # rigid translation that best overlays the two (a free origin, as along wurtzite's c axis, is no move), and
    # as written in the input's cell and origin
    moved = largest_displacements(crystals, pred, model.frame)
    moved_pinned = largest_displacements(crystals, pred, model.frame, align=False)
    metrics["seconds"] = seconds
    metrics["seconds_per_structure"] = seconds / len(crystals)

    print(format_table(metrics, title=f"demo: {len(crystals)} well-known crystals through model '{model_name}'"))
    print()
    outside = model.check_domain(crystals)
    print(
        f"{'crystal':<20} {'input':<10} {'reconstruction':<16} {'atoms':>7}  {'StructureMatcher':<20} "
        f"{'space group in -> out (0.1 A)':<34} {'max move A':>10}  in domain"
    )
    for c, p, r, w, g_in, g_out, mv in zip(crystals, pred, rms, outside, groups_in, groups_out, moved):
        verdict = f"match, RMSE {r:.4f}" if r is not None else "no match"
        domain = "yes" if not w else "NO: " + "; ".join(w)
        groups = f"{g_in or '-'} -> {g_out or '-'}"
        move = "-" if mv is None else f"{mv:.3f}"
        print(
            f"{c.id:<20} {c.formula:<10} {(p.formula or '-'):<16} {c.n_atoms:>3}/{p.n_atoms:<3}  {verdict:<20} "
            f"{groups:<34} {move:>10}  {domain}"
        )
    print(f"{len(found)} of {len(crystals)} matched; {sum(1 for w in outside if w)} outside the model's domain")

    per_crystal = [
        {
            "id": c.id,
            "input": c.formula,
            "reconstruction": p.formula,
            "atoms_in": c.n_atoms,
            "atoms_out": p.n_atoms,
            "rmse": r,
            "spacegroup_in": "" if g_in is None else str(g_in),
            "spacegroup_out": "" if g_out is None else str(g_out),
            "spacegroup_symprec": REPORT_SYMPREC,
            "max_move": mv,
            "max_move_pinned": mp,
            "in_domain": not w,
            "warnings": w,
        }
        for c, p, r, w, g_in, g_out, mv, mp in zip(
            crystals, pred, rms, outside, groups_in, groups_out, moved, moved_pinned
        )
    ]
    result = {
        "model": str(model_name),
        **metrics,
        "refinement": model.refinement.to_dict(),
        "settings": model.settings.to_dict(),
        "crystals": per_crystal,
    }
    with staged_folder(out, overwrite=overwrite) as tmp:
        png = _write_outputs(tmp, model, crystals, pred, rms, result, n_plot, model_name)
    print(
        f"\nwrote {out}/inputs/*.cif, {out}/reconstructions/*.cif, reconstructions.extxyz, metrics.json and {png.name}"
        f" ({time.perf_counter() - t_start:.1f} s)"
    )
    return result


def _write_outputs(out: Path, model, crystals, pred, rms, result: dict, n_plot: int, model_name: str) -> Path:  # noqa: ANN001
    """The demo's files in ``out``: input and reconstruction CIFs, extxyz, metrics JSON, the picture."""
    from nesf.io.writers import safe_filename, write_cif, write_extxyz, write_json

    for sub, items in (("inputs", crystals), ("reconstructions", pred)):
        (out / sub).mkdir(exist_ok=True)
        for c in items:
            write_cif(out / sub / f"{safe_filename(c.id)}.cif", c)
    write_extxyz(out / "reconstructions.extxyz", pred)
    write_json(out / "metrics.json", result)
    return plot_demo(
        model,
        list(zip(crystals, pred)),
        rms,
        out / "demo.png",
        n_fields=n_plot,
        title=f"NeSF autoencoder '{model_name}': every demo crystal, input vs reconstruction; learned fields below",
    )


__all__ = ["DEMO_MODEL", "plot_demo", "run_demo"]
