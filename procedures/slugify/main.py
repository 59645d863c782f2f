"""Turn any text into a URL- and filename-safe slug."""

import re
import unicodedata

# Letters that Unicode normalisation does not reduce to an ASCII base letter.
_TRANSLITERATE = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "TH",
        "ı": "i",
    }
)
_SEPARATORS = ("-", "_", ".")


def main(text: str, separator: str = "-", max_length: int = 0, lowercase: bool = True) -> str:
    """Return ``text`` as a slug: ASCII letters and digits joined by ``separator``.

    Accents are removed ("Crème" -> "creme"), apostrophes vanish ("don't" ->
    "dont"), every other run of punctuation or space becomes one separator, and
    characters with no ASCII form (emoji, CJK) are dropped. ``max_length`` > 0
    cuts the slug at a word boundary when one fits, else mid-word.
    """
    if separator not in _SEPARATORS:
        raise ValueError(f"separator must be one of '-', '_' or '.', got {separator!r}")
    if max_length < 0:
        raise ValueError(f"max_length must be 0 (no limit) or positive, got {max_length}")
    ascii_text = (
        unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE))
        .encode("ascii", "ignore")
        .decode("ascii")
        .replace("'", "")
    )
    if lowercase:
        ascii_text = ascii_text.lower()
    slug = separator.join(re.findall(r"[A-Za-z0-9]+", ascii_text))
    if max_length and len(slug) > max_length:
        cut = slug[:max_length]
        if slug[max_length] != separator and separator in cut:
            cut = cut.rsplit(separator, 1)[0]
        slug = cut.rstrip(separator)
    return slug
