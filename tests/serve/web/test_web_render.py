"""The web view's pure parts: highlighting that escapes, diff rows, SVG charts, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry.errors import UsageError
from registry.index.contract import ExecutionRecord
from registry.serve.web import charts, render
from registry.serve.web.pages import Filters

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def run(n: int, version: str, ok: bool, ms: float = 10.0) -> ExecutionRecord:
    return ExecutionRecord(
        run_id=f"r{n}",
        id="p",
        version=version,
        started_at=T0 + timedelta(seconds=n),
        duration_ms=ms,
        outcome="success" if ok else "failure",
    )


def test_highlighted_lines_escape_everything_and_keep_every_line() -> None:
    text = 'def main():\n    return "</span><script>x</script>"\n\n# end'
    lines = render.highlight_lines(text, "main.py")
    assert len(lines) == 4
    assert "<script>" not in "".join(lines)
    assert "&lt;script&gt;" in lines[1]
    assert '<span class="k">def</span>' in lines[0]
    assert lines[2] == ""
    assert render.highlight_lines("", "main.py") == []
    assert render.highlight_lines("a\n", "notes.txt") == ["a"]


@pytest.mark.parametrize(
    ("old", "new", "kinds"),
    [
        ("a\nb\nc\n", "a\nB\nc\n", ["equal", "changed", "equal"]),
        ("a\n", "a\nb\n", ["equal", "added"]),
        ("a\nb\n", "a\n", ["equal", "removed"]),
        (None, "x\n", ["added"]),
        ("x\n", None, ["removed"]),
        ("\n".join(map(str, range(20))), "\n".join(["X", *map(str, range(1, 19)), "Y"]),
         ["changed", "equal", "equal", "equal", "gap", "equal", "equal", "equal", "changed"]),
    ],
)  # fmt: skip
def test_diff_rows(old: str | None, new: str | None, kinds: list[str]) -> None:
    rows = render.diff_rows("main.py", old, new)
    assert [r.kind for r in rows] == kinds
    unified = render.unified_rows(rows)
    assert "changed" not in [r.kind for r in unified]
    assert len(unified) == len(rows) + kinds.count("changed")


def test_series_is_the_rolling_window_per_version() -> None:
    runs = [run(i, "1.0.0", True, 10 + i) for i in range(4)] + [
        run(10 + i, "1.0.1", i == 0) for i in range(3)
    ]
    data = charts.series(runs, window=2)
    assert [p.rate for p in data["1.0.0"]] == [1.0, 1.0, 1.0, 1.0]
    assert [p.rate for p in data["1.0.1"]] == [1.0, 0.5, 0.0]
    assert [p.seq for p in data["1.0.1"]] == [4, 5, 6]
    assert data["1.0.0"][-1].p95 == 13.0


def test_series_leaves_out_the_attempts_whose_worker_died() -> None:
    lost = run(5, "1.0.0", False).model_copy(update={"error_type": "WorkerLost"})
    data = charts.series([run(0, "1.0.0", True), lost, run(9, "1.0.0", True)], window=5)
    assert [p.rate for p in data["1.0.0"]] == [1.0, 1.0]


def test_the_success_chart_draws_threshold_versions_and_policy_moves() -> None:
    runs = [run(i, "1.0.0", True) for i in range(3)]
    runs += [run(5 + i, "1.<0>", False) for i in range(3)]
    data = charts.series(runs, 5)
    svg = charts.success_chart(
        data, 0.9, 5, [charts.Marker(T0 + timedelta(seconds=8), "health: <stable>")]
    )
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2
    assert 'class="threshold"' in svg and "health threshold 90%" in svg
    assert 'class="policy-move"' in svg
    assert "&lt;stable&gt;" in svg and "<stable>" not in svg
    assert "1.&lt;0&gt;" in svg
    assert "style=" not in svg  # the page's CSP allows no inline style
    duration = charts.duration_chart(data, 5, [])
    assert duration.count("<polyline") == 4
    assert charts.success_chart({}, 0.9, 5, []) == ""


def test_filters_parse_the_query_string_and_name_what_is_wrong() -> None:
    f = Filters.parse({"q": " csv ", "health": "failing", "page": "2"})
    assert (f.q, f.health, f.page) == ("csv", "failing", 2)
    assert f.query(page=3) == {"q": "csv", "health": "failing", "page": "3"}
    assert Filters.parse({}).query() == {}
    with pytest.raises(UsageError, match="health must be"):
        Filters.parse({"health": "great"})
    with pytest.raises(UsageError, match="page must be a number"):
        Filters.parse({"page": "two"})
    with pytest.raises(UsageError, match="validity"):
        Filters.parse({"validity": "maybe"})
