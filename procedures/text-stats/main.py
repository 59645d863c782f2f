"""Count characters, words, sentences and paragraphs of a text, with reading time."""

import math
import re
import unicodedata
from collections import Counter
from typing import Any

# A word is a run of letters or digits, possibly joined by apostrophes or hyphens.
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
# CJK full stops end a sentence even without a following space.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])\s*")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def main(text: str, words_per_minute: int = 200, top: int = 5) -> dict[str, Any]:
    """Return statistics about ``text``.

    Characters are Unicode code points after NFC normalisation. Words are runs
    of letters or digits ("don't" and "well-known" are one word each).
    Sentences end with ., !, ? or … followed by white space, or with a CJK full stop
    (a heuristic: "e.g. this" counts two). Scripts written without spaces count
    each run of letters as one word. Paragraphs are separated by blank lines.
    ``top_words`` lists the ``top`` most frequent lower-cased words, ties in
    order of first appearance.
    """
    if words_per_minute <= 0:
        raise ValueError(f"words_per_minute must be positive, got {words_per_minute}")
    if top < 0:
        raise ValueError(f"top must be 0 or more, got {top}")
    text = unicodedata.normalize("NFC", text)
    words = _WORD.findall(text)
    counts = Counter(word.lower() for word in words)
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return {
        "characters": len(text),
        "characters_no_spaces": sum(not char.isspace() for char in text),
        "words": len(words),
        "unique_words": len(counts),
        "sentences": sum(1 for s in _SENTENCE_END.split(text.strip()) if _WORD.search(s)),
        "paragraphs": sum(1 for p in _BLANK_LINE.split(text) if p.strip()),
        "lines": len(text.splitlines()),
        "average_word_length": round(sum(map(len, words)) / len(words), 2) if words else 0.0,
        "reading_time_seconds": math.ceil(len(words) * 60 / words_per_minute),
        "top_words": [[word, count] for word, count in ranked],
    }
