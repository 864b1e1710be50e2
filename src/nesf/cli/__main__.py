"""``python -m nesf.cli`` runs the command-line interface."""

from __future__ import annotations

import sys

from nesf.cli import main

sys.exit(main())
