"""A validation problem: where it is, which rule it breaks, and what to do."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Problem(BaseModel):
    """One problem found in a procedure.

    ``path`` is relative to the repository root when known
    (``procedures/slugify/main.py``); ``line`` is 1-based, or ``None`` for a
    problem about a whole file or a metadata field (then ``field`` names it).
    """

    model_config = ConfigDict(frozen=True)

    path: str
    line: int | None = None
    rule: str
    message: str
    field: str | None = None

    def format(self) -> str:
        """``path:line: rule: message`` (the line is omitted when unknown)."""
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.rule}: {self.message}"
