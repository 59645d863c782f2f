"""Parse a Conventional Commits message into type, scope, description, body and footers."""

import re
from typing import Any

_HEADER = re.compile(
    r"(?P<type>[A-Za-z][A-Za-z0-9-]*)(?:\((?P<scope>[^()\r\n]+)\))?"
    r"(?P<bang>!)?: (?P<description>\S.*)"
)
_FOOTER = re.compile(
    r"(?P<token>BREAKING[ -]CHANGE|[A-Za-z][A-Za-z0-9-]*)(?P<sep>: | #)(?P<value>.*)"
)
_BREAKING_TOKENS = ("BREAKING CHANGE", "BREAKING-CHANGE")


def _paragraphs(lines: list[str]) -> list[list[str]]:
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def _footers(paragraphs: list[list[str]]) -> list[dict[str, str]]:
    footers: list[dict[str, str]] = []
    for line in (line for paragraph in paragraphs for line in paragraph):
        match = _FOOTER.fullmatch(line)
        if match:
            value = match["value"] if match["sep"] == ": " else "#" + match["value"]
            footers.append({"token": match["token"], "value": value.strip()})
        else:
            footers[-1]["value"] += "\n" + line
    return footers


def main(message: str) -> dict[str, Any]:
    """Return the parts of a commit message written to the Conventional Commits 1.0 spec.

    The header is ``type(scope)!: description``. The footers are the trailing
    paragraphs that start with ``Token: value`` or ``Token #value`` (lines that
    do not match continue the previous footer); everything between is the body.
    ``breaking`` is true for a "!" or a BREAKING CHANGE footer, and ``bump`` is
    the semver bump the commit calls for: major, minor (feat), patch (fix,
    perf) or null.
    """
    lines = message.strip().splitlines()
    if not lines:
        raise ValueError("commit message is empty")
    header = _HEADER.fullmatch(lines[0].strip())
    if header is None:
        raise ValueError(
            f"not a conventional commit header: {lines[0].strip()!r}; "
            "expected 'type(scope)!: description', e.g. 'feat(api): add search'"
        )
    paragraphs = _paragraphs(lines[1:])
    split = len(paragraphs)
    while split > 0 and _FOOTER.fullmatch(paragraphs[split - 1][0]):
        split -= 1
    footers = _footers(paragraphs[split:])
    breaking_notes = [f["value"] for f in footers if f["token"] in _BREAKING_TOKENS]
    breaking = bool(header["bang"]) or bool(breaking_notes)
    description = header["description"].strip()
    kind = header["type"].lower()
    if breaking:
        bump = "major"
    elif kind == "feat":
        bump = "minor"
    elif kind in ("fix", "perf"):
        bump = "patch"
    else:
        bump = None
    return {
        "type": kind,
        "scope": header["scope"],
        "breaking": breaking,
        "description": description,
        "body": "\n\n".join("\n".join(p) for p in paragraphs[:split]) or None,
        "footers": footers,
        # Without a footer, the spec makes the description the breaking-change note.
        "breaking_change": "\n".join(breaking_notes) or (description if breaking else None),
        "bump": bump,
    }
