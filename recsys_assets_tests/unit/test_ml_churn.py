"""Churn model code on hand-made data with known answers: features, labels, splits, and the
training sets it refuses (``recsys_assets.ml.churn``)."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from recsys_assets.ml import churn as ml

# ----------------------------------------------------------------------- hand-made training sets


def training_rows(n: int, churned) -> pd.DataFrame:
    """A churn_training_set frame of ``n`` customers (the feature values are arbitrary)."""
    rows = pd.DataFrame({"customer_id": range(1, n + 1)})
    for name, type_, _ in ml.FEATURE_COLUMNS[1:]:
        if type_ == "string":
            rows[name] = "CA"
        elif type_ == "timestamp":
            rows[name] = pd.Timestamp("2024-03-01", tz="UTC")
        else:
            rows[name] = (rows.customer_id % 7).astype("float64" if type_ == "double" else "int64")
    rows[ml.LABEL] = churned(rows.customer_id)
    rows[ml.SPLIT] = [
        ["validation", "test", "train", "train", "train"][i % 5] for i in rows.customer_id
    ]
    return rows


@pytest.mark.parametrize(
    "rows, cause",
    [
        (training_rows(200, lambda ids: 0), "single class"),
        (training_rows(200, lambda ids: 1), "single class"),
        (training_rows(8, lambda ids: ids % 2), "too few rows"),
        (training_rows(200, lambda ids: (ids % 5 == 0).astype(int)), "single class"),  # per split
        (training_rows(200, lambda ids: ids % 2).assign(split="train"), "too few rows"),
    ],
)
def test_an_unlearnable_training_set_fails_naming_the_cause(rows, cause):
    with pytest.raises(ml.Unlearnable, match=cause):
        ml.split_for_training(rows, min_rows=20)


# ----------------------------------------------------------------------- features, by hand

CUTOFF = datetime(2024, 3, 1, tzinfo=timezone.utc)


def test_customers_without_orders_keep_a_row_with_zero_features(spark):
    customers = spark.createDataFrame(
        [(1, "CA", 3, 50), (2, "NY", 0, 10), (3, "TX", 1, 20)],
        "customer_id long, state string, loyalty_segment int, units_purchased int",
    )
    line = "array<struct<id:string, price:double, qty:int>>"
    orders = spark.createDataFrame(
        [
            (1, CUTOFF - timedelta(days=40), [("A", 10.0, 2), ("B", 5.0, 1)]),
            (1, CUTOFF - timedelta(days=5), [("A", 10.0, 1)]),
            (1, CUTOFF + timedelta(days=3), [("C", 1.0, 1)]),  # after the cutoff: label only
            (2, CUTOFF + timedelta(days=31), [("C", 1.0, 1)]),  # after the horizon: ignored
            (None, CUTOFF - timedelta(days=1), [("A", 1.0, 1)]),  # no customer: ignored
        ],
        f"customer_id long, order_datetime timestamp, ordered_products {line}",
    )
    as_of = int(CUTOFF.timestamp())

    features = ml.customer_features_as_of(customers, orders, as_of)
    labelled = ml.with_churn_label(features, orders, horizon_days=30)
    rows = {r.customer_id: r.asDict() for r in labelled.collect()}

    assert sorted(rows) == [1, 2, 3]
    assert [f.name for f in features.schema] == [c for c, _, _ in ml.FEATURE_COLUMNS]
    one = rows[1]
    assert (one["order_count"], one["orders_last_14d"], one["orders_last_30d"]) == (2, 1, 1)
    assert one["orders_prev_30d"] == 1 and one["distinct_products"] == 2
    assert one["days_since_last_order"] == 5.0 and one["days_since_first_order"] == 40.0
    assert one["total_spend"] == 35.0 and one["spend_last_30d"] == 10.0
    assert one["avg_order_value"] == 17.5 and one["avg_units_per_order"] == 2.0
    assert one["avg_line_items"] == 1.5 and one[ml.LABEL] == 0
    for customer in (2, 3):
        row = rows[customer]
        assert all(row[name] == 0 for name in ml.ZERO_WITHOUT_ORDERS), row
        assert row["days_since_last_order"] == 40.0  # the whole history before the cutoff
        assert row["state"] and row["loyalty_segment"] is not None
        assert row[ml.LABEL] == 1
    assert rows[2]["state"] == "NY" and rows[3]["units_purchased"] == 20


def test_the_split_is_a_stable_hash_of_the_customer(spark):
    df = spark.range(1, 2001).withColumnRenamed("id", "customer_id")

    shares = {"train": 80, "validation": 20}
    first = {r.customer_id: r.split for r in ml.with_split(df, 42, shares).collect()}
    again = {
        r.customer_id: r.split
        for r in ml.with_split(df.orderBy("customer_id", ascending=False), 42, shares).collect()
    }
    other_seed = {r.customer_id: r.split for r in ml.with_split(df, 7, shares).collect()}

    assert first == again
    assert first != other_seed
    assert 0.75 < sum(s == "train" for s in first.values()) / len(first) < 0.85


def test_cutoff_parsing_treats_a_zoneless_time_as_utc():
    assert ml.seconds_of_iso("2024-03-01") == int(CUTOFF.timestamp())
    assert ml.seconds_of_iso("2024-03-01T01:00:00+01:00") == int(CUTOFF.timestamp())


def test_features_use_the_scd2_record_valid_at_the_cutoff(spark):
    day = 86_400
    cutoff = int(CUTOFF.timestamp())
    customers = (
        spark.createDataFrame(
            [
                (1, "NY", 0, 10, cutoff - 400 * day, cutoff - 10 * day),  # closed before the cutoff
                (1, "CA", 3, 50, cutoff - 10 * day, None),  # valid at the cutoff
                (2, "TX", 1, 20, cutoff - 400 * day, cutoff + 5 * day),  # valid at the cutoff
                (2, "WA", 2, 90, cutoff + 5 * day, None),  # current, but later
                (3, "OR", 1, 5, cutoff + 1 * day, None),  # did not exist yet
            ],
            "customer_id long, state string, loyalty_segment int, units_purchased int, "
            "valid_from long, valid_to long",
        )
        .selectExpr("*", "timestamp_seconds(valid_from) AS vf", "timestamp_seconds(valid_to) AS vt")
        .drop("valid_from", "valid_to")
        .withColumnsRenamed({"vf": "valid_from", "vt": "valid_to"})
    )
    line = "array<struct<id:string, price:double, qty:int>>"
    orders = spark.createDataFrame(
        [(2, CUTOFF - timedelta(days=1), [("A", 1.0, 1)]), (2, CUTOFF + timedelta(days=1), [])],
        f"customer_id long, order_datetime timestamp, ordered_products {line}",
    )

    at = ml.customer_features_as_of(ml.records_valid_at(customers, cutoff), orders, cutoff)
    now = ml.customer_features_as_of(ml.current_records(customers), orders, cutoff)

    rows = {r.customer_id: (r.state, r.units_purchased, r.order_count) for r in at.collect()}
    assert rows == {1: ("CA", 50, 0), 2: ("TX", 20, 1)}  # the order after the cutoff not counted
    assert {r.customer_id: r.state for r in now.collect()} == {1: "CA", 2: "WA", 3: "OR"}
