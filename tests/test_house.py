"""The package keeps its rooms small: no module over 600 lines, no function over 120, no single cli.py."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "nesf"


def test_no_module_over_600_lines_and_no_function_over_120():
    too_long = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 600:
            too_long.append(f"{path.relative_to(SRC)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 120:
                    too_long.append(f"{path.relative_to(SRC)}: {node.name} has {length} lines")
    assert not too_long, too_long


def test_the_command_line_is_a_package_of_modules():
    assert not (SRC / "cli.py").exists()
    modules = {p.stem for p in (SRC / "cli").glob("*.py")}
    assert {"__init__", "common", "evaluate", "encode", "generate", "train", "data", "demo"} <= modules
