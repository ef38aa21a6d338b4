"""The lakehouse resource: Spark (delta-spark) writes, delta-rs reads the same tables and logs."""

import json

import pytest

from recsys_assets.resources.lakehouse import Lakehouse, MissingTable
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
