"""The SQL both backends run, written once and rendered per dialect (pure: strings only).

Statements are written with numbered placeholders ``$1 .. $n`` and the token
``{runs}`` before the run-history tables. :meth:`Dialect.render` turns them into
what a backend's driver takes: PostgreSQL keeps ``$n`` and has the run tables
in its one schema; SQLite reads ``?n`` (numbered parameters may repeat, as
``$n`` may) and keeps the run tables in the attached file ``runs``.

What really differs stays in :class:`Dialect`: full-text matching and ranking
(FTS5 against ``tsvector``), which column joins a page of results back to its
rows, how a sync's time is written, what "no limit" is. Procedure queries are
built from a :class:`~registry.index.contract.SearchQuery` by
:func:`procedure_query`; schema migrations, bulk writes and metrics stay with
their backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from registry.core.failures import NOT_COUNTED
from registry.index.contract import (
    CHANNEL_COLUMNS,
    EXECUTION_COLUMNS,
    HEAD_COLUMNS,
    PROCEDURE_COLUMNS,
    RELEASE_REF_COLUMNS,
    SUMMARY_COLUMNS,
    SYNC_STATE_COLUMNS,
    VERSION_COLUMNS,
    SearchQuery,
)

_PLACEHOLDER = re.compile(r"\$(\d+)")


def column_list(columns: Sequence[str], alias: str = "") -> str:
    """``"a", "b"`` (quoted: ``commit`` is a keyword), optionally as ``alias."a"``."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(f'{prefix}"{c}"' for c in columns)


SUMMARY_JSON_COLUMNS = frozenset({"tags", "errors"})
"""The :data:`SUMMARY_COLUMNS` that hold JSON."""


def summary_columns(dialect: Dialect) -> str:
    """The select list of :data:`SUMMARY_COLUMNS`, JSON columns as text (see ``json_text``)."""
    return ", ".join(
        dialect.json_text.format(f'p."{c}"') + f' AS "{c}"' if c in SUMMARY_JSON_COLUMNS
        else f'p."{c}"'
        for c in SUMMARY_COLUMNS
    )  # fmt: skip


def upsert_sql(table: str, columns: Sequence[str], key: str, values: Sequence[str]) -> str:
    """``INSERT ... ON CONFLICT (key) DO UPDATE`` of every other column, for both dialects."""
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != key)
    return (
        f"INSERT INTO {table} ({column_list(columns)}) VALUES ({', '.join(values)}) "
        f'ON CONFLICT ("{key}") DO UPDATE SET {updates}'
    )


def dollars(n: int, start: int = 1) -> list[str]:
    """``["$1", ..., "$n"]`` (from ``$start``)."""
    return [f"${i}" for i in range(start, start + n)]


@dataclass(frozen=True)
class Dialect:
    """What one SQL engine says differently from the other."""

    name: str
    numbered: str
    """How a numbered placeholder is written, ``{}`` standing for its number."""
    runs: str
    """The prefix of the run-history tables (``runs.`` on SQLite: an attached file)."""
    page_key: str
    """The procedures column a page of results is joined back on."""
    sync_time: str
    """The value of ``sync_state.synced_at`` in an upsert: SQL, or the 4th parameter."""
    unlimited: int | None
    """The LIMIT parameter that means no limit."""
    text_query: Callable[[str], str | None]
    """User text as the engine's full-text query, or None (only punctuation)."""
    text_source: str
    """The FROM of a full-text query (``p`` must name the procedures row)."""
    text_match: str
    """The condition that the text query ``{}`` matches."""
    text_rank: str
    """The relevance of a match to the text query ``{}``, higher first."""
    tags_match: str
    """The condition that ``p.tags`` holds every tag of the JSON array ``{}``."""
    text_alone: str | None = None
    """A table where the text match and rank need no procedure row, its ``rowid`` the page
    key (FTS5's own table), or None. A search by text alone then ranks every match there
    and joins the procedure rows of the top ones (and their ties) only."""
    json_text: str = "{}"
    """A JSON column ``{}`` read as its text (a summary list decodes each distinct text once)."""

    def render(self, sql: str) -> str:
        """Neutral SQL as this dialect runs it."""
        sql = sql.replace("{runs}", self.runs)
        return _PLACEHOLDER.sub(lambda m: self.numbered.format(m.group(1)), sql)


# --------------------------------------------------------------------------- statements

# Procedure queries run in two steps: the inner query (the page) filters, ranks, orders
# and limits on narrow columns; only the rows it returns get their latest version and
# full columns. Sort keys travel out of the page as sort_* so both levels order alike.
HEALTH_JOIN = "LEFT JOIN {runs}procedure_health h ON h.id = p.id"
# a procedure without runs has no success rate, so it can never pass min_success_rate
HEALTH_INNER_JOIN = "JOIN {runs}procedure_health h ON h.id = p.id"
SUCCESS_RATE = "CAST(h.successes AS DOUBLE PRECISION) / NULLIF(h.runs, 0)"
VERSION_ORDER = "major, minor, patch, is_release, pre_key, tag"
"""Ascending semver (see :class:`registry.index.contract.SemverKey`), then tag."""
LATEST_ORDER = "major DESC, minor DESC, patch DESC, is_release DESC, pre_key DESC"
"""Highest version first (see :class:`registry.index.contract.SemverKey`)."""
# each procedure's latest version is kept in latest_versions (written with its versions, in
# the same transaction), so a list of 10,000 joins it instead of one subquery per row
LATEST_VERSION = "lv.version AS latest_version"
LATEST_JOIN = "LEFT JOIN latest_versions lv ON lv.id = p.id"
PAGE = """SELECT p.{key} AS sort_key, {rank} AS sort_rank,
    lower(p.name) AS sort_name, p.id AS sort_id{health}
FROM {source} {joins} {where} ORDER BY {order} LIMIT {limit}"""
PAGE_HEALTH = f", {SUCCESS_RATE} AS sort_rate, coalesce(h.runs, 0) AS sort_runs"
# A search by text alone (Dialect.text_alone): rank every match without its procedure row,
# then join only the rows ranked at least as high as the limit-th (ties kept, so the
# name and id that break them are read): the same page as PAGE, in a fraction of the reads.
RANKED = "WITH ranked AS MATERIALIZED (SELECT rowid AS k, {rank} AS r FROM {alone} WHERE {match}) "
RANKED_PAGE = """SELECT p.{key} AS sort_key, ranked.r AS sort_rank,
    lower(p.name) AS sort_name, p.id AS sort_id
FROM ranked JOIN procedures p ON p.{key} = ranked.k
WHERE ranked.r >= coalesce((SELECT r FROM ranked ORDER BY r DESC LIMIT 1 OFFSET {limit} - 1),
    -1e308)
ORDER BY {order} LIMIT {limit}"""
NO_RANK = "CAST(NULL AS REAL)"
_ROWS = f"""SELECT {{columns}}, {LATEST_VERSION},
    coalesce(h.runs, 0) AS runs, {SUCCESS_RATE} AS success_rate
FROM ({{page}}) s JOIN procedures p ON p.{{key}} = s.sort_key {LATEST_JOIN} {HEALTH_JOIN}
ORDER BY {{order}}"""
# Ordered by id with no rank and no health filter, one level is enough: the scan of the
# id index stops at the limit, so the latest version is still computed for the page only
# (and the page is not materialised, joined back and sorted again).
_FLAT_ROWS = f"""SELECT {{columns}}, {LATEST_VERSION},
    coalesce(h.runs, 0) AS runs, {SUCCESS_RATE} AS success_rate
FROM procedures p {LATEST_JOIN} {HEALTH_JOIN} {{where}} ORDER BY p.id LIMIT {{limit}}"""
ORDER_BY: dict[str, str] = {
    "relevance": "sort_rank DESC, sort_name, sort_id",
    "name": "sort_id",  # by id, the first column every listing shows
    "health": "sort_rate DESC NULLS LAST, sort_runs DESC, sort_name, sort_id",
    "id": "sort_id",
}
WHERE_CATEGORY = "p.category = {}"
WHERE_STATUS = "p.status = {}"
WHERE_VALID = "p.valid = {}"
WHERE_ID = "p.id = {}"
WHERE_MIN_SUCCESS = f"{SUCCESS_RATE} >= {{}}"
_RECENT = "ORDER BY started_at DESC, run_id DESC LIMIT"
COUNTED = f"coalesce(error_type, '') NOT IN ({', '.join(repr(t) for t in NOT_COUNTED)})"
"""The run records metrics and health count: not a queued attempt whose worker died
(``WorkerLost``). The procedure_health triggers of both backends say the same."""


@dataclass(frozen=True)
class Statements:
    """Every statement both backends share; the class defaults are the neutral text."""

    delete_version: str = "DELETE FROM versions WHERE tag = $1"
    delete_all_latest: str = "DELETE FROM latest_versions"
    delete_latest: str = "DELETE FROM latest_versions WHERE id = $1"
    insert_latest: str = "INSERT INTO latest_versions (id, version) VALUES ($1, $2)"
    insert_latest_of: str = f"""INSERT INTO latest_versions (id, version)
SELECT id, version FROM versions WHERE id = $1 ORDER BY {LATEST_ORDER} LIMIT 1"""
    delete_channel: str = "DELETE FROM channels WHERE tag = $1"
    upsert_channel: str = upsert_sql(
        "channels", CHANNEL_COLUMNS, "tag", dollars(len(CHANNEL_COLUMNS))
    )
    upsert_sync_state: str = upsert_sql(
        "sync_state", SYNC_STATE_COLUMNS, "ref", [*dollars(3), "{sync_time}"]
    )
    select_sync_state: str = (
        f"SELECT {column_list(SYNC_STATE_COLUMNS)} FROM sync_state WHERE ref = $1"
    )
    select_all_sync_states: str = f"SELECT {column_list(SYNC_STATE_COLUMNS)} FROM sync_state"
    select_versions: str = f"""SELECT {column_list(VERSION_COLUMNS)} FROM versions
WHERE id = $1 ORDER BY {VERSION_ORDER}"""
    select_procedure_head: str = f"SELECT {column_list(HEAD_COLUMNS)} FROM procedures WHERE id = $1"
    select_release_refs: str = f"""SELECT {column_list(RELEASE_REF_COLUMNS)} FROM versions
WHERE id = $1 ORDER BY {VERSION_ORDER}"""
    select_all_versions: str = f"SELECT {column_list(VERSION_COLUMNS)} FROM versions"
    select_version_tags: str = "SELECT tag FROM versions"
    select_procedure_trees: str = "SELECT id, tree_id FROM procedures"
    select_object_cache: str = "SELECT kind, key, value FROM object_cache WHERE fingerprint = $1"
    delete_other_fingerprints: str = "DELETE FROM object_cache WHERE fingerprint <> $1"
    select_channel_tags: str = "SELECT tag FROM channels"
    select_channels: str = f"""SELECT {column_list(CHANNEL_COLUMNS)} FROM channels
WHERE id = $1 ORDER BY channel, seq"""
    select_all_channels: str = f"SELECT {column_list(CHANNEL_COLUMNS)} FROM channels"
    select_current_channels: str = f"""SELECT {column_list(CHANNEL_COLUMNS, "c")} FROM channels c
WHERE c.id = $1 AND c.seq = (SELECT max(c2.seq) FROM channels c2
    WHERE c2.id = c.id AND c2.channel = c.channel)
ORDER BY c.channel"""
    select_executions: str = f"""SELECT {column_list(EXECUTION_COLUMNS)} FROM {{runs}}executions
WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR version = $2) {_RECENT} $3"""
    count_executions: str = (
        "SELECT count(*) FROM {runs}executions WHERE (CAST($1 AS TEXT) IS NULL OR id = $1)"
    )
    select_recent_outcomes: str = f"""SELECT outcome = 'success' FROM {{runs}}executions
WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR version = $2) AND {COUNTED} {_RECENT} $3"""


@cache
def statements(dialect: Dialect) -> Statements:
    """The shared statements as ``dialect`` runs them."""
    neutral = Statements()
    return Statements(
        **{
            f.name: dialect.render(getattr(neutral, f.name)).replace(
                "{sync_time}", dialect.sync_time
            )
            for f in fields(Statements)
        }
    )


# --------------------------------------------------------------------------- procedure queries


class Params:
    """Numbers placeholders in the order values are added."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        """The placeholder of a new parameter ``value`` (neutral: ``$n``)."""
        self.values.append(value)
        return f"${len(self.values)}"


def _filters(query: SearchQuery, params: Params) -> list[str]:
    """The conditions of ``query``'s plain filters (text and success rate aside)."""
    table: list[tuple[str, Any]] = [
        (WHERE_CATEGORY, query.category),
        (WHERE_STATUS, query.status),
        (WHERE_VALID, query.valid),
    ]
    return [template.format(params.add(value)) for template, value in table if value is not None]


def procedure_query(
    dialect: Dialect, query: SearchQuery, *, summary: bool = False
) -> tuple[str, list[Any]] | None:
    """The SQL and parameters of a search, or ``None`` when nothing can match.

    Blank text means no text filter; text of punctuation alone matches nothing.
    """
    if query.limit <= 0:
        return None
    text = None
    if query.text is not None and query.text.strip():
        text = dialect.text_query(query.text)
        if text is None:  # only punctuation: nothing can match
            return None
    params = Params()
    conditions: list[str] = []
    rank, source = NO_RANK, "procedures p"
    if text is not None:
        ref = params.add(text)
        rank, source = dialect.text_rank.format(ref), dialect.text_source
        conditions.append(dialect.text_match.format(ref))
    conditions += _filters(query, params)
    if query.tags:
        conditions.append(dialect.tags_match.format(params.add(json.dumps(list(query.tags)))))
    order: str = "name" if query.order == "relevance" and text is None else query.order
    # health is joined before the limit only when the filter or the order needs it
    joins = ""
    if query.min_success_rate is not None:
        joins = HEALTH_INNER_JOIN
        conditions.append(WHERE_MIN_SUCCESS.format(params.add(query.min_success_rate)))
    elif order == "health":
        joins = HEALTH_JOIN
    alone = dialect.text_alone and text is not None and len(conditions) == 1 and not joins
    if alone and order == "relevance":
        sql = _ranked_rows(dialect, conditions[0], params, query.limit, rank, summary)
        return sql, params.values
    sql = procedure_rows(
        dialect, conditions, params, order, query.limit, rank, source, joins, summary=summary
    )
    return sql, params.values


def _ranked_rows(
    dialect: Dialect, match: str, params: Params, limit: int, rank: str, summary: bool
) -> str:
    """A search by text alone, ranked without the procedure rows (see ``RANKED``)."""
    assert dialect.text_alone is not None and limit > 0
    limit_ref = params.add(limit)
    page = RANKED_PAGE.format(key=dialect.page_key, order=ORDER_BY["relevance"], limit=limit_ref)
    columns = summary_columns(dialect) if summary else column_list(PROCEDURE_COLUMNS, "p")
    sql = RANKED.format(rank=rank, alone=dialect.text_alone, match=match) + (
        _ROWS.replace("{columns}", columns)
        .replace("{key}", dialect.page_key)
        .replace("{order}", ORDER_BY["relevance"])
        .replace("{page}", page)
    )
    return dialect.render(sql)


def procedure_rows(
    dialect: Dialect,
    conditions: Sequence[str],
    params: Params,
    order: str = "name",
    limit: int | None = None,
    rank: str = NO_RANK,
    source: str = "procedures p",
    joins: str = "",
    *,
    summary: bool = False,
) -> str:
    """A procedure query: a page of ``limit`` rows (None: all) meeting ``conditions``."""
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    columns = summary_columns(dialect) if summary else column_list(PROCEDURE_COLUMNS, "p")
    if rank == NO_RANK and source == "procedures p" and not joins and ORDER_BY[order] == "sort_id":
        limit_ref = params.add(dialect.unlimited if limit is None else limit)
        flat = _FLAT_ROWS.replace("{columns}", columns).replace("{where}", where)
        return dialect.render(flat.replace("{limit}", limit_ref))
    page = PAGE.format(
        key=dialect.page_key,
        rank=rank,
        health=PAGE_HEALTH if joins else "",
        source=source,
        joins=joins,
        where=where,
        order=ORDER_BY[order],
        limit=params.add(dialect.unlimited if limit is None else limit),
    )
    sql = (
        _ROWS.replace("{columns}", columns)
        .replace("{key}", dialect.page_key)
        .replace("{order}", ORDER_BY[order])
        .replace("{page}", page)
    )
    return dialect.render(sql)


CURRENT_CHANNELS = """SELECT c.id, c.channel, c.version, c.out_of_service
FROM channels c WHERE {where}c.seq = (SELECT max(c2.seq) FROM channels c2
    WHERE c2.id = c.id AND c2.channel = c.channel)
ORDER BY c.id, c.channel"""
# more ids than this read every current channel instead (no statement of thousands of
# parameters: SQLite's limit is 32,766, and old builds allowed 999)
CHANNEL_IDS_MAX = 500


def current_channels_of(dialect: Dialect, ids: Sequence[str] | None) -> tuple[str, list[Any]]:
    """The current move of every channel of ``ids`` (None or many: of every procedure)."""
    if ids is None or len(ids) > CHANNEL_IDS_MAX or not ids:
        return dialect.render(CURRENT_CHANNELS.format(where="")), []
    where = f"c.id IN ({', '.join(dollars(len(ids)))}) AND "
    return dialect.render(CURRENT_CHANNELS.format(where=where)), list(ids)


@cache
def _by_id_sql(dialect: Dialect) -> str:
    params = Params()
    return procedure_rows(dialect, [WHERE_ID.format(params.add(None))], params)


def procedure_by_id(dialect: Dialect, id: str) -> tuple[str, list[Any]]:
    """The query of one procedure row (its text built once per dialect: ``get`` is hot)."""
    return _by_id_sql(dialect), [id, dialect.unlimited]


@cache
def _all_sql(dialect: Dialect) -> str:
    return procedure_rows(dialect, [], Params(), "id")


def all_procedures(dialect: Dialect) -> tuple[str, list[Any]]:
    """The query of every procedure row, by id."""
    return _all_sql(dialect), [dialect.unlimited]
