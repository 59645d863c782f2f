"""Encode text as Base64 or decode Base64 back to text (standard or URL-safe alphabet)."""

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _decode(data: str) -> str:
    # Both alphabets are accepted: "-" and "_" are the URL-safe "+" and "/".
    compact = "".join(data.split()).translate(str.maketrans("-_", "+/"))
    if not _ALPHABET.fullmatch(compact):
        bad = next(c for c in compact.rstrip("=") if not re.fullmatch(r"[A-Za-z0-9+/]", c))
        raise ValueError(f"not Base64: unexpected character {bad!r}")
    digits = compact.rstrip("=")
    if len(digits) % 4 == 1:
        raise ValueError(
            f"not Base64: {len(digits)} characters (one more than a multiple of 4) "
            "cannot encode whole bytes; is the text truncated?"
        )
    try:
        raw = base64.b64decode(digits + "=" * (-len(digits) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not Base64: {exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"the decoded bytes are not UTF-8 text (invalid byte at offset {exc.start}); "
            "this procedure only returns text"
        ) from None


def main(data: str, mode: str = "encode", url_safe: bool = False, padding: bool = True) -> str:
    """Return ``data`` Base64-encoded (``mode`` "encode") or decoded (``mode`` "decode").

    Encoding takes the UTF-8 bytes of the text; ``url_safe`` uses "-" and "_"
    instead of "+" and "/" and ``padding`` false drops the trailing "=" (as in
    JWTs). Decoding accepts either alphabet, missing padding and embedded white
    space, and fails if the bytes are not UTF-8 text.
    """
    if mode == "encode":
        raw = data.encode("utf-8")
        encoded = (base64.urlsafe_b64encode(raw) if url_safe else base64.b64encode(raw)).decode()
        return encoded if padding else encoded.rstrip("=")
    if mode == "decode":
        return _decode(data)
    raise ValueError(f"mode must be 'encode' or 'decode', got {mode!r}")
