"""``python -m registry`` runs the CLI."""

from __future__ import annotations

import sys

from registry.cli import main

sys.exit(main())
