"""The DLT-style expectations engine on small, hand-made DataFrames."""

from datetime import UTC, datetime

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_assets import expectations
from recsys_assets.assets.bronze import raw_schema, read_csv_drops
from recsys_assets.assets.silver import SALES_ORDERS, SilverConfig, sales_orders_typed
from recsys_assets.expectations import FAILED_RULES, Expectation, ExpectationFailed
from recsys_assets.schemas import SALES_ORDERS_COLUMNS

RULES = (
    Expectation("has_id", "id IS NOT NULL", "fail"),
    Expectation("positive", "x > 0", "drop"),
    Expectation("short_name", "length(name) < 5", "drop"),
)


def frame(spark: SparkSession, rows: list[tuple]):
    raw = "struct<_rescued_data:string,line:string>"
    return spark.createDataFrame(rows, f"_raw {raw}, id int, x int, name string")


def test_drop_rules_route_rows_to_quarantine_with_every_broken_rule(spark):
    df = frame(
        spark,
        [
            ((None, "a"), 1, 5, "ok"),
            ((None, "b"), 2, -1, "ok"),
            ((None, "c"), 3, -1, "too long"),
            ((None, "d"), 4, None, "ok"),  # NULL predicate: a violation, as in DLT
        ],
    )
    applied = expectations.apply(df, RULES, ["id"])

    assert [r.id for r in applied.passing.collect()] == [1]
    assert applied.passing.columns == ["id", "x", "name"]
    quarantined = {r.line: r[FAILED_RULES] for r in applied.quarantine.collect()}
    assert quarantined == {"b": ["positive"], "c": ["positive", "short_name"], "d": ["positive"]}
    counts = {o.name: (o.violations, o.rows) for o in applied.outcomes}
    assert counts == {"well_formed_row": (0, 4), "has_id": (0, 4), "positive": (3, 4),
                      "short_name": (1, 4)}  # fmt: skip


def test_fail_rule_raises_naming_rule_count_and_rows(spark):
    df = frame(
        spark,
        [((None, "a"), None, 1, "ok"), ((None, "b"), None, 2, "ok"), ((None, "c"), 3, 1, "ok")],
    )
    with pytest.raises(ExpectationFailed) as failure:
        expectations.apply(df, RULES, ["line"])
    message = str(failure.value)
    assert "has_id" in message and "2 of 3 rows" in message
    assert "'line': 'a'" in message and "'line': 'b'" in message


def test_unparsable_rows_are_quarantined_before_fail_rules(spark):
    df = frame(spark, [(("garbled,,line", None), None, None, None), ((None, "a"), 1, 1, "ok")])
    applied = expectations.apply(df, RULES, ["id"])  # the null id is in a garbled row: no failure

    [bad] = applied.quarantine.collect()
    assert bad._rescued_data == "garbled,,line"
    assert bad[FAILED_RULES][0] == "well_formed_row"
    assert applied.passing.count() == 1


def test_sales_orders_typing_keeps_bad_quantities_visible(spark):
    products = (
        '[{"curr":"USD","id":"P1","name":"A","price":2.5,"promotion_info":{"k":1},"qty":3,'
        '"unit":"pcs"},{"curr":"USD","id":"P2","name":"B","price":1,"promotion_info":null,'
        '"qty":"two","unit":"pcs"}]'
    )
    row = ("[]", "7", "Ann", "2", "1700000000", "42", products, "", None, "f.csv")
    schema = raw_schema(SALES_ORDERS_COLUMNS).add("_source_file", "string")
    bronze = spark.createDataFrame([row], schema).selectExpr(
        "*", "current_timestamp() AS _ingested_at", "7L AS _bronze_version"
    )

    [typed] = sales_orders_typed(bronze).collect()

    assert (typed.order_number, typed.customer_id, typed.number_of_line_items) == (42, 7, 2)
    assert typed.order_datetime.timestamp() == 1700000000
    first, second = typed.ordered_products
    assert (first.id, first.qty, first.price, first.promotion_info) == ("P1", 3, 2.5, '{"k":1}')
    assert second.qty is None  # non-numeric: null, so valid_quantities drops the order
    assert typed._raw.ordered_products == products  # the raw text is kept for the quarantine


def test_order_dates_that_overflow_or_fall_outside_the_range_are_dropped_with_a_reason(spark):
    products = '[{"curr":"USD","id":"P1","name":"A","price":1,"promotion_info":null,"qty":1}]'
    year_3000 = str(int(datetime(3000, 1, 1, tzinfo=UTC).timestamp()))
    year_1999 = str(int(datetime(1999, 12, 31, tzinfo=UTC).timestamp()))
    rows = [
        ("[]", "7", "Ann", "1", when, number, products, "{}", None, "f.csv")
        for number, when in (("1", "1700000000"), ("2", "1e15"), ("3", "1" + "0" * 15),
                             ("4", year_3000), ("5", year_1999))
    ]  # fmt: skip
    schema = raw_schema(SALES_ORDERS_COLUMNS).add("_source_file", "string")
    bronze = spark.createDataFrame(rows, schema).selectExpr(
        "*", "current_timestamp() AS _ingested_at", "7L AS _bronze_version"
    )
    rules = SALES_ORDERS.rules_for(SilverConfig(earliest_order="2000-01-01", max_days_ahead=1))

    applied = expectations.evaluate(sales_orders_typed(bronze), rules, ["order_number"])

    assert [r.order_number for r in applied.passing.collect()] == [1]
    reasons = {r.order_number: r[FAILED_RULES] for r in applied.quarantine.collect()}
    assert reasons == {
        "2": ["valid_order_datetime", "order_datetime_in_range"],  # not an integer
        "3": ["valid_order_datetime", "order_datetime_in_range"],  # past year 9999: no crash
        "4": ["order_datetime_in_range"],
        "5": ["order_datetime_in_range"],
    }
    assert applied.dropped == 4


def test_a_row_that_is_not_utf8_is_dropped_not_stored_as_mojibake(spark, tmp_path):
    path = tmp_path / "latin1.csv"
    header = ",".join(SALES_ORDERS_COLUMNS)
    rows = ["[],7,Zo\u00eb,1,1700000000,1,x,{}", "[],8,Zoe,1,1700000000,2,x,{}"]
    path.write_bytes("\n".join([header, *rows]).encode("latin-1"))
    raw = read_csv_drops(spark, [str(path)], SALES_ORDERS_COLUMNS)
    typed = sales_orders_typed(raw.withColumn("_bronze_version", F.lit(0).cast("long")))

    utf8 = [e for e in SALES_ORDERS.rules if e.name == "text_is_utf8"]
    applied = expectations.evaluate(typed, tuple(utf8), ["order_number"])

    assert [r.order_number for r in applied.passing.collect()] == [2]
    assert [r[FAILED_RULES] for r in applied.quarantine.collect()] == [["text_is_utf8"]]


def test_a_duplicate_key_keeps_the_newest_row_and_quarantines_the_others(spark):
    rows = [  # (line, id, x, name, file, record): id 1 three times, id 2 once
        ((None, "a"), 1, 1, "ok", "day_1.csv", 1),
        ((None, "b"), 1, 2, "ok", "day_2.csv", 1),  # the file named last: wins over a and c
        ((None, "c"), 1, 3, "ok", "day_1.csv", 2),
        ((None, "d"), 2, 4, "ok", "day_1.csv", 3),
        ((None, "e"), 2, -1, "ok", "day_2.csv", 2),  # newer but dropped: does not replace d
    ]
    df = spark.createDataFrame(
        rows,
        "_raw struct<_rescued_data:string,line:string>, id int, x int, name string, "
        "file string, record int",
    )
    unique = expectations.UniqueKey(("id",), ("file", "record"))

    applied = expectations.apply(df, RULES, ["id"], unique)

    assert sorted((r.id, r.x) for r in applied.passing.collect()) == [(1, 2), (2, 4)]
    quarantined = {r.line: r[FAILED_RULES] for r in applied.quarantine.collect()}
    assert quarantined == {"a": ["unique_key"], "c": ["unique_key"], "e": ["positive"]}
    counts = {o.name: o.violations for o in applied.outcomes}
    assert (counts["unique_key"], counts["positive"], applied.dropped) == (2, 1, 3)
