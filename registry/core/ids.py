"""Procedure ids and bump levels: names every layer checks, in a module that imports nothing.

Kept apart from the pydantic models (:mod:`registry.core.model`,
:mod:`registry.core.versioning`) so that reading tags (``procreg log``,
:mod:`registry.core.tags`) never builds them. Pure.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = ["ID_PATTERN", "ID_RE", "Bump"]

# A procedure id: its folder's name, its tags' middle part.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
ID_RE = re.compile(ID_PATTERN)

# What a release changes: see registry.core.versioning.decide_bump.
Bump = Literal["initial", "major", "minor", "patch", "none"]
