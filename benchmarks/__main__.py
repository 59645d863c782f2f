"""``python -m benchmarks``: the one entry point."""

from __future__ import annotations

import sys

from benchmarks.run import main

sys.exit(main())
