"""A self-contained HTML report: the per-crystal table and each crystal's input and output in 3D.

One file that works offline: plotly's JavaScript is embedded once, the table sorts by clicking
its headers (a few lines of inline JavaScript), rows with warnings (outside the model's domain,
not matched, not valid) are highlighted, and each crystal's id links to its interactive 3D view
(input beside output, atoms wrapped into the cell with periodic images, the picture's element
colours of :mod:`nesf.viz.palette`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from nesf.data.crystal import Crystal
from nesf.io.writers import atomic_write
from nesf.viz.cells import display_sites
from nesf.viz.palette import element_colors

#: 3D views drawn at most (the table always lists every crystal).
MAX_VIEWS = 50

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #e8ecf2; cursor: pointer; user-select: none; white-space: nowrap; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
tr.warn td { background: #fff0c2; } td.bad { color: #a40000; font-weight: 600; }
.note { color: #555; font-size: 0.9em; } .view { margin-bottom: 1.2em; }
table.summary th { cursor: default; } div.scroll { overflow-x: auto; }
"""

_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0], rows = Array.from(body.rows);
      function key(row) { var t = row.cells[col].getAttribute("data-sort") || row.cells[col].textContent;
        var x = parseFloat(t); return isNaN(x) ? t.toLowerCase() : x; }
      rows.sort(function (a, b) { var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _cell_text(value: object) -> tuple[str, str]:
    """The shown text of one table value and its sort key."""
    if value is None:
        return "-", ""
    if isinstance(value, bool):
        return ("yes" if value else "no"), str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}", repr(value)
    if isinstance(value, (list, tuple)):
        text = "; ".join(str(v) for v in value)
        return text, text
    return str(value), str(value)


def _warned(row: Mapping) -> bool:
    """A row to highlight: warnings, outside the domain, not matched, or not valid."""
    return (
        bool(row.get("warnings"))
        or row.get("in_domain") is False
        or row.get("matched") is False
        or (row.get("valid") is False)
    )


def _table(rows: Sequence[Mapping], anchors: Sequence[str | None]) -> str:
    """The sortable per-crystal table; ids with a 3D view link to it."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    lines = []
    for row, anchor in zip(rows, anchors):
        cells = []
        for c in columns:
            text, key = _cell_text(row.get(c))
            bad = (c in ("matched", "in_domain", "valid") and row.get(c) is False) or (c == "warnings" and row.get(c))
            shown = html.escape(text)
            if c == "id" and anchor:
                shown = f'<a href="#{anchor}">{shown}</a>'
            cls = ' class="bad"' if bad else ""
            cells.append(f'<td{cls} data-sort="{html.escape(key, quote=True)}">{shown}</td>')
        cls = ' class="warn"' if _warned(row) else ""
        lines.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return (
        f'<table class="sortable" id="crystals"><thead><tr>{head}</tr></thead><tbody>{"".join(lines)}</tbody></table>'
    )


def _summary(summary: Mapping) -> str:
    """A two-column table of the run's figures (metrics, settings)."""
    rows = []
    for key, value in summary.items():
        if isinstance(value, (dict, list)) and value:
            value = json.dumps(value, default=str)
        text = _cell_text(value)[0]
        rows.append(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(text)}</td></tr>")
    return f'<table class="summary">{"".join(rows)}</table>'


def _traces(crystal: Crystal, colors: dict, show_legend: bool, seen: set[int]) -> list:
    """Plotly traces of one cell: its 12 edges and its atoms (one trace per element)."""
    import plotly.graph_objects as go
    from ase.data import chemical_symbols, covalent_radii

    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    xs, ys, zs = [], [], []
    for a in range(8):
        for b in range(a + 1, 8):
            if np.abs(corners[a] - corners[b]).sum() == 1:
                p, q = corners[a] @ crystal.lattice, corners[b] @ crystal.lattice
                xs += [p[0], q[0], None]
                ys += [p[1], q[1], None]
                zs += [p[2], q[2], None]
    line = {"color": "#777", "width": 2}
    traces = [go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", line=line, hoverinfo="skip", showlegend=False)]
    sites = display_sites(crystal)
    for z in sorted({int(n) for n in sites.numbers}):
        pick = sites.numbers == z
        symbol = chemical_symbols[z]
        rgb = "rgb({},{},{})".format(*(int(round(255 * v)) for v in colors[z]))
        text = [f"{symbol} ({f[0]:.3f}, {f[1]:.3f}, {f[2]:.3f})" for f in sites.frac[pick]]
        size = float(np.clip(14 * covalent_radii[z], 6, 30))
        traces.append(
            go.Scatter3d(
                x=sites.cart[pick, 0],
                y=sites.cart[pick, 1],
                z=sites.cart[pick, 2],
                mode="markers",
                name=symbol,
                legendgroup=symbol,
                showlegend=show_legend and z not in seen,
                text=text,
                hoverinfo="text",
                marker={"size": size, "color": rgb, "line": {"color": "black", "width": 1}},
            )
        )
        seen.add(z)
    return traces


def _view(pair: tuple[Crystal | None, Crystal], titles: tuple[str, str], include_js: bool) -> str:
    """One crystal's interactive 3D view (input beside output, or the output alone) as an HTML fragment."""
    import plotly.io as pio
    from plotly.subplots import make_subplots

    shown = [(c, t) for c, t in zip(pair, titles) if c is not None]
    fig = make_subplots(
        rows=1, cols=len(shown), specs=[[{"type": "scene"}] * len(shown)], subplot_titles=[t for _, t in shown]
    )
    colors = element_colors([int(z) for c, _ in shown for z in c.numbers])
    seen: set[int] = set()
    for k, (crystal, _) in enumerate(shown):
        for trace in _traces(crystal, colors, True, seen):
            fig.add_trace(trace, row=1, col=k + 1)
    axis = {"showbackground": False, "title": ""}
    for k in range(len(shown)):
        fig.update_layout(
            {f"scene{k + 1 if k else ''}": {"aspectmode": "data", "xaxis": axis, "yaxis": axis, "zaxis": axis}}
        )
    fig.update_layout(height=420, width=420 * len(shown) + 120, margin={"l": 0, "r": 0, "t": 40, "b": 0})
    return pio.to_html(fig, include_plotlyjs=include_js, full_html=False, config={"displaylogo": False})


def write_html_report(
    path: str | Path,
    rows: Sequence[Mapping | object],
    pairs: Sequence[tuple[Crystal | None, Crystal]],
    title: str = "nesf report",
    summary: Mapping | None = None,
    max_views: int = MAX_VIEWS,
) -> Path:
    """Write one self-contained HTML report (atomically).

    Args:
        path: the ``.html`` file to write.
        rows: one record per crystal (dicts, or objects with ``to_dict()`` such as
            :class:`~nesf.metrics.verdicts.StructureVerdict`), shown as the sortable table.
        pairs: ``(input, output)`` per row, in the same order; input None where there is none
            (sampled crystals).
        title: the page's title.
        summary: the run's figures, shown above the table (optional).
        max_views: 3D views drawn at most (those of the first rows).

    Returns:
        The path written.
    """
    records = [dict(r.to_dict() if hasattr(r, "to_dict") else r) for r in rows]
    if len(records) != len(pairs):
        raise ValueError(f"{len(records)} table rows but {len(pairs)} crystal pairs")
    n_views = min(len(pairs), max_views)
    anchors = [f"view-{k}" if k < n_views else None for k in range(len(pairs))]
    views = []
    for k in range(n_views):
        source, output = pairs[k]
        name = html.escape(str(records[k].get("id", output.id)))
        out_label = f"output {output.formula if output.n_atoms else '(empty)'}"
        titles = (f"input {source.formula}" if source is not None else "", out_label)
        fragment = _view((source, output), titles, include_js=k == 0)
        views.append(f'<div class="view" id="{anchors[k]}"><h3>{name}</h3>{fragment}</div>')
    warned = sum(1 for r in records if _warned(r))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _summary(summary) if summary else "",
        f"<h2>Crystals ({len(records)}; {warned} highlighted)</h2>",
        '<p class="note">Click a header to sort; highlighted rows carry a warning (outside the model\'s domain, '
        "not matched or not valid). An id links to its 3D view.</p>",
        f'<div class="scroll">{_table(records, anchors)}</div>',
        f"<h2>3D views{'' if n_views == len(pairs) else f' (the first {n_views} of {len(pairs)})'}</h2>",
        '<p class="note">Drag to turn, scroll to zoom; atoms wrapped into the cell, with periodic images on its '
        "faces, edges and corners.</p>",
        *views,
        f"<script>{_SORT_JS}</script>",
        "</body></html>",
    ]
    text = "\n".join(parts)
    return atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


__all__ = ["MAX_VIEWS", "write_html_report"]
