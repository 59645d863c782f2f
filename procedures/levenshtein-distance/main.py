"""Levenshtein edit distance between two strings."""

import unicodedata

# Keeps a run well inside the 5-second limit (the algorithm is O(len(a) * len(b))).
_MAX_CELLS = 4_000_000


def main(a: str, b: str, ignore_case: bool = False) -> int:
    """Return the fewest single-character edits (insert, delete, substitute) from ``a`` to ``b``.

    Both strings are NFC-normalised first, so "é" typed as one or two code
    points is the same character; ``ignore_case`` compares case-folded text
    ("Straße" equals "STRASSE").
    """
    a = unicodedata.normalize("NFC", a)
    b = unicodedata.normalize("NFC", b)
    if ignore_case:
        a, b = a.casefold(), b.casefold()
    if len(a) * len(b) > _MAX_CELLS:
        raise ValueError(
            f"strings too long ({len(a)} x {len(b)} characters); "
            f"their lengths multiplied must stay under {_MAX_CELLS}"
        )
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]
