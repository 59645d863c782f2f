"""Find the email addresses in a text."""

import re

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"([A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*)"
    r"@"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})"
    r"(?![A-Za-z0-9-])"
)


def main(text: str, unique: bool = True) -> list[str]:
    """Return the email addresses found in ``text``, in order of appearance.

    Matches practical addresses (``name.tag+x@sub.example.org``): a dotted
    local part and a domain of DNS labels ending in an alphabetic top-level
    domain. Surrounding punctuation, "mailto:" and angle brackets are left out.
    Domains are lower-cased; local parts keep their case. With ``unique``,
    repeats (compared case-insensitively) are dropped.
    """
    found: list[str] = []
    seen: set[str] = set()
    for match in _EMAIL.finditer(text):
        address = f"{match[1]}@{match[2].lower()}"
        if unique:
            if address.lower() in seen:
                continue
            seen.add(address.lower())
        found.append(address)
    return found
