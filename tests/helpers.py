"""Plain helper functions shared by the test modules (fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

#: The checkout this suite belongs to (its procedures/, examples/, docs/ and .git).
REPO_ROOT = Path(__file__).resolve().parent.parent
