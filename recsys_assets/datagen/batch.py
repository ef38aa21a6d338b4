"""One batch of data: ``generate`` writes its files and returns a ``GenerationSummary``.

Also what makes batches fit together: order numbers and the sales_orders file names.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from recsys_assets.datagen._common import BAD_ROW_STREAM, ORDER_STREAM, quoted_line, unix_time
from recsys_assets.datagen.bad_rows import BadRowCounts, bad_row_counts, draw_bad_rows
from recsys_assets.datagen.customers import make_customers
from recsys_assets.datagen.orders import draw_order_times, order_columns
from recsys_assets.schemas import CUSTOMERS_COLUMNS as CUSTOMER_COLUMNS
from recsys_assets.schemas import SALES_ORDERS_COLUMNS as ORDER_COLUMNS

ORDER_NUMBER_EPOCH = date(2019, 1, 1)
ORDER_NUMBER_STRIDE = 10_000_000


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate` wrote."""

    out_dir: Path
    customers_path: Path
    sales_orders_paths: tuple[Path, ...]
    customers: int  # distinct customers
    customer_rows: int  # rows of customers.csv (current + closed SCD2 records)
    orders: int  # good orders written
    bad_rows: BadRowCounts
    rows_per_file: tuple[int, ...]  # sales_orders rows (good + bad) per file
    start_date: date
    days: int
    seed: int

    @property
    def paths(self) -> tuple[Path, ...]:
        """Every file written."""
        return (self.customers_path, *self.sales_orders_paths)

    @property
    def rows_written(self) -> int:
        """sales_orders rows written, good and bad."""
        return self.orders + self.bad_rows.total

    def describe(self) -> str:
        """One-line human summary."""
        end = date.fromordinal(self.start_date.toordinal() + self.days - 1)
        bad = ", ".join(f"{k}={v}" for k, v in self.bad_rows.as_dict().items() if v)
        return (
            f"wrote {self.orders:,} orders (+{self.bad_rows.total:,} bad rows"
            f"{': ' + bad if bad else ''}) in {len(self.sales_orders_paths)} file(s) for "
            f"{self.customers:,} customers ({self.customer_rows:,} customer rows), "
            f"{self.start_date.isoformat()}..{end.isoformat()}, seed {self.seed}, "
            f"to {self.out_dir}"
        )


def order_number_base(start_date: date) -> int:
    """First order number of the batch starting on ``start_date``."""
    return (start_date - ORDER_NUMBER_EPOCH).days * ORDER_NUMBER_STRIDE


def sales_orders_filename(start_date: date, seed: int, part: int) -> str:
    """Name of one sales_orders file (``part`` counts from 0)."""
    return f"sales_orders_{start_date:%Y%m%d}_{seed}_{part:03d}.csv"


def _write_atomically(path: Path, lines: Sequence[str]) -> None:
    """Write text lines via a hidden temporary file (which Spark would ignore)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        fh.writelines(lines)
    os.replace(tmp, path)


def _write_customers(path: Path, rows: Sequence[Sequence[str]]) -> None:
    """customers.csv: plain CSV, quoting only fields that need it (the addresses)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(CUSTOMER_COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, path)


def _validate(
    customers: int,
    days: int,
    seed: int,
    start_date: date,
    orders: int | None,
    drops: int,
    fractions: dict[str, float],
) -> None:
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if start_date < ORDER_NUMBER_EPOCH:
        raise ValueError(f"start_date must be on or after {ORDER_NUMBER_EPOCH}, got {start_date}")
    if orders is not None and not 0 <= orders < ORDER_NUMBER_STRIDE:
        raise ValueError(f"orders must be in [0, {ORDER_NUMBER_STRIDE}), got {orders}")
    if drops < 1:
        raise ValueError(f"drops must be >= 1, got {drops}")
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")


def generate(
    out_dir: str | os.PathLike[str],
    *,
    customers: int = 1000,
    days: int = 90,
    seed: int = 0,
    start_date: date = date(2024, 1, 1),
    orders: int | None = None,
    drops: int = 1,
    bad_fraction: float = 0.0,
    missing_pk_fraction: float = 0.0,
    malformed_fraction: float = 0.0,
) -> GenerationSummary:
    """Write customers.csv and the sales_orders files of one batch under ``out_dir``.

    ``orders`` (if given) scales the order rates so that exactly that many good orders are
    written (bar a vanishingly unlikely shortfall); by default a customer places ~0.1-0.3
    orders per active day. Bad rows are extra rows, ``fraction * good orders`` of each
    kind. Existing sales_orders files of the same batch (same start date and seed) are
    replaced. Same arguments -> byte-identical files.
    """
    fractions = {
        "bad_fraction": bad_fraction,
        "missing_pk_fraction": missing_pk_fraction,
        "malformed_fraction": malformed_fraction,
    }
    _validate(customers, days, seed, start_date, orders, drops, fractions)
    out = Path(out_dir)
    population = make_customers(seed, customers)
    batch = [seed, start_date.toordinal(), days]
    cust, seconds = draw_order_times(
        np.random.default_rng([*batch, ORDER_STREAM]), population, start_date, days, orders
    )
    base = order_number_base(start_date)
    columns = order_columns(
        np.random.default_rng([*batch, ORDER_STREAM, 1]), population, cust, seconds, base
    )
    n_good = len(cust)
    counts = bad_row_counts(n_good, bad_fraction, missing_pk_fraction, malformed_fraction)
    if n_good + counts.total > ORDER_NUMBER_STRIDE:
        raise ValueError(f"a batch holds at most {ORDER_NUMBER_STRIDE:,} rows")
    bad, donors = draw_bad_rows(
        np.random.default_rng([*batch, BAD_ROW_STREAM]), counts, columns, base + n_good
    )
    # The columns are already CSV-escaped, so a record is just quotes and commas around them.
    good = ['"' + '","'.join(fields) + '"\n' for fields in zip(*columns, strict=True)]
    del columns

    # Every bad row goes right after its donor; files split the period into equal spans.
    if bad:
        keys = np.concatenate([2 * np.arange(n_good), 2 * donors + 1])
        position = np.argsort(keys, kind="stable")
        both = good + bad
        rows = [both[k] for k in position.tolist()]
        row_seconds = np.concatenate([seconds, seconds[donors]])[position]
    else:
        rows, row_seconds = good, seconds
    period = days * 86_400
    bounds = unix_time(start_date) + np.arange(1, drops) * period // drops
    splits = [0, *np.searchsorted(row_seconds, bounds, side="left").tolist(), len(rows)]

    customers_path = out / "customers" / "customers.csv"
    customers_path.parent.mkdir(parents=True, exist_ok=True)
    _write_customers(customers_path, population.rows)
    orders_dir = out / "sales_orders"
    orders_dir.mkdir(parents=True, exist_ok=True)
    paths = tuple(orders_dir / sales_orders_filename(start_date, seed, p) for p in range(drops))
    for stale in orders_dir.glob(f"sales_orders_{start_date:%Y%m%d}_{seed}_*.csv"):
        if stale not in paths:
            stale.unlink()
    header = quoted_line(ORDER_COLUMNS)
    for path, a, b in zip(paths, splits[:-1], splits[1:], strict=True):
        _write_atomically(path, [header, *rows[a:b]])
    return GenerationSummary(
        out_dir=out,
        customers_path=customers_path,
        sales_orders_paths=paths,
        customers=customers,
        customer_rows=len(population.rows),
        orders=n_good,
        bad_rows=counts,
        rows_per_file=tuple(b - a for a, b in zip(splits[:-1], splits[1:], strict=True)),
        start_date=start_date,
        days=days,
        seed=seed,
    )
