"""Add (or subtract) business days to a date, skipping weekends and holidays."""

import datetime

_MAX_DAYS = 100_000


def _parse(value: str, name: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be an ISO date such as '2024-03-15', got {value!r}"
        ) from None


def main(date: str, days: int, holidays: list[str] | None = None) -> str:
    """Return the ISO date ``days`` business days after ``date`` (before it if negative).

    Business days are Monday to Friday minus ``holidays`` (ISO dates). The
    start date itself never counts, so from a Friday one business day is the
    next Monday, and ``days`` = 0 returns ``date`` unchanged even on a weekend
    (as spreadsheet WORKDAY does).
    """
    start = _parse(date, "date")
    closed = {_parse(day, f"holidays[{i}]") for i, day in enumerate(holidays or [])}
    if abs(days) > _MAX_DAYS:
        raise ValueError(f"days must be between -{_MAX_DAYS} and {_MAX_DAYS}, got {days}")
    step = datetime.timedelta(days=1 if days > 0 else -1)
    current = start
    remaining = abs(days)
    try:
        while remaining:
            current += step
            if current.weekday() < 5 and current not in closed:
                remaining -= 1
    except OverflowError:
        raise ValueError(f"the result falls outside the years 1 to 9999 (from {date})") from None
    return current.isoformat()
