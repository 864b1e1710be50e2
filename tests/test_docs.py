"""The documentation: the site builds strictly, the README stays short, and the examples run.

Code blocks of the README and of the pages in ``RUN_PAGES`` run in a temporary folder per page:
fences marked ``bash`` with ``bash -e -o pipefail``, fences marked ``python`` in one namespace
per page, in the order they appear. A block preceded by the line ``<!-- skip-test -->`` does
not run (long trainings, data sets that are not at hand); the ``nesf`` options of every bash
block, skipped or not, are still checked against ``nesf COMMAND --help``. Every page starts
with the output of ``nesf demo --out nesf-demo`` (run once for all of them), whose crystals the
examples use; a bash block identical to one that ran on an earlier page (the README's
quickstart is the quickstart page's) runs once. ``nesf`` runs with ``--threads 1`` (and
``--jobs 1`` where it has that option), whatever the example says, on a warm server that
imported the stack once (``tests/warm_nesf.py``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch

from warm_nesf import client_script

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
#: The README's set-up commands, word for word (.ci/run runs the second).
SETUP_COMMANDS = (
    "pip install torch==2.13.0 && pip install . && nesf demo --out nesf-demo",
    'pip install torch==2.13.0 && pip install -e ".[test]" && ruff check src tests benchmarks && pytest -q',
)
README_MAX_LINES = 150
SKIP_MARKER = "<!-- skip-test -->"
#: The examples' starting point; run once, its output copied into every page's folder.
DEMO_COMMAND = "nesf demo --out nesf-demo"
#: Pages whose bash and python blocks run: the README, the quickstart and every guide.
RUN_PAGES = [README, DOCS / "quickstart.md", *sorted((DOCS / "guides").glob("*.md"))]
#: Pages whose nesf commands are checked against --help (the run pages and the rest of the site).
CHECK_PAGES = [README, *sorted(DOCS.rglob("*.md"))]
#: Subcommands given --threads 1 / --jobs 1 by the test's nesf wrapper.
THREADS_COMMANDS = {
    "check-fields", "train", "evaluate", "reconstruct", "demo", "encode", "decode",
    "plot-field", "fit-prior", "sample", "interpolate",
}  # fmt: skip
JOBS_COMMANDS = {"check-fields", "evaluate", "reconstruct", "generation-metrics"}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


def code_blocks(page: Path) -> list[tuple[str, str, bool, int]]:
    """``(language, code, skipped, line)`` of every fenced block of a page, in order."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        blocks.append((m.group(1).lower(), m.group(2), before == SKIP_MARKER, text.count("\n", 0, m.start()) + 1))
    return blocks


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def nesf_calls(code: str) -> list[list[str]]:
    """The argument lists of the ``nesf`` calls in a bash block (after ``nesf``)."""
    calls = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part, comments=True)
            if words[:1] == ["nesf"]:
                calls.append(words[1:])
            elif words[:2] == ["torchrun"] and "-m" in words:
                i = words.index("-m")
                if words[i + 1 : i + 2] == ["nesf"]:
                    calls.append(words[i + 2 :])
    return calls


# ------------------------------------------------------------------ (a) the site
def test_site_builds_strictly(tmp_path):
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
        import mkdocstrings_handlers.python  # noqa: F401
    except ImportError as err:
        pytest.fail(f"the docs tools are part of the test extra (pip install -e '.[test]'): {err}")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "api" / "index.html").is_file()


# ------------------------------------------------------------------ (b) the README
def test_readme_is_short_and_keeps_the_setup_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    blocks = [code.strip() for lang, code, _, _ in code_blocks(README) if lang == "bash"]
    for command in SETUP_COMMANDS:
        assert command in blocks, f"README.md lost the set-up command: {command}"


def test_ci_runs_the_readme_test_command():
    assert SETUP_COMMANDS[1] in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_run_pages_skip_few_blocks():
    for page in RUN_PAGES:
        blocks = [b for b in code_blocks(page) if b[0] in ("bash", "python")]
        skipped = sum(1 for b in blocks if b[2])
        assert skipped <= 3, f"{page_id(page)}: {skipped} blocks marked {SKIP_MARKER}; keep them few"


# ------------------------------------------------------------------ nesf options of every block
@pytest.fixture(scope="module")
def nesf_help() -> dict[str, str]:
    """``nesf COMMAND --help`` of every command the pages call, from one process."""
    commands = sorted(
        {call[0] for page in CHECK_PAGES for lang, code, _, _ in code_blocks(page) if lang == "bash"
         for call in nesf_calls(code) if call}
    )  # fmt: skip
    script = textwrap.dedent(
        """
        import contextlib, io, json, sys
        from nesf.cli import main
        out = {}
        for command in sys.argv[1:]:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                try:
                    main([command, "--help"])
                except SystemExit:
                    pass
            out[command] = buf.getvalue()
        print(json.dumps(out))
        """
    )
    result = subprocess.run([sys.executable, "-c", script, *commands], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("page", CHECK_PAGES, ids=page_id)
def test_nesf_commands_use_known_options(page, nesf_help):
    for lang, code, _, line in code_blocks(page):
        if lang != "bash":
            continue
        for call in nesf_calls(code):
            where = f"{page_id(page)}:{line}: nesf {' '.join(call)}"
            assert call and call[0] in nesf_help and "usage: nesf" in nesf_help[call[0]], f"{where}: unknown command"
            for word in call[1:]:
                if word.startswith("--"):
                    option = word.split("=", 1)[0]
                    assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", nesf_help[call[0]]), (
                        f"{where}: nesf {call[0]} has no option {option}"
                    )


# ------------------------------------------------------------------ (c) the examples run
@pytest.fixture(scope="module")
def example_env(tmp_path_factory):
    """Environment whose ``nesf`` runs with one thread on a warm server (and ``python`` is this interpreter).

    The server (``tests/warm_nesf.py``) imports torch, scipy and pymatgen once and forks per call;
    the ``nesf`` of this PATH runs the call itself where the server is not up.
    """
    bin_dir = tmp_path_factory.mktemp("bin")
    sock = Path(tempfile.mkdtemp(prefix="nesf-warm-")) / "nesf.sock"  # short: Unix socket paths are limited
    wrapper = bin_dir / "nesf"
    wrapper.write_text(
        client_script(sys.executable, str(sock), sorted(THREADS_COMMANDS), sorted(JOBS_COMMANDS)), encoding="utf-8"
    )
    wrapper.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("warm_nesf.py")), str(sock)], env=env)
    for _ in range(600):  # the imports take a few seconds; the examples go on without the server if they fail
        if sock.exists() or server.poll() is not None:
            break
        time.sleep(0.1)
    yield env
    server.kill()
    server.wait()
    shutil.rmtree(sock.parent, ignore_errors=True)


def run_bash(code: str, cwd: Path, env: dict[str, str], where: str) -> None:
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{where} failed ({result.returncode}):\n{code}\n{output}"


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory, example_env) -> Path:
    """The folder ``nesf demo --out nesf-demo`` writes, made once."""
    folder = tmp_path_factory.mktemp("demo")
    run_bash(DEMO_COMMAND, folder, example_env, "the demo")
    out = folder / "nesf-demo"
    for name in ("inputs", "reconstructions", "reconstructions.extxyz", "metrics.json", "demo.png"):
        assert (out / name).exists(), f"nesf demo did not write {name}"
    assert len(list((out / "inputs").glob("*.cif"))) == len(list((out / "reconstructions").glob("*.cif"))) == 12
    return out


#: Bash blocks that ran already: the README's quickstart block is the quickstart page's too.
_RAN: set[str] = set()


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES, ids=page_id)
def test_examples_run(page, tmp_path, demo_output, example_env, monkeypatch):
    shutil.copytree(demo_output, tmp_path / "nesf-demo")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for n, (lang, code, skipped, line) in enumerate(code_blocks(page)):
            where = f"{page_id(page)}:{line} (block {n})"
            if skipped or lang not in ("bash", "python"):
                continue
            if lang == "bash":
                # the demo has run already: its output is in this folder
                lines = [x for x in code.splitlines() if x.split(" #", 1)[0].strip() != DEMO_COMMAND]
                if any(x.strip() for x in lines) and code not in _RAN:
                    run_bash("\n".join(lines), tmp_path, example_env, where)
                    _RAN.add(code)
            else:
                exec(compile(code, where, "exec"), namespace)  # noqa: S102 - the documentation's own examples
    finally:
        torch.set_num_threads(threads)
