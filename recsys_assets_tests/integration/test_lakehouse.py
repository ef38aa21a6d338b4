"""The lakehouse resource: Spark (delta-spark) writes, delta-rs reads the same tables and logs."""

import json
from datetime import datetime, timezone

import dagster as dg
import pyarrow as pa
import pytest

from recsys_assets.resources.lakehouse import (
    KeyRange,
    Lakehouse,
    MissingTable,
    is_write_conflict,
    key_ranges,
    may_match,
    retried_on_conflict,
)
from recsys_assets.resources.spark import SparkResource
from recsys_assets.tables import table_uri
from recsys_assets_tests.support import delta_table, read_table


@pytest.fixture
def lakehouse(settings, spark) -> Lakehouse:
    return Lakehouse(root_uri=settings.lakehouse_uri, spark=SparkResource())


def test_delta_rs_reads_what_delta_spark_writes_and_merges(settings, spark, lakehouse):
    rows = spark.createDataFrame([(1, "a", 10), (2, "b", 20)], "k long, v string, n long")
    lakehouse.write(rows, "silver", "t", "overwrite", {"dagster_run_id": "r1", "sources": {"u": 3}})
    changes = spark.createDataFrame([(2, "B", 21), (3, "c", 30)], "k long, v string, n long")
    lakehouse.merge(changes, "silver", "t", ["k"], {"dagster_run_id": "r2"}, "s.n > t.n")

    table = read_table(settings, "silver", "t").sort_values("k")
    assert table.to_dict("records") == [
        {"k": 1, "v": "a", "n": 10},
        {"k": 2, "v": "B", "n": 21},
        {"k": 3, "v": "c", "n": 30},
    ]
    assert [json.loads(c["userMetadata"])["dagster_run_id"] for c in delta_table(
        settings, "silver", "t").history()] == ["r2", "r1"]  # fmt: skip
    assert lakehouse.bookmark("silver", "t") == {"u": 3}  # the newest commit that kept one
    metadata = lakehouse.metadata("silver", "t", rows.schema)
    assert metadata["dagster/row_count"].value == 3
    assert metadata["delta_version"].value == 1
    assert metadata["rows_written"].value == 2  # one updated, one inserted
    assert metadata["dagster/uri"] == table_uri(settings.lakehouse_uri, "silver", "t")


def test_change_feed_gives_only_the_versions_asked_for(spark, lakehouse):
    for batch in ([1, 2], [3], [4, 5]):
        rows = spark.createDataFrame([(k,) for k in batch], "k long")
        lakehouse.write(rows, "bronze", "b", "append", {})

    feed = lakehouse.changes("bronze", "b", after=0, upto=1).collect()

    assert [(r.k, r._commit_version, r._change_type) for r in feed] == [(3, 1, "insert")]


def test_an_overwrite_may_change_the_schema(settings, spark, lakehouse):
    lakehouse.write(spark.createDataFrame([(1,)], "a long"), "gold", "g", "overwrite", {})
    lakehouse.write(spark.createDataFrame([("x",)], "b string"), "gold", "g", "overwrite", {})

    assert read_table(settings, "gold", "g").to_dict("records") == [{"b": "x"}]


def test_a_missing_table_is_named(lakehouse):
    with pytest.raises(MissingTable, match="gold/nothing does not exist yet"):
        lakehouse.read("gold", "nothing")
    assert lakehouse.version("gold", "nothing") is None and lakehouse.bookmark("gold", "x") == {}


def test_a_merge_bounds_the_target_by_the_source_key_range(spark):
    rows = spark.createDataFrame([(7, "b"), (2, None), (5, "it's")], "k long, s string")

    assert [r.sql for r in key_ranges(rows, ["k", "s"])] == [
        "(t.`k` BETWEEN CAST('2' AS bigint) AND CAST('7' AS bigint))",
        "(t.`s` BETWEEN CAST('b' AS string) AND CAST('it\\'s' AS string) OR t.`s` IS NULL)",
    ]
    assert key_ranges(rows.limit(0), ["k"]) is None  # nothing to merge


def test_a_merge_matches_keys_of_every_type_within_the_range(settings, spark, lakehouse):
    schema = "name string, at timestamp, n long"
    old = [("o'brien\\x", datetime(2024, 1, 1, 12), 1), (None, datetime(2024, 1, 2), 2)]
    old += [("zed", datetime(2024, 1, 3), 3)]
    lakehouse.write(spark.createDataFrame(old, schema), "silver", "m", "overwrite", {})
    new = [("o'brien\\x", datetime(2024, 1, 1, 12), 10), (None, datetime(2024, 1, 2), 20)]
    new += [("a", datetime(2024, 1, 1, 12), 30)]
    lakehouse.merge(spark.createDataFrame(new, schema), "silver", "m", ["name", "at"], {})

    table = read_table(settings, "silver", "m").sort_values("n")
    assert table.n.tolist() == [3, 10, 20, 30]  # two updated (a null key too), one inserted
    lakehouse.merge(spark.createDataFrame([], schema), "silver", "m", ["name"], {})
    assert delta_table(settings, "silver", "m").version() == 1  # no rows, no commit


def test_a_target_file_may_match_only_where_its_key_statistics_overlap_the_source():
    files = pa.table({"min.k": [1, 100, None], "max.k": [50, 200, None], "min.j": [0, 0, 0]})
    files = files.append_column("max.j", pa.array([9, 9, 9]))
    new_keys = [KeyRange("k", "bigint", "60", "99", nulls=False)]
    both = [*new_keys, KeyRange("j", "int", "10", "20", nulls=False)]

    assert not may_match(files.slice(0, 2), new_keys)  # between the two files' ranges
    assert may_match(files, new_keys)  # the third file has no statistics: it may
    assert may_match(files.slice(0, 2), [KeyRange("k", "bigint", "40", "60", nulls=False)])
    assert not may_match(files, both)  # j of every file lies below the source's j
    assert may_match(files.slice(0, 2), [KeyRange("k", "bigint", "60", "99", nulls=True)])
    assert may_match(files.slice(0, 2), [KeyRange("k", "string", "60", "99", nulls=False)])
    assert may_match(files.slice(0, 2), [KeyRange("x", "bigint", "1", "2", nulls=False)])
    assert not may_match(files.slice(0, 0), new_keys)  # an empty table holds nothing to match


def test_a_merge_of_new_keys_appends_and_one_of_known_keys_merges(settings, spark, lakehouse):
    schema = "k long, v string"
    lakehouse.write(
        spark.createDataFrame([(1, "a"), (2, "b")], schema), "silver", "u", "overwrite", {}
    )
    new = spark.createDataFrame([(3, "c"), (4, "d")], schema)
    lakehouse.merge(new, "silver", "u", ["k"], {"sources": {"up": 1}})
    lakehouse.merge(new, "silver", "u", ["k"], {"sources": {"up": 1}})  # again: now they match
    changed = spark.createDataFrame([(2, "B"), (5, "e")], schema)
    lakehouse.merge(changed, "silver", "u", ["k"], {"sources": {"up": 2}})

    table = read_table(settings, "silver", "u").sort_values("k")
    assert table.to_dict("records") == [
        {"k": 1, "v": "a"}, {"k": 2, "v": "B"}, {"k": 3, "v": "c"}, {"k": 4, "v": "d"},
        {"k": 5, "v": "e"},
    ]  # fmt: skip
    history = delta_table(settings, "silver", "u").history()
    modes = [(c["operation"], c.get("operationParameters", {}).get("mode")) for c in history]
    assert modes == [("MERGE", None), ("MERGE", None), ("WRITE", "Append"), ("WRITE", "Overwrite")]
    assert lakehouse.bookmark("silver", "u") == {"up": 2}
    feed = lakehouse.changes("silver", "u", after=0, upto=1).collect()
    assert sorted((r.k, r._change_type) for r in feed) == [(3, "insert"), (4, "insert")]


def test_the_newest_value_of_a_column_comes_from_file_statistics(spark, lakehouse):
    rows = [(datetime(2024, 3, 1, 12, 30, 5),), (datetime(2024, 3, 31, 23, 59, 59),)]
    lakehouse.write(spark.createDataFrame(rows, "at timestamp"), "silver", "d", "overwrite", {})
    lakehouse.write(
        spark.createDataFrame([(None,)], "at timestamp"), "silver", "n", "overwrite", {}
    )

    newest = lakehouse.column_max("silver", "d", "at")
    assert newest == datetime(2024, 3, 31, 23, 59, 59, tzinfo=timezone.utc)
    assert lakehouse.column_max("silver", "n", "at") is None  # a file without statistics of it
    assert lakehouse.column_max("silver", "nothing", "at") is None


@pytest.mark.parametrize(
    ("message", "conflict"),
    [
        ("[DELTA_PROTOCOL_CHANGED] ProtocolChangedException: The protocol version ...", True),
        ("[DELTA_CONCURRENT_APPEND.WITHOUT_HINT] ConcurrentAppendException: Files were ...", True),
        ("[DELTA_METADATA_CHANGED] MetadataChangedException: The metadata of ...", True),
        ("[DELTA_TABLE_NOT_FOUND] Delta table `x` doesn't exist.", False),
        ("[DELTA_MERGE_MISSING_WHEN] There must be at least one WHEN clause.", False),
    ],
)
def test_write_conflicts_are_told_from_other_errors(message, conflict):
    assert is_write_conflict(RuntimeError(message)) is conflict


def test_a_write_that_loses_to_another_writer_asks_for_a_retry():
    with pytest.raises(dg.RetryRequested):
        with retried_on_conflict():
            raise RuntimeError("[DELTA_PROTOCOL_CHANGED] ProtocolChangedException: ...")
    with pytest.raises(ValueError):
        with retried_on_conflict():
            raise ValueError("not a conflict")
