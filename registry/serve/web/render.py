"""HTML for the web view: Jinja2 templates (autoescaped), Pygments highlighting, difflib diffs.

Everything that comes from the repository (procedure text, metadata, commit and
tag messages) is untrusted: templates autoescape it, and the highlighter escapes
every token itself before wrapping it in a ``<span>``. Code is highlighted line
by line (token classes from Pygments' standard names, its stylesheet served by
procreg at ``/static/pygments.css``) so that line numbers and the side-by-side
diff can share the lines.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any, Literal

import jinja2
from markupsafe import Markup
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import DiffLexer, JsonLexer, PythonLexer, TextLexer, TOMLLexer
from pygments.token import STANDARD_TYPES, _TokenType

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
CODE_CLASS = "code"
CONTEXT_LINES = 3


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment: autoescape on for every template, undefined names fail."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["percent"] = percent
    env.filters["ms"] = milliseconds
    return env


def render(template: str, **context: Any) -> str:
    """One page, from ``templates/<template>``."""
    return environment().get_template(template).render(**context)


def when(value: datetime | None) -> str:
    """A date as the pages show it (UTC, to the second)."""
    return "" if value is None else f"{value:%Y-%m-%d %H:%M:%S} UTC"


def percent(value: float | None) -> str:
    """A rate as a percentage, or a dash without runs."""
    return "–" if value is None else f"{value:.0%}" if value in (0.0, 1.0) else f"{value:.1%}"


def milliseconds(value: float | None) -> str:
    """A duration in ms, or a dash."""
    return "–" if value is None else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"


@functools.cache
def pygments_css() -> str:
    """Pygments' stylesheet for the token classes, scoped to ``.code``."""
    return str(HtmlFormatter(style="default").get_style_defs(f".{CODE_CLASS}"))


def _lexer(filename: str) -> Lexer:
    options = {"stripnl": False, "ensurenl": False}
    if filename.endswith(".py"):
        return PythonLexer(**options)
    if filename.endswith(".json"):
        return JsonLexer(**options)
    if filename.endswith(".toml"):
        return TOMLLexer(**options)
    if filename.endswith((".diff", ".patch")):
        return DiffLexer(**options)
    return TextLexer(**options)


def _css_class(ttype: _TokenType) -> str:
    while ttype not in STANDARD_TYPES:
        ttype = ttype.parent
    return STANDARD_TYPES[ttype]


def highlight_lines(text: str, filename: str) -> list[Markup]:
    """``text`` highlighted, one escaped HTML fragment per line (no trailing empty line)."""
    lines: list[list[str]] = [[]]
    for ttype, value in _lexer(filename).get_tokens(text):
        cls = _css_class(ttype)
        for i, piece in enumerate(value.split("\n")):
            if i:
                lines.append([])
            if piece:
                safe = escape(piece, quote=False)
                lines[-1].append(f'<span class="{cls}">{safe}</span>' if cls else safe)
    if text.endswith("\n") or not text:
        lines.pop()
    return [Markup("".join(parts)) for parts in lines]  # noqa: S704 - every piece escaped


@dataclass(frozen=True)
class DiffSide:
    """One side of a row of a diff: line number and highlighted text (None: no line)."""

    number: int | None
    html: Markup | None


@dataclass(frozen=True)
class DiffRow:
    """A row of a diff: ``kind`` is equal, changed, removed, added or gap (a hunk break)."""

    kind: Literal["equal", "changed", "removed", "added", "gap"]
    left: DiffSide
    right: DiffSide


NONE = DiffSide(None, None)


def _pairs(
    tag: str, a: Sequence[Markup], b: Sequence[Markup], i1: int, i2: int, j1: int, j2: int
) -> Iterator[DiffRow]:
    if tag == "equal":
        for k in range(i2 - i1):
            yield DiffRow("equal", DiffSide(i1 + k + 1, a[i1 + k]), DiffSide(j1 + k + 1, b[j1 + k]))
        return
    n = max(i2 - i1, j2 - j1)
    for k in range(n):
        left = DiffSide(i1 + k + 1, a[i1 + k]) if i1 + k < i2 else NONE
        right = DiffSide(j1 + k + 1, b[j1 + k]) if j1 + k < j2 else NONE
        kind: Literal["changed", "removed", "added"] = (
            "changed" if left.html is not None and right.html is not None
            else "removed" if left.html is not None
            else "added"
        )  # fmt: skip
        yield DiffRow(kind, left, right)


def diff_rows(name: str, a: str | None, b: str | None) -> list[DiffRow]:
    """DiffSide-by-side rows of one file, in hunks with a few lines of context (difflib)."""
    old, new = a or "", b or ""
    a_html, b_html = highlight_lines(old, name), highlight_lines(new, name)
    matcher = difflib.SequenceMatcher(None, old.splitlines(), new.splitlines(), autojunk=False)
    rows: list[DiffRow] = []
    for n, group in enumerate(matcher.get_grouped_opcodes(CONTEXT_LINES)):
        if n:
            rows.append(DiffRow("gap", NONE, NONE))
        for tag, i1, i2, j1, j2 in group:
            rows.extend(_pairs(tag, a_html, b_html, i1, i2, j1, j2))
    return rows


def unified_rows(rows: Sequence[DiffRow]) -> list[DiffRow]:
    """The same rows one above the other: a changed row becomes a removed and an added one."""
    out: list[DiffRow] = []
    for row in rows:
        if row.kind == "changed":
            out.append(DiffRow("removed", row.left, NONE))
            out.append(DiffRow("added", NONE, row.right))
        else:
            out.append(row)
    return out
