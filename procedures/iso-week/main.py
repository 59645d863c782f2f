"""The ISO 8601 week of a date: week-numbering year, week, weekday and week bounds."""

import datetime
from typing import Any


def main(date: str) -> dict[str, Any]:
    """Return the ISO week facts of ``date`` (an ISO date, or a datetime whose date is used).

    ISO weeks start on Monday and week 1 is the week holding the year's first
    Thursday, so early January can belong to the previous year's last week
    (2021-01-03 is in 2020-W53) and late December to the next year's week 1.
    """
    text = date.strip()
    try:
        if len(text) > 10:
            day = datetime.datetime.fromisoformat(text).date()
        else:
            day = datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"date must be an ISO date such as '2024-03-15' (or a datetime), got {date!r}"
        ) from None
    iso = day.isocalendar()
    monday = day - datetime.timedelta(days=iso.weekday - 1)
    if monday > datetime.date.max - datetime.timedelta(days=6):
        raise ValueError(f"the week of {date!r} ends after 9999-12-31, which is out of range")
    return {
        "year": iso.year,
        "week": iso.week,
        "weekday": iso.weekday,
        "week_string": f"{iso.year}-W{iso.week:02d}",
        "week_start": monday.isoformat(),
        "week_end": (monday + datetime.timedelta(days=6)).isoformat(),
        "weeks_in_year": datetime.date(iso.year, 12, 28).isocalendar().week,
    }
