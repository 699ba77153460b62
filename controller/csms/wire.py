"""Small helpers for OCPP 1.6J wire values: timestamps and numbers as the schemas want them.

The 1.6 JSON schemas declare ``"format": "date-time"`` but the library's validator does not
check formats, so these helpers are what keeps our timestamps right: UTC, millisecond
precision, an explicit ``Z``.
"""

from __future__ import annotations

import datetime as dt
import math


def iso_utc(moment: dt.datetime) -> str:
    """``moment`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    utc = moment.astimezone(dt.UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> dt.datetime:
    """An OCPP dateTime as an aware UTC datetime (a value without an offset is UTC).

    Raises ``ValueError`` for text that is not an ISO 8601 date-time.
    """
    moment = dt.datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def decimal_text(value: float, places: int = 2) -> str:
    """A measured value as the decimal string SampledValue wants (no exponent, no ``-0``).

    Raises ``ValueError`` for NaN or infinity: a meter never measures those.
    """
    if not math.isfinite(value):
        raise ValueError(f"not a finite measurement: {value!r}")
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
