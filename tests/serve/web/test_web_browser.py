"""The web view in a real browser: Debian's Chromium driven by Playwright, against a real
``procreg serve`` over a real registry (releases, sandboxed runs, a health-policy move).

Skips without ``/usr/bin/chromium`` on a laptop; fails instead in CI (``CI=true`` or
``PROCREG_REQUIRE_BROWSER=1``, which ``.ci/run`` sets). Screenshots of the main pages
are written to ``PROCREG_SCREENSHOTS`` when set (``docs/screenshots/`` holds the ones
the README shows; ``make screenshots`` makes them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from pydantic import BaseModel

from registry.api import Registry
from registry.serve.web.app import CSP
from registry.serve.web.pages import DiffPage, HealthPage, IndexPage, ProcedurePage, RunsPage
from tests.serve.mcp_helpers import serving
from tests.serve.web.web_helpers import CHROMIUM_ARGS, build_web_registry, chromium_or_skip

pytestmark = pytest.mark.slow


@dataclass
class Site:
    repo: Path
    base: str


@dataclass
class Watch:
    """What a page did that it must not: script errors, dialogs, console errors (CSP too)."""

    problems: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    chromium_or_skip()
    root = tmp_path_factory.mktemp("web")
    repo = build_web_registry(root)
    with serving(repo, root / "serve.log") as base:
        yield Site(repo, base)
    assert "the web view is open to this machine" in (root / "serve.log").read_text()


@pytest.fixture(scope="module")
def browser(site: Site) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(chromium_or_skip()), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, site: Site) -> Iterator[tuple[Any, Watch]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site.base)
    tab = context.new_page()
    watch = Watch()
    tab.on("pageerror", lambda exc: watch.problems.append(f"script error: {exc}"))
    tab.on("console", lambda m: watch.problems.append(m.text) if m.type == "error" else None)

    def on_dialog(dialog: Any) -> None:
        watch.problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    try:
        yield tab, watch
    finally:
        context.close()
    assert watch.problems == []


def ids_listed(tab: Any) -> list[str]:
    return [str(t) for t in tab.locator("#results tbody tr a.pid").all_inner_texts()]


def test_search_and_filter_with_the_query_in_the_url(page: tuple[Any, Watch], site: Site) -> None:
    tab, _ = page
    tab.goto("/")
    assert {"flaky", "slugify", "xss", "broken"} <= set(ids_listed(tab))
    tab.fill("input[name=q]", "shout")
    tab.press("input[name=q]", "Enter")
    tab.wait_for_url(re.compile(r"q=shout"))
    assert ids_listed(tab) == ["flaky"]
    assert tab.get_attribute("#as-json", "href") == "/?q=shout&format=json"

    tab.fill("input[name=q]", "")
    tab.fill("input[name=category]", "text")
    tab.select_option("select[name=health]", "failing")
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"health=failing"))
    assert "category=text" in tab.url
    assert ids_listed(tab) == ["flaky"]
    shared = tab.url

    tab.select_option("select[name=health]", "untried")
    tab.click("button[type=submit]")
    tab.wait_for_url(re.compile(r"health=untried"))
    assert "flaky" not in ids_listed(tab) and "slugify" in ids_listed(tab)

    tab.goto(shared)  # the URL is the query: opened again, it shows the same
    assert ids_listed(tab) == ["flaky"]
    assert tab.input_value("select[name=health]") == "failing"

    tab.goto("/?validity=invalid")
    assert ids_listed(tab) == ["broken"]
    tab.goto("/?q=nothing-matches-this")
    assert tab.locator("#no-results").is_visible()


def test_open_a_procedure_and_switch_versions(page: tuple[Any, Watch]) -> None:
    tab, _ = page
    tab.goto("/?q=flaky")
    tab.click("#results a.pid:text-is('flaky')")
    tab.wait_for_url(re.compile(r"/p/flaky$"))
    assert tab.inner_text("#shown-version") == "1.0.1"
    assert "upstream changed" in tab.inner_text("#source")
    assert "Fails on 'boom'." in tab.inner_text("#description")
    assert "text" in tab.inner_text("#parameters")
    assert '{"text": "hi"}' in tab.inner_text("#examples")
    versions = tab.inner_text("#versions")
    assert "body of main.py changed" in versions and "first release" in versions
    assert "Ada Reviewer" in versions
    # the source is highlighted: keywords are spans with Pygments' classes
    assert tab.locator("#source span.k", has_text="raise").count() == 1

    tab.select_option("#version-select", "1.0.0")
    tab.click("form.version-pick button")
    tab.wait_for_url(re.compile(r"version=1\.0\.0"))
    assert tab.inner_text("#shown-version") == "1.0.0"
    source = tab.inner_text("#source")
    assert "return text.upper()" in source and "upstream changed" not in source

    tab.click("#versions a:text-is('1.0.1')")
    tab.wait_for_url(re.compile(r"version=1\.0\.1"))
    assert tab.inner_text("#shown-version") == "1.0.1"


def test_open_a_diff_side_by_side_and_unified(page: tuple[Any, Watch]) -> None:
    tab, _ = page
    tab.goto("/p/flaky")
    tab.click("a.difflink")
    tab.wait_for_url(re.compile(r"/p/flaky/diff/1\.0\.0\.\.1\.0\.1$"))
    split = tab.locator("table.diff.split")
    left = " ".join(split.locator("tr.changed td.src.l, tr.removed td.src.l").all_inner_texts())
    assert "ValueError('boom')" in left and "RuntimeError" not in left
    right = " ".join(split.locator("tr.changed td.src.r, tr.added td.src.r").all_inner_texts())
    assert "RuntimeError" in right and "ValueError" not in right

    tab.click("#unified-link")
    tab.wait_for_url(re.compile(r"view=unified"))
    removed = " ".join(tab.locator("table.diff.unified tr.removed").all_inner_texts())
    added = " ".join(tab.locator("table.diff.unified tr.added").all_inner_texts())
    assert "ValueError('boom')" in removed and "RuntimeError" in added


def test_the_runs_chart_appears_after_some_runs(page: tuple[Any, Watch], site: Site) -> None:
    tab, _ = page
    tab.goto("/p/slugify/runs")
    assert tab.locator("#no-runs").is_visible()
    with Registry.open(site.repo) as reg:
        for text in ("Hello World", "Über straße", "a b c"):
            assert reg.run("slugify", text=text).ok
    tab.reload()
    chart = tab.locator("#chart-success svg")
    assert chart.count() == 1
    assert chart.locator("polyline").count() == 1  # one version
    assert chart.locator("g.threshold").count() == 1
    assert "3 runs" in tab.inner_text("#run-summary")
    assert tab.locator("#recent-runs tbody tr").count() == 3

    tab.goto("/p/flaky")
    tab.click("nav.tabs a:text-is('Runs and charts')")
    tab.wait_for_url(re.compile(r"/p/flaky/runs$"))
    success = tab.locator("#chart-success svg")
    assert success.locator("polyline").count() == 2  # 1.0.0 and 1.0.1
    marker = success.locator("g.policy-move")
    assert marker.count() == 1
    assert "health policy: stable to 1.0.0" in marker.text_content()
    assert tab.locator("#chart-duration svg polyline").count() == 4  # p50 and p95 each
    assert "RuntimeError" in tab.inner_text("#recent-runs")
    assert "below 0.90" in tab.inner_text("#policy-moves")


def test_follow_a_health_policy_move_to_the_procedure(page: tuple[Any, Watch]) -> None:
    tab, _ = page
    tab.goto("/health")
    failing = tab.inner_text("#failing")
    assert "flaky" in failing and "1.0.1: 0% of 5, RuntimeError ×5" in failing
    tab.click("#policy-moves a.pid:text-is('flaky')")
    tab.wait_for_url(re.compile(r"/p/flaky$"))
    assert tab.inner_text("#channel-stable").startswith("stable: 1.0.0")
    moves = tab.locator("table.moves tr.health")
    assert moves.count() == 1
    text = moves.inner_text()
    assert "health policy" in text
    assert "success rate 0.00 over the last 5 runs of 1.0.1 is below 0.90" in text


def test_a_script_in_a_description_shows_as_text(page: tuple[Any, Watch]) -> None:
    tab, _ = page
    tab.goto("/?q=harmless")
    assert ids_listed(tab) == ["xss"]
    assert "<b>Bold</b> name" in tab.inner_text("#results")
    tab.click("#results a.pid")
    tab.wait_for_url(re.compile(r"/p/xss$"))
    description = tab.inner_text("#description")
    assert "<script>window.__pwned = 1;" in description
    assert '<img src=x onerror="window.__pwned = 2">' in description
    assert tab.locator("h1").inner_text() == "xss — <b>Bold</b> name"
    assert tab.locator("script, main img, h1 b").count() == 0
    assert tab.evaluate("window.__pwned") is None
    assert tab.title() != "pwned"


def test_every_page_has_json_and_a_strict_policy(site: Site) -> None:
    pages: dict[str, type[BaseModel]] = {
        "/": IndexPage,
        "/p/flaky": ProcedurePage,
        "/p/flaky/diff/1.0.0..1.0.1": DiffPage,
        "/p/flaky/runs": RunsPage,
        "/health": HealthPage,
    }
    for path, model in pages.items():
        html = httpx2.get(site.base + path)
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert html.headers["content-security-policy"] == CSP
        assert html.headers["x-content-type-options"] == "nosniff"
        for answer in (
            httpx2.get(site.base + path, params={"format": "json"}),
            httpx2.get(site.base + path, headers={"Accept": "application/json"}),
        ):
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "application/json"
            assert answer.headers["content-security-policy"] == CSP
            model.model_validate(answer.json())
    detail = httpx2.get(site.base + "/p/xss", params={"format": "json"}).json()
    assert "<script>" in detail["selected"]["metadata"]["description"]  # data, unchanged
    assert "&lt;script&gt;window.__pwned" in httpx2.get(site.base + "/p/xss").text
    assert "<script>" not in httpx2.get(site.base + "/p/xss").text


def test_read_only_errors_and_a_foreign_host(site: Site) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert httpx2.request(method, site.base + "/p/flaky").status_code == 405
    assert httpx2.head(site.base + "/p/flaky").status_code == 200
    missing = httpx2.get(site.base + "/p/no-such-thing", params={"format": "json"})
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFoundError"
    assert httpx2.get(site.base + "/p/no-such-thing").status_code == 404
    assert httpx2.get(site.base + "/?page=x").status_code == 400
    assert httpx2.get(site.base + "/p/flaky/diff/1.0.0").status_code == 400
    assert httpx2.get(site.base + "/p/flaky/diff/1.0.0..1.0.1..HEAD").status_code == 400
    assert httpx2.get(site.base + "/p/flaky/diff/1.0.0..9.9.9").status_code == 404
    assert httpx2.get(site.base + "/p/flaky?version=-rf").status_code == 400
    assert httpx2.get(site.base + "/p/Bad..Id").status_code == 400
    assert httpx2.get(site.base + "/p/flaky?version=9.9.9").status_code == 404
    # open without tokens only to this machine: a rebound name is not loopback
    foreign = httpx2.get(site.base + "/", headers={"Host": "attacker.example:80"})
    assert foreign.status_code == 403
    css = httpx2.get(site.base + "/static/pygments.css")
    assert css.status_code == 200 and ".code .k" in css.text


def test_screenshots_of_the_main_pages(page: tuple[Any, Watch], tmp_path: Path) -> None:
    tab, _ = page
    folder = Path(os.environ.get("PROCREG_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shots = {
        "index": "/",
        "procedure": "/p/flaky",
        "diff": "/p/flaky/diff/1.0.0..1.0.1",
        "runs": "/p/flaky/runs",
        "health": "/health",
    }
    for name, path in shots.items():
        tab.goto(path)
        target = folder / f"{name}.png"
        tab.screenshot(path=str(target), full_page=True)
        assert target.read_bytes().startswith(b"\x89PNG")
