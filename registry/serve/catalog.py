"""The served set: which release of which procedure is a tool, read from the index.

Every valid, active procedure on the tracked branch that has a release is a
tool pinned to ``channel`` (``stable`` by default); a procedure without that
channel falls back to its latest release, or is left out with
``fallback = "none"``. Unreleased procedures are never served. The tool's
schemas come from the metadata *of the pinned release* (read from git when it
differs from the tracked tree), so a call always matches what it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from registry.core.model import Metadata
from registry.core.snapshot import METADATA_FILE
from registry.core.tags import parse_channel_tag, parse_release_tag
from registry.serve.tools import ToolDef, choose_version, procedure_tool

if TYPE_CHECKING:
    from registry.api import AsyncRegistry
    from registry.index.contract import ProcedureRow
    from registry.index.sync import SyncReport

log = logging.getLogger(__name__)

Fallback = Literal["latest", "none"]


@dataclass(frozen=True)
class ServedTool:
    """A procedure served as a tool: the definition and the exact release it runs."""

    tool: ToolDef
    meta: Metadata
    version: str
    commit: str


def touched_ids(report: SyncReport) -> set[str] | None:
    """Procedure ids a sync may have changed the served set of (None: everything, a rebuild)."""
    if report.rebuilt:
        return None
    ids = {*report.added, *report.updated, *report.deleted, *report.invalid}
    for name in (*report.tags_added, *report.tags_removed):
        release = parse_release_tag(name)
        if release is not None:
            ids.add(release[0])
            continue
        channel = parse_channel_tag(name)
        if channel is not None:
            ids.add(channel[0])
    return ids


async def _served(
    reg: AsyncRegistry, row: ProcedureRow, channel: str, fallback: Fallback
) -> ServedTool | None:
    if not row.valid or row.status != "active":
        return None
    versions = await reg.backend.versions(row.id)
    if not versions:
        return None  # never released: not served
    current = await reg.backend.current_channels(row.id)
    move = current.get(channel)
    if move is not None and move.out_of_service:
        return None  # out of service: callers of the channel get nothing, not another version
    chosen = choose_version(move.version if move else None, versions[-1].version, fallback)
    if chosen is None:
        return None
    version, how = chosen
    record = next((v for v in versions if v.version == version), None)
    if record is None:
        return None
    meta: Metadata | None
    if record.tree_id is not None and record.tree_id == row.tree_id:
        meta = Metadata.model_validate(row.metadata)
    else:
        try:
            snap = (
                reg.store.read_tree(row.id, record.tree_id, record.commit)
                if record.tree_id
                else reg.store.read(row.id, record.commit)
            )
            text = snap.text(METADATA_FILE)
            meta = Metadata.model_validate_json(text) if text is not None else None
        except (ValidationError, ValueError) as exc:
            log.warning("%s@%s: metadata does not parse (%s); not served", row.id, version, exc)
            meta = None
    if meta is None or meta.status != "active":
        return None
    return ServedTool(procedure_tool(meta, version, how), meta, version, record.commit)


async def served_tools(
    reg: AsyncRegistry,
    channel: str,
    fallback: Fallback = "latest",
    *,
    previous: dict[str, ServedTool] | None = None,
    ids: Iterable[str] | None = None,
) -> dict[str, ServedTool]:
    """The served set, by tool name; with ``ids`` and ``previous``, only those are recomputed."""
    if ids is None or previous is None:
        rows = await reg.backend.list_procedures()
        out: dict[str, ServedTool] = {}
    else:
        out = dict(previous)
        rows = []
        for pid in sorted(set(ids)):
            out.pop(pid, None)
            row = await reg.backend.get_procedure(pid)
            if row is not None:
                rows.append(row)
    for row in rows:
        served = await _served(reg, row, channel, fallback)
        if served is not None:
            out[row.id] = served
    return dict(sorted(out.items()))
