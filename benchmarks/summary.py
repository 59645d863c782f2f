"""``benchmarks/results/summary.md``: one markdown table of every scenario's latest results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ORDER = ["reindex", "sync", "watch", "query", "log", "release", "peer", "run", "ingest",
         "startup", "mcp", "envs"]  # fmt: skip


def _cell(figure: dict[str, Any] | None) -> str:
    if not figure:
        return "-"
    if "exponent" in figure:
        return "-" if figure["exponent"] is None else f"N^{figure['exponent']}"
    if "value" in figure:
        return f"{figure['value']:,} {figure.get('unit', '')}".strip()
    if figure.get("median_ms") is None:
        return str(figure.get("note", "-"))
    ms = figure["median_ms"]
    text = f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.2f} ms"
    return f"> {text} (timeout)" if figure.get("lower_bound") else text


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:,}x"


def write_summary(results: Path) -> Path:
    """Combine every ``<scenario>.json`` under ``results`` into ``summary.md``."""
    files = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    files = {k: v for k, v in files.items() if "rows" in v}  # only this suite's result files
    names = [n for n in ORDER if n in files] + sorted(set(files) - set(ORDER))
    lines = []
    if names:
        m = files[names[0]]["machine"]
        lines += [
            f"Machine: {m['cores']} cores, {m['memory_mb'] // 1024} GiB, {m['processor']}, "
            f"Python {m['python']}, pygit2 {m['pygit2']} / libgit2 {m['libgit2']}, "
            f"PostgreSQL {m['postgresql']}, SQLite {m['sqlite']}; "
            f"load average at start {m['load_average_at_start']}.",
            "",
        ]
    lines += [
        "| scenario | figure | size | procreg median | baseline | baseline median | "
        "ratio | limit | limit median | x limit | target | met? |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        data = files[name]
        for r in data["rows"]:
            ratio = r.get("ratio_baseline_over_procreg")
            met = {True: "yes", False: "**no**", None: "-"}[r.get("met")]
            lines.append(
                f"| {name} | {r['figure']} | {r['size']} | {_cell(r['procreg'])} | "
                f"{r.get('baseline_name') or '-'} | {_cell(r.get('baseline'))} | "
                f"{'-' if ratio is None else f'{ratio:,}x'} | {r.get('limit_name') or '-'} | "
                f"{_cell(r.get('limit'))} | {_x(r.get('ratio_procreg_over_limit'))} | "
                f"{r.get('target') or '-'} | {met} |"
            )
    stamps = sorted(f"{n}: {files[n]['measured_at']} ({files[n]['params']['mode']})"
                    for n in names)  # fmt: skip
    lines += ["", "Measured: " + "; ".join(stamps) + ".", ""]
    out = results / "summary.md"
    out.write_text("\n".join(lines))
    return out
