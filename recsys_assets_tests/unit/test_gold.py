"""The gold interactions transform on a tiny, hand-made order table."""

import math
from datetime import datetime, timedelta, timezone

from recsys_assets.assets.gold import interactions

NEWEST = datetime(2024, 3, 31, 12, tzinfo=timezone.utc)


def orders(spark, rows):
    schema = (
        "customer_id long, order_datetime timestamp, "
        "ordered_products array<struct<id:string, qty:int>>"
    )
    return spark.createDataFrame(rows, schema)


def test_sums_quantities_in_the_window_counted_back_from_the_newest_order(spark):
    df = orders(
        spark,
        [
            (1, NEWEST, [("A", 2), ("B", 1)]),
            (1, NEWEST - timedelta(days=10), [("A", 3)]),
            (1, NEWEST - timedelta(days=31), [("A", 100)]),  # outside the 30 days
            (2, NEWEST - timedelta(days=29), [("B", 4), ("C", 0), ("D", -2)]),  # qty <= 0 dropped
            (None, NEWEST, [("A", 9)]),  # no customer: not an interaction
        ],
    )

    rows = {(r.customer_id, r.product_id): r for r in interactions(df, window_days=30).collect()}

    assert {k: r.total_qty for k, r in rows.items()} == {(1, "A"): 5, (1, "B"): 1, (2, "B"): 4}
    assert math.isclose(rows[(1, "A")].interaction_weight, math.log1p(5))


def test_window_days_is_configurable(spark):
    df = orders(spark, [(1, NEWEST, [("A", 1)]), (1, NEWEST - timedelta(days=5), [("B", 1)])])

    assert {r.product_id for r in interactions(df, window_days=3).collect()} == {"A"}
    assert {r.product_id for r in interactions(df, window_days=7).collect()} == {"A", "B"}
