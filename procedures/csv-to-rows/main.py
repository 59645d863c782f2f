"""Parse CSV text into JSON rows: objects keyed by the header, or plain arrays."""

import csv
import io
import re
from typing import Any

_INTEGER = re.compile(r"-?(?:0|[1-9]\d*)")
_FLOAT = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|-?\.\d+")


def _infer(cell: str) -> Any:
    """A cell as JSON: "" is null, true/false booleans, plain numbers numbers."""
    if cell == "":
        return None
    if cell.lower() in ("true", "false"):
        return cell.lower() == "true"
    if _INTEGER.fullmatch(cell):
        return int(cell)
    if _FLOAT.fullmatch(cell):
        return float(cell)
    return cell  # including "007": leading zeros mean an identifier, not a number


def main(
    text: str, delimiter: str = ",", header: bool = True, infer_types: bool = False
) -> list[Any]:
    """Return the rows of the CSV ``text``.

    With ``header`` the first row names the columns and every row becomes an
    object; a row with a different number of fields is an error that names its
    line. Without it each row is an array of strings. Quoting follows RFC 4180
    (quoted fields may hold delimiters, quotes as "" and line breaks). Blank
    lines and a leading byte-order mark are ignored. ``infer_types`` turns
    empty cells into null, true/false into booleans and plain numbers into
    numbers (but keeps "007" a string).
    """
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise ValueError(f"delimiter must be one character other than a quote, got {delimiter!r}")
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if row:
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise ValueError(f"line {reader.line_num}: {exc}") from None
    convert = _infer if infer_types else str
    if not header:
        return [[convert(cell) for cell in row] for _, row in rows]
    if not rows:
        return []
    names = rows[0][1]
    for index, name in enumerate(names, 1):
        if not name.strip():
            raise ValueError(f"header column {index} has no name")
        if name in names[: index - 1]:
            raise ValueError(f"header column {index} repeats the name {name!r}")
    records = []
    for line, row in rows[1:]:
        if len(row) != len(names):
            raise ValueError(f"line {line} has {len(row)} fields but the header has {len(names)}")
        records.append({name: convert(cell) for name, cell in zip(names, row, strict=True)})
    return records
