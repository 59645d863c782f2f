"""The runs charts, drawn on the server as plain SVG (no script, no library, no CDN).

Two charts over the same axis, one line per version: the success rate of the last
``window`` runs of that version (what the health policy evaluates), with the policy's
threshold drawn across, and the p50 and p95 duration of that same window. The axis
is the runs in the order they started (a burst of runs in one second stays readable;
its ends are labelled with their times). A vertical marker stands where the health
policy moved a channel: after the runs that started before it. Pure: runs and moves
in, SVG text out. Styling is by presentation attributes, never ``style``,
so the page's Content-Security-Policy (``style-src 'self'``) holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

from registry.core.failures import NOT_COUNTED
from registry.index.contract import UNVERSIONED, ExecutionRecord

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 28, 36
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@dataclass(frozen=True)
class Marker:
    """A moment to mark on the time axis (a health-policy move), with its label."""

    when: datetime
    label: str


@dataclass(frozen=True)
class Point:
    seq: int
    """The run's place among all runs charted, in the order they started."""
    when: datetime
    rate: float
    p50: float
    p95: float


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def series(runs: Sequence[ExecutionRecord], window: int) -> dict[str, list[Point]]:
    """Per version (oldest run first), each run's rolling window: success rate, p50, p95.

    A queued attempt whose worker died (``WorkerLost``) is not charted, as metrics and
    health do not count it.
    """
    counted = [r for r in runs if r.error_type not in NOT_COUNTED]
    by_version: dict[str, list[tuple[int, ExecutionRecord]]] = {}
    for seq, run in enumerate(sorted(counted, key=lambda r: r.started_at)):
        by_version.setdefault(run.version or UNVERSIONED, []).append((seq, run))
    out: dict[str, list[Point]] = {}
    for version, rows in by_version.items():
        points = []
        for i, (seq, run) in enumerate(rows):
            recent = [r for _, r in rows[max(0, i + 1 - window) : i + 1]]
            durations = [r.duration_ms for r in recent]
            ok = sum(r.outcome == "success" for r in recent)
            points.append(
                Point(
                    seq,
                    run.started_at,
                    ok / len(recent),
                    _percentile(durations, 0.5),
                    _percentile(durations, 0.95),
                )
            )
        out[version] = points
    return out


class _Axes:
    """Maps run numbers and values to the plot area."""

    def __init__(self, runs: int, top: float) -> None:
        self.span = max(runs - 1, 1)
        self.top = top if top > 0 else 1.0

    def x(self, seq: float) -> float:
        inner = WIDTH - LEFT - RIGHT
        return round(LEFT + inner * seq / self.span, 1)

    def y(self, value: float) -> float:
        inner = HEIGHT - TOP - BOTTOM
        return round(TOP + inner * (1 - min(value, self.top) / self.top), 1)


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** (len(str(int(value))) - 1)
    for factor in (1, 2, 5, 10):
        if value <= factor * step:
            return float(factor * step)
    return float(10 * step)


def _frame(title: str, axes: _Axes, ticks: Sequence[tuple[float, str]], start: datetime,
           end: datetime, runs: int) -> list[str]:  # fmt: skip
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold" fill="#222">'
        f"{escape(title)}</text>",
    ]
    for value, label in ticks:
        y = axes.y(value)
        parts.append(
            f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#e5e5e5"/>'
            f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end" fill="#555">{label}</text>'
        )
    base = HEIGHT - BOTTOM
    parts.append(
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#888"/>'
        f'<text x="{LEFT}" y="{base + 16}" fill="#555">{start:%Y-%m-%d %H:%M:%S}</text>'
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{base + 16}" text-anchor="middle" '
        f'fill="#555">{runs} runs, in the order they started</text>'
        f'<text x="{WIDTH - RIGHT}" y="{base + 16}" text-anchor="end" fill="#555">'
        f"{end:%Y-%m-%d %H:%M:%S} UTC</text>"
    )
    return parts


def _polyline(points: Sequence[tuple[float, float]], colour: str, dashed: bool = False) -> str:
    coords = " ".join(f"{x},{y}" for x, y in points)
    dash = ' stroke-dasharray="4 3"' if dashed else ""
    dots = "".join(f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>' for x, y in points[-1:])
    return (
        f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.8"{dash}/>'
        + dots
    )


def _legend(versions: Sequence[str], extra: str = "") -> str:
    parts = []
    x = WIDTH - RIGHT
    for i, version in reversed(list(enumerate(versions))):
        label = escape(version)
        x -= 14 + 7 * len(version)
        colour = COLOURS[i % len(COLOURS)]
        parts.append(
            f'<rect x="{x}" y="7" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 13}" y="16" fill="#222">{label}</text>'
        )
    if extra:
        parts.append(f'<text x="{x - 8}" y="16" text-anchor="end" fill="#555">{extra}</text>')
    return "".join(parts)


def _place(points: Sequence[Point], when: datetime) -> float:
    """Where a moment falls among the runs: after those that started before it.

    Tag dates keep whole seconds, so a move at ``when`` happened within the second
    after it; runs that started in that second count as before it.
    """
    cutoff = int(when.timestamp()) + 1
    before = [p.seq for p in points if p.when.timestamp() < cutoff]
    if not before:
        return 0.0  # before every charted run: at the left edge
    last = max(before)
    return last + 0.5 if last < points[-1].seq else float(last)


def _markers(axes: _Axes, data: dict[str, list[Point]], markers: Sequence[Marker]) -> list[str]:
    parts = []
    points = sorted((p for ps in data.values() for p in ps), key=lambda p: p.seq)
    for m in markers:
        x = axes.x(_place(points, m.when))
        left = x < WIDTH / 2
        parts.append(
            f'<g class="policy-move"><title>{escape(m.label)}</title>'
            f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{HEIGHT - BOTTOM}" stroke="#7a0177" '
            'stroke-width="1.5" stroke-dasharray="2 2"/>'
            f'<text x="{x + 3 if left else x - 3}" y="{TOP + 24}" fill="#7a0177" '
            f'text-anchor="{"start" if left else "end"}">{escape(m.label)}</text></g>'
        )
    return parts


def _span(data: dict[str, list[Point]]) -> tuple[int, datetime, datetime]:
    points = [p for ps in data.values() for p in ps]
    return len(points), min(p.when for p in points), max(p.when for p in points)


def success_chart(
    data: dict[str, list[Point]], threshold: float, window: int, markers: Sequence[Marker]
) -> str:
    """Success rate of each version's last ``window`` runs over time, threshold and moves."""
    if not data:
        return ""
    runs, start, end = _span(data)
    axes = _Axes(runs, 1.0)
    ticks = [(v, f"{v:.0%}") for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    title = f"Success rate, last {window} runs of each version"
    parts = _frame(title, axes, ticks, start, end, runs)
    y = axes.y(threshold)
    parts.append(
        f'<g class="threshold"><line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" '
        'stroke="#e6550d" stroke-width="1.2" stroke-dasharray="6 4"/>'
        f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4}" text-anchor="end" fill="#e6550d">'
        f"health threshold {threshold:.0%}</text></g>"
    )
    for i, (_version, points) in enumerate(data.items()):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(_polyline([(axes.x(p.seq), axes.y(p.rate)) for p in points], colour))
    parts += _markers(axes, data, markers)
    parts.append(_legend(list(data)))
    parts.append("</svg>")
    return "".join(parts)


def duration_chart(data: dict[str, list[Point]], window: int, markers: Sequence[Marker]) -> str:
    """p50 (solid) and p95 (dashed) duration of each version's last ``window`` runs."""
    if not data:
        return ""
    runs, start, end = _span(data)
    top = _nice_ceiling(max(p.p95 for points in data.values() for p in points))
    axes = _Axes(runs, top)
    ticks = [(top * f, f"{top * f:g} ms") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    title = f"Duration p50 / p95, last {window} runs of each version"
    parts = _frame(title, axes, ticks, start, end, runs)
    for i, (_version, points) in enumerate(data.items()):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(_polyline([(axes.x(p.seq), axes.y(p.p50)) for p in points], colour))
        parts.append(
            _polyline([(axes.x(p.seq), axes.y(p.p95)) for p in points], colour, dashed=True)
        )
    parts += _markers(axes, data, markers)
    parts.append(_legend(list(data), "solid p50, dashed p95"))
    parts.append("</svg>")
    return "".join(parts)
