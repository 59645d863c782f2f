"""Mask passwords, API keys, tokens and private keys in text before it is logged or shared."""

import re
from typing import Any

_KEY_NAME = (
    r"(?:password|passwd|pwd|secret|secret[_-]?key|client[_-]?secret|token|"
    r"api[_-]?key|access[_-]?key|private[_-]?key|credentials?)"
)
# (kind, pattern, group to mask: 0 is the whole match, -1 the first group that matched).
# Quantifiers before a literal are bounded so that long runs of word characters
# cannot make a pattern backtrack quadratically.
_PATTERNS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    (
        "private_key",
        # Base64 never holds "-----", so the body ends at the END line; a key cut
        # short (no END line) is masked to the end all the same.
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:(?!-----)[\s\S])*"
            r"(?:-----END [A-Z ]*PRIVATE KEY-----)?"
        ),
        0,
    ),
    ("aws_access_key_id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), 0),
    (
        "github_token",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
        0,
    ),
    ("slack_token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), 0),
    ("stripe_key", re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"), 0),
    (
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
        0,
    ),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]+=*)"), 1),
    ("url_password", re.compile(r"(?i)\b[a-z][a-z0-9+.-]{0,30}://[^\s:/@]+:([^\s/@]+)@"), 1),
    (
        "assignment",
        re.compile(
            rf"(?i)\b[\w.-]{{0,64}}?{_KEY_NAME}[\"']?\s*[:=]\s*"
            r"(?:\"([^\"\n]+)\"|'([^'\n]+)'|([^\s\"',;]+))"
        ),
        -1,
    ),
)


def _span(match: re.Match[str], group: int) -> tuple[int, int]:
    if group >= 0:
        return match.span(group)
    index = next(i for i in range(1, len(match.groups()) + 1) if match[i] is not None)
    return match.span(index)


def main(text: str, mask: str = "****") -> dict[str, Any]:
    """Return ``text`` with every secret found replaced by ``mask``, and what was found.

    Detects private key blocks, AWS access key ids, GitHub, Slack and Stripe
    tokens, JWTs, bearer tokens, passwords in URLs ("https://user:pw@host")
    and values assigned to secret-looking names ("DB_PASSWORD=...",
    "api_key: ...", '"token": "..."'). Only the secret is masked: names,
    user names and quotes stay readable. ``count`` is the number of masks.
    """
    spans: list[tuple[int, int, str]] = []
    for kind, pattern, group in _PATTERNS:
        for match in pattern.finditer(text):
            start, end = _span(match, group)
            if start < end:
                spans.append((start, end, kind))
    spans.sort(key=lambda span: (span[0], -span[1]))
    kept: list[tuple[int, int, str]] = []
    for span in spans:
        if kept and span[0] < kept[-1][1]:
            continue  # overlaps a secret already masked, e.g. a JWT assigned to "token"
        kept.append(span)
    pieces: list[str] = []
    position = 0
    for start, end, _ in kept:
        pieces += [text[position:start], mask]
        position = end
    pieces.append(text[position:])
    return {
        "text": "".join(pieces),
        "count": len(kept),
        "kinds": sorted({kind for _, _, kind in kept}),
    }
