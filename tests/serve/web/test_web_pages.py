"""What the pages gather, in-process over a real registry: pagination, filters, links."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from registry.api import AsyncRegistry
from registry.config import HealthSection
from registry.errors import NotFoundError
from registry.serve.web import pages, render
from tests.helpers import git, write_proc


@pytest.fixture
def five(repo: Path) -> Path:
    for i in range(5):
        write_proc(repo, f"tool-{i}", category="even" if i % 2 == 0 else "odd", tags=["t"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: five tools")
    return repo


def test_results_come_in_pages_and_links_keep_the_query(five: Path) -> None:
    async def go() -> list[pages.IndexPage]:
        async with await AsyncRegistry.open(five) as reg:
            out = []
            for n in (1, 2, 3):
                filters = pages.Filters.parse({"tag": "t", "page": str(n)})
                out.append(await pages.index_page(reg, filters, HealthSection(), page_size=2))
            odd = pages.Filters.parse({"category": "odd"})
            out.append(await pages.index_page(reg, odd, HealthSection(), page_size=2))
            untried = pages.Filters.parse({"health": "untried", "page": "3"})
            out.append(await pages.index_page(reg, untried, HealthSection(), page_size=2))
            return out

    first, second, third, odd, untried = anyio.run(go)
    assert [p.id for p in first.results] == ["tool-0", "tool-1"] and first.has_next
    assert [p.id for p in second.results] == ["tool-2", "tool-3"] and second.has_next
    assert [p.id for p in third.results] == ["tool-4"] and not third.has_next
    assert [p.id for p in odd.results] == ["tool-1", "tool-3"] and not odd.has_next
    assert [p.id for p in untried.results] == ["tool-4"]  # filtered here, then paged
    html = render.render("index.html", page=second, path="/", json_url="/?format=json")
    assert 'rel="next" href="/?tag=t&amp;page=3"' in html
    assert 'rel="prev" href="/?tag=t"' in html  # page 1 is the bare query


def test_an_unknown_procedure_is_not_found_on_every_page(five: Path) -> None:
    async def go() -> None:
        async with await AsyncRegistry.open(five) as reg:
            with pytest.raises(NotFoundError):
                await pages.procedure_page(reg, "nope", None)
            with pytest.raises(NotFoundError):
                await pages.runs_page(reg, "nope", HealthSection())
            with pytest.raises(NotFoundError):
                await pages.diff_page(reg, "nope", "1.0.0..HEAD", "split")
            head = await pages.procedure_page(reg, "tool-1", None)
            assert head.selected.resolved_from == "head" and head.versions == []

    anyio.run(go)
