"""Drift: how the index differs from what git says it should hold (pure).

:func:`registry.index.sync.verify` computes what a rebuild would write and
compares it with the index's snapshot through :func:`snapshot_drift`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

DriftKind = Literal["missing", "extra", "different"]


class Drift(BaseModel):
    """One difference between the index and what git says it should hold.

    ``missing``: git has it, the index does not; ``extra``: the reverse;
    ``different``: both have it, ``fields`` differ.
    """

    table: str
    key: str
    kind: DriftKind
    fields: list[str] = Field(default_factory=list)

    def format(self) -> str:
        """One line: ``procedures slugify: different (tags, description)``."""
        extra = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{self.table} {self.key}: {self.kind}{extra}"


# ``commit`` of a procedure row says at which sync it was written, which git
# cannot confirm; the tree id (compared) says what was indexed.
_UNVERIFIABLE = frozenset({"commit"})

# the tables of a snapshot (see registry.index.contract.canonical_snapshot) and their keys
_KEYS = (("procedures", "id"), ("versions", "tag"), ("channels", "tag"), ("sync_state", "ref"))


def snapshot_drift(expected: dict[str, Any], actual: dict[str, Any]) -> list[Drift]:
    """Every difference of snapshot ``actual`` from ``expected``, table by table, by key."""
    drifts: list[Drift] = []
    for table, key in _KEYS:
        drifts += _compare(table, key, expected[table], actual[table])
    return drifts


def _compare(
    table: str, key: str, expected: list[dict[str, Any]], actual: list[dict[str, Any]]
) -> list[Drift]:
    want = {row[key]: row for row in expected}
    have = {row[key]: row for row in actual}
    out: list[Drift] = []
    for k in sorted(want.keys() | have.keys()):
        a, b = want.get(k), have.get(k)
        if b is None:
            out.append(Drift(table=table, key=k, kind="missing"))
        elif a is None:
            out.append(Drift(table=table, key=k, kind="extra"))
        else:
            fields = _differing(table, a, b)
            if fields:
                out.append(Drift(table=table, key=k, kind="different", fields=fields))
    return out


def _differing(table: str, want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    if table == "procedures":
        if not want.get("valid", True) or not have.get("valid", True):
            names = ["valid", "errors"]
        else:
            names = [n for n in want.keys() | have.keys() if n not in _UNVERIFIABLE]
    else:
        names = list(want.keys() | have.keys())
    return sorted(n for n in names if want.get(n) != have.get(n))
