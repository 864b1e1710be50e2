"""The HTML report: one self-contained file with the sortable table and 3D views, seen in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from nesf.data.examples import demo_crystals
from nesf.metrics.verdicts import make_verdicts
from nesf.viz.html_report import write_html_report

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    crystals = demo_crystals()[:3]
    moved = [c.copy() if hasattr(c, "copy") else c for c in crystals]
    verdicts = make_verdicts(crystals, moved, [0.01, None, 0.02], [[], ["12 atoms per cell, trained on 1-8"], []])
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_html_report(path, verdicts, list(zip(crystals, moved)), title="test report", summary={"match_rate_pct": 66.7})
    return path


def test_report_is_one_self_contained_file(report):
    text = report.read_text()
    assert not re.search(r"<script[^>]+src=", text)  # every script inline
    page = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S)  # the page around the scripts
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "<table" in text and 'id="crystals"' in text
    for name in ("NaCl-rocksalt", "SrTiO3-perovskite", "Si-diamond", "formula_in", "12 atoms per cell"):
        assert name in text
    assert text.count('class="warn"') == 1  # the unmatched, out-of-domain crystal
    assert text.count("plotly.js v") <= 2 and text.count('class="view"') == 3  # plotly once, three views
    assert len(text) > 1_000_000  # plotly's JavaScript is inside


def test_report_refuses_rows_without_pairs(tmp_path):
    with pytest.raises(ValueError, match="2 table rows but 1 crystal pairs"):
        write_html_report(tmp_path / "r.html", [{"id": "a"}, {"id": "b"}], [(None, demo_crystals()[0])])


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        msg = "chromium not found (apt-get install -y chromium): the HTML report is not checked in a browser"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def _run(chromium: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=180,
        )


@pytest.mark.slow
def test_report_shows_its_table_in_a_headless_browser(report, tmp_path):
    from matplotlib.image import imread

    chromium = _chromium()
    url = report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    done = _run(chromium, f"--screenshot={shot}", "--window-size=1280,900", url)
    assert shot.exists(), done.stderr[-2000:]
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (900, 1280)
    assert pixels.std() > 0.05  # not a blank page
    dark = (pixels.mean(axis=-1) < 0.5).mean()
    assert 0.002 < dark < 0.5  # text on a light page
    dom = _run(chromium, "--dump-dom", "--virtual-time-budget=5000", url).stdout
    table = dom[dom.index('id="crystals"') :]
    assert "NaCl-rocksalt" in table and "SrTiO3-perovskite" in table and "Si-diamond" in table
    assert "plotly" in dom and np.sum([m in dom for m in ("main-svg", "gl-container")]) >= 1  # plotly drew
