"""Split a URL into its parts, with the query string decoded."""

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


def main(url: str) -> dict[str, Any]:
    """Return the parts of ``url``: scheme, credentials, host, port, path, query, fragment.

    The host is lower-cased and loses IPv6 brackets; the port is an integer or
    null. ``query`` maps each name to its value (the last one when a name
    repeats) and ``query_pairs`` keeps every pair in order. Names and values are
    percent-decoded ("+" is a space); the path is left as written.
    """
    text = url.strip()
    if not text:
        raise ValueError("url is empty; pass a URL such as 'https://example.com/path?q=1'")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"cannot parse url {url!r}: {exc}") from None
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    return {
        "scheme": parts.scheme,
        "username": unquote(parts.username) if parts.username is not None else None,
        "password": unquote(parts.password) if parts.password is not None else None,
        "host": parts.hostname,
        "port": port,
        "path": parts.path,
        "query": dict(pairs),
        "query_pairs": [[name, value] for name, value in pairs],
        "fragment": parts.fragment,
    }
