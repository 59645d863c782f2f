"""The web view over a PostgreSQL index: the same pages, read through the same API."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from registry.api import Registry
from registry.serve.web.pages import HealthPage, IndexPage, ProcedurePage, RunsPage
from tests.serve.mcp_helpers import serving
from tests.serve.web.web_helpers import build_web_registry

pytestmark = pytest.mark.postgres


def test_every_page_reads_a_postgres_index(tmp_path: Path, pg_url: str) -> None:
    repo = build_web_registry(tmp_path, runs=False)
    with Registry.open(repo, database_url=pg_url) as reg:
        for text in ("a", "b"):
            assert reg.run("slugify", text=text).ok
    with serving(repo, tmp_path / "serve.log", {"PROCREG_DATABASE_URL": pg_url}) as base:
        found = httpx2.get(base + "/", params={"q": "shout", "format": "json"}).json()
        assert [r.id for r in IndexPage.model_validate(found).results] == ["flaky"]
        detail = httpx2.get(base + "/p/flaky", params={"format": "json"}).json()
        page = ProcedurePage.model_validate(detail)
        assert [v.version for v in page.versions] == ["1.0.1", "1.0.0"]
        assert page.channels[0].channel == "stable"
        runs = RunsPage.model_validate(
            httpx2.get(base + "/p/slugify/runs", params={"format": "json"}).json()
        )
        assert runs.metrics.runs == 2 and len(runs.runs) == 2
        html = httpx2.get(base + "/p/slugify/runs").text
        assert 'id="chart-success"' in html
        HealthPage.model_validate(httpx2.get(base + "/health?format=json").json())
