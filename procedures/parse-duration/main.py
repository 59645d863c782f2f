"""Parse a human or ISO 8601 duration ("1h30m", "PT1H30M", "1:30:00") into seconds."""

import re
from decimal import Decimal

_UNIT_NAMES = (
    (("us", "µs", "microsecond", "microseconds"), Decimal("0.000001")),
    (("ms", "msec", "millisecond", "milliseconds"), Decimal("0.001")),
    (("s", "sec", "secs", "second", "seconds"), Decimal(1)),
    (("m", "min", "mins", "minute", "minutes"), Decimal(60)),
    (("h", "hr", "hrs", "hour", "hours"), Decimal(3600)),
    (("d", "day", "days"), Decimal(86400)),
    (("w", "wk", "wks", "week", "weeks"), Decimal(604800)),
)
_UNITS = {name: seconds for names, seconds in _UNIT_NAMES for name in names}

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})\s*([a-zµ]+)")
_ISO = re.compile(
    rf"p(?:({_NUMBER})y)?(?:({_NUMBER})m)?(?:({_NUMBER})w)?(?:({_NUMBER})d)?"
    rf"(?:t(?=\d|\.)(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?)?"
)
_CLOCK = re.compile(r"(?:(\d+):([0-5]\d):|(\d+):)([0-5]\d(?:\.\d+)?)")


def _iso(text: str) -> Decimal:
    match = _ISO.fullmatch(text.replace(",", "."))
    if match is None or text in ("p", "pt"):
        raise ValueError(
            f"invalid ISO 8601 duration {text.upper()!r}; expected e.g. 'PT1H30M' or 'P2DT3H'"
        )
    years, months, *rest = match.groups()
    if any(value is not None and Decimal(value) for value in (years, months)):
        raise ValueError(
            f"{text.upper()!r} has years or months, which have no fixed length in seconds"
        )
    scales = (604800, 86400, 3600, 60, 1)
    return sum(
        (Decimal(v) * s for v, s in zip(rest, scales, strict=True) if v is not None), Decimal(0)
    )


def _clock(text: str) -> Decimal:
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid clock duration {text!r}; expected 'H:MM:SS' or 'M:SS'")
    hours, minutes, short_minutes, seconds = match.groups()
    if hours is None:
        return int(short_minutes) * 60 + Decimal(seconds)
    return int(hours) * 3600 + int(minutes) * 60 + Decimal(seconds)


def _units(text: str) -> Decimal:
    total = Decimal(0)
    position = 0
    for match in _PART.finditer(text):
        gap = text[position : match.start()].strip(" ,")
        if gap not in ("", "and") or (gap and not position):
            break
        number, unit = match.groups()
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in {text!r}; use ms, s, m, h, d or w")
        total += Decimal(number) * _UNITS[unit]
        position = match.end()
    if position == 0 or text[position:].strip():
        raise ValueError(
            f"cannot parse duration {text!r}; expected e.g. '1h30m', '90s' or '2 days'"
        )
    return total


def main(text: str) -> float:
    """Return the number of seconds ``text`` stands for (an integer when whole).

    Accepts unit sequences ("1h30m", "2 days, 3 hours", "1.5h", "250ms"), ISO
    8601 durations ("PT1H30M", "P1W", "P2DT3H"), clock form ("1:30:00" is
    H:MM:SS, "4:05" is M:SS) and a bare number of seconds ("90"). Arithmetic
    is exact ("1.1h" is 3960). Years and months are refused: their length varies.
    """
    normalized = text.strip().lower()
    if not normalized:
        raise ValueError("duration is empty; pass e.g. '1h30m' or 'PT90S'")
    if re.fullmatch(_NUMBER, normalized):
        seconds = Decimal(normalized)
    elif normalized.startswith("p"):
        seconds = _iso(normalized)
    elif ":" in normalized:
        seconds = _clock(normalized)
    else:
        seconds = _units(normalized)
    return int(seconds) if seconds == seconds.to_integral_value() else float(seconds)
