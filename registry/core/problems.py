"""A validation problem: where it is, which rule it breaks, and what to do."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class Problem(BaseModel):
    """One problem found in a procedure.

    ``path`` is relative to the repository root when known
    (``procedures/slugify/main.py``); ``line`` is 1-based, or ``None`` for a
    problem about a whole file or a metadata field (then ``field`` names it).
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str
    line: int | None = None
    rule: str
    message: str
    field: str | None = None

    def format(self) -> str:
        """``path:line: rule: message`` (the line is omitted when unknown)."""
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.rule}: {self.message}"

    @classmethod
    def parse(cls, text: str) -> Problem:
        """The problem :meth:`format` wrote as ``text`` (a line the index keeps as it is).

        A line of no such form comes back whole as the message of rule ``invalid``.
        """
        found = _FORMATTED.match(text)
        if found is None:
            return cls(path="", rule="invalid", message=text)
        line = found["line"]
        return cls(
            path=found["path"],
            line=int(line) if line is not None else None,
            rule=found["rule"],
            message=found["message"],
        )


_FORMATTED = re.compile(
    r"(?P<path>[^\s:][^:]*?)(?::(?P<line>\d+))?: (?P<rule>[a-z][a-z0-9-]*): (?P<message>.*)", re.S
)
"""What :meth:`Problem.format` writes: ``path[:line]: rule: message``."""
