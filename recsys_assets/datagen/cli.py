"""The ``recsys-generate`` command: ``generate`` with its arguments, and a one-line summary."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from recsys_assets.datagen.batch import generate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recsys-generate",
        description="Write synthetic Databricks-style retail customers and sales_orders CSVs.",
    )
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--customers", type=int, default=1000, help="number of customers")
    p.add_argument("--days", type=int, default=90, help="length of the period in days")
    p.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    p.add_argument(
        "--start-date",
        type=date.fromisoformat,
        default=date(2024, 1, 1),
        help="first day of the period, YYYY-MM-DD (default 2024-01-01)",
    )
    p.add_argument(
        "--orders",
        type=int,
        default=None,
        help="scale the order rates to write about this many orders",
    )
    p.add_argument("--drops", type=int, default=1, help="split the orders into K files by time")
    p.add_argument(
        "--bad-fraction",
        type=float,
        default=0.0,
        help="rows with a blank required field, bad JSON or a bad qty",
    )
    p.add_argument(
        "--missing-pk-fraction", type=float, default=0.0, help="rows with an empty order_number"
    )
    p.add_argument(
        "--malformed-fraction",
        type=float,
        default=0.0,
        help="rows with the wrong number of CSV fields",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``recsys-generate``; prints a one-line summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        summary = generate(
            args.out,
            customers=args.customers,
            days=args.days,
            seed=args.seed,
            start_date=args.start_date,
            orders=args.orders,
            drops=args.drops,
            bad_fraction=args.bad_fraction,
            missing_pk_fraction=args.missing_pk_fraction,
            malformed_fraction=args.malformed_fraction,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(summary.describe())
    return 0
