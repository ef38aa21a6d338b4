"""What several modules of the generator share: stream tags, CSV quoting, small helpers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timezone

import numpy as np

# Stream tags: each part of the data has its own random stream.
CUSTOMER_STREAM = 1
ORDER_STREAM = 2
BAD_ROW_STREAM = 3


def unix_time(day: date) -> int:
    """Unix seconds of midnight UTC at the start of ``day``."""
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def int_strings(values: np.ndarray) -> list[str]:
    """Integers as decimal strings."""
    return list(map(str, values.tolist()))


def row_cdf(probabilities: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sums with the last column forced to exactly 1."""
    cdf = np.cumsum(probabilities, axis=1)
    cdf[:, -1] = 1.0
    return cdf


def escape(text: str) -> str:
    """Escape a field for a quoted CSV field: double every quote (RFC 4180)."""
    return text.replace('"', '""')


def unescape(text: str) -> str:
    """Inverse of :func:`escape`."""
    return text.replace('""', '"')


def quoted_line(fields: Sequence[str]) -> str:
    """One CSV record with every field quoted, exactly as ``csv.writer(QUOTE_ALL)`` writes it."""
    return '"' + '","'.join(escape(f) for f in fields) + '"\n'
