"""The bad-row kinds, how many of each a batch gets, and how a good row is corrupted.

Every bad row is a corrupted copy of a good row, its donor; :mod:`recsys_assets.datagen`
describes the kinds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np

from recsys_assets.datagen._common import quoted_line, unescape
from recsys_assets.schemas import SALES_ORDERS_COLUMNS as ORDER_COLUMNS

BLANK_REQUIRED = "blank_required"
BAD_JSON = "bad_json"
NEGATIVE_QTY = "negative_qty"
NON_NUMERIC_QTY = "non_numeric_qty"
MISSING_PK = "missing_pk"
MALFORMED = "malformed"
#: The kinds that ``bad_fraction`` is split evenly over, in this order.
BAD_FRACTION_KINDS: tuple[str, ...] = (BLANK_REQUIRED, BAD_JSON, NEGATIVE_QTY, NON_NUMERIC_QTY)
BAD_ROW_KINDS: tuple[str, ...] = (*BAD_FRACTION_KINDS, MISSING_PK, MALFORMED)
#: Fields blanked by ``blank_required`` rows, in turn.
BLANKED_FIELDS: tuple[str, ...] = ("customer_id", "order_datetime", "ordered_products")


@dataclass(frozen=True)
class BadRowCounts:
    """Number of bad rows written, per kind (see the package docstring)."""

    blank_required: int = 0
    bad_json: int = 0
    negative_qty: int = 0
    non_numeric_qty: int = 0
    missing_pk: int = 0
    malformed: int = 0

    @property
    def total(self) -> int:
        """All bad rows."""
        return sum(self.as_dict().values())

    def as_dict(self) -> dict[str, int]:
        """Counts keyed by kind name, in ``BAD_ROW_KINDS`` order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_COL = {name: i for i, name in enumerate(ORDER_COLUMNS)}
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _corrupt(kind: str, row: list[str], nth: int, rng: np.random.Generator) -> list[str]:
    """Turn a copy of a good row into a bad row of ``kind`` (``nth`` of that kind)."""
    products = _COL["ordered_products"]
    if kind == BLANK_REQUIRED:
        row[_COL[BLANKED_FIELDS[nth % len(BLANKED_FIELDS)]]] = ""
    elif kind == BAD_JSON:
        row[products] = row[products][: len(row[products]) // 2]
    elif kind in (NEGATIVE_QTY, NON_NUMERIC_QTY):
        items = json.loads(row[products])
        qty = int(items[0]["qty"])
        if kind == NEGATIVE_QTY:
            items[0]["qty"] = -int(rng.integers(1, 4)) * qty
        else:
            items[0]["qty"] = _NUMBER_WORDS[qty]
        row[products] = json.dumps(items)
    elif kind == MISSING_PK:
        row[_COL["order_number"]] = ""
    elif kind == MALFORMED:
        row = row[:5] if nth % 2 == 0 else [*row, "unexpected"]
    return row


def draw_bad_rows(
    rng: np.random.Generator,
    counts: BadRowCounts,
    columns: list[list[str]],
    next_number: int,
) -> tuple[list[str], np.ndarray]:
    """Bad rows as CSV lines, sorted by donor (the good row each copies), and their donors."""
    n_good = len(columns[0])
    per_kind = counts.as_dict()
    kinds = np.repeat(np.arange(len(BAD_ROW_KINDS)), [per_kind[k] for k in BAD_ROW_KINDS])
    kinds = rng.permutation(kinds)
    donors = rng.integers(0, n_good, len(kinds)) if n_good else np.zeros(0, dtype=np.int64)
    by_donor = np.argsort(donors, kind="stable")
    kinds, donors = kinds[by_donor], donors[by_donor]
    seen = dict.fromkeys(BAD_ROW_KINDS, 0)
    lines: list[str] = []
    for k, donor in zip(kinds.tolist(), donors.tolist(), strict=True):
        kind = BAD_ROW_KINDS[k]
        row = [unescape(column[donor]) for column in columns]
        row[_COL["order_number"]] = str(next_number)
        row = _corrupt(kind, row, seen[kind], rng)
        seen[kind] += 1
        if len(row) > _COL["order_number"] and row[_COL["order_number"]]:
            next_number += 1
        lines.append(quoted_line(row))
    return lines, donors


def bad_row_counts(
    n_good: int, bad_fraction: float, missing_pk_fraction: float, malformed_fraction: float
) -> BadRowCounts:
    """How many bad rows of every kind: each fraction times the number of good orders."""
    if n_good == 0:
        return BadRowCounts()
    n_bad = round(bad_fraction * n_good)
    split = [
        n_bad // len(BAD_FRACTION_KINDS) + (i < n_bad % len(BAD_FRACTION_KINDS))
        for i in range(len(BAD_FRACTION_KINDS))
    ]
    return BadRowCounts(
        *split,
        missing_pk=round(missing_pk_fraction * n_good),
        malformed=round(malformed_fraction * n_good),
    )
