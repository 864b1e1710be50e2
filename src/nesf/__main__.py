"""``python -m nesf`` runs the command-line interface."""

from __future__ import annotations

from nesf.cli import run

run()
