"""Full-text search text: user words become a query that can never be a syntax error (pure).

Both backends index the same text of a procedure (:func:`search_document`) and
read the same words out of what a user typed (:func:`search_words`): every word
is required and the last one matches as a prefix while it is being typed.
"""

from __future__ import annotations

import re

from registry.index.contract import ProcedureRecord

_WORD_RE = re.compile(r"[^\W_]+")


def search_words(text: str | None) -> list[str]:
    """The searchable words of ``text``, lowercased (letters and digits only)."""
    if not text:
        return []
    return [w.lower() for w in _WORD_RE.findall(text)]


def _prefix_last(text: str) -> bool:
    # "csv" while typing matches "csvkit"; "csv " means the whole word
    return not text[-1:].isspace()


def fts5_query(text: str) -> str | None:
    """An FTS5 MATCH string for ``text`` (every word required, last as prefix), or None."""
    words = search_words(text)
    if not words:
        return None
    quoted = [f'"{w}"' for w in words]
    if _prefix_last(text):
        quoted[-1] += "*"
    return " ".join(quoted)


def tsquery(text: str) -> str | None:
    """A ``to_tsquery('simple', ...)`` string for ``text`` (same semantics as FTS5), or None."""
    words = search_words(text)
    if not words:
        return None
    quoted = [f"'{w}'" for w in words]
    if _prefix_last(text):
        quoted[-1] += ":*"
    return " & ".join(quoted)


def search_document(record: ProcedureRecord) -> dict[str, str]:
    """The text of each full-text column of a procedure (both backends index the same)."""
    return {
        "name": f"{record.name} {record.id}",
        "description": record.description,
        "tags": " ".join(record.tags),
        "params": " ".join(str(p.get("name", "")) for p in record.parameters),
        "docstring": record.docstring or "",
    }
