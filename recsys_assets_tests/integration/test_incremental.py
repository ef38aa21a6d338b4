"""The medallion is incremental like DLT streaming tables: each run reads only what is new."""

import json
from datetime import date

import dagster as dg
import pandas as pd

from recsys_assets.definitions import build_definitions
from recsys_assets.expectations import FAILED_RULES
from recsys_assets.resources.lakehouse import Lakehouse, removes_rows
from recsys_assets.tables import table_uri
from recsys_assets_tests.support import delta_table, generate, read_table, table_folder

SILVER_TABLES = ["sales_orders_silver", "sales_orders_quarantine"]
FULL_REFRESH = {
    "ops": {
        op: {"config": {"full_refresh": True}}
        for op in (
            "customers_silver_tables",
            "sales_orders_silver_tables",
            "sales_orders_customer_join_min",
        )
    }
}


def bookmark(settings, table: str) -> dict:
    [commit] = delta_table(settings, "silver", table).history(1)
    return json.loads(commit["userMetadata"])["sources"]


def sorted_frame(frame: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    drop = [c for c in ("_ingested_at",) if c in frame]
    return frame.drop(columns=drop).sort_values(key).reset_index(drop=True)


def rows_checked(result: dg.ExecuteInProcessResult) -> int:
    """The rows sales_orders_silver's checks saw in a run."""
    [rows] = {
        e.metadata["rows"].value
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("sales_orders_silver")
    }
    return rows


def test_a_second_drop_reads_only_its_own_rows(settings, materialize):
    first = generate(settings, bad_fraction=0.05)
    materialize()
    second = generate(settings, start_date=date(2024, 3, 1), bad_fraction=0.05)

    result = materialize()

    assert rows_checked(result) == second.orders + second.bad_rows.total  # new rows only
    assert len(read_table(settings, "silver", "sales_orders_silver")) == (
        first.orders + second.orders
    )
    quarantine = read_table(settings, "silver", "sales_orders_quarantine")
    assert len(quarantine) == first.bad_rows.total + second.bad_rows.total
    assert bookmark(settings, "sales_orders_silver") == {"sales_orders_bronze": 1}
    join = read_table(settings, "silver", "sales_orders_customer_join_min")
    assert len(join) == first.orders + second.orders and join.order_number.is_unique
    assert bookmark(settings, "sales_orders_customer_join_min") == {
        "sales_orders_silver": 1,
        "customers_silver": 0,  # customers.csv again: already ingested, nothing new
    }
    # New order numbers only: no file can hold a match, so both upserts were appends.
    for table in ("sales_orders_silver", "sales_orders_customer_join_min"):
        [last] = delta_table(settings, "silver", table).history(1)
        assert (last["operation"], last["operationParameters"]["mode"]) == ("WRITE", "Append")


def test_drops_without_a_bad_row_are_read_once_and_no_drop_costs_no_commit(settings, materialize):
    generate(settings, bad_fraction=0.05)
    materialize()
    quarantine_version = delta_table(settings, "silver", "sales_orders_quarantine").version()
    generate(settings, start_date=date(2024, 3, 1), customers=40, days=5)  # nothing to quarantine
    materialize()
    third = generate(settings, start_date=date(2024, 3, 10), customers=40, days=5)

    assert rows_checked(materialize()) == third.orders  # not the clean drop before it again
    assert delta_table(settings, "silver", "sales_orders_quarantine").version() == (
        quarantine_version
    )
    silver_version = delta_table(settings, "silver", "sales_orders_silver").version()
    nothing_new = materialize()
    assert rows_checked(nothing_new) == 0
    assert delta_table(settings, "silver", "sales_orders_silver").version() == silver_version


def test_a_run_killed_between_quarantine_and_silver_is_finished_without_duplicates(
    settings, materialize, monkeypatch
):
    first = generate(settings, bad_fraction=0.05)
    materialize()
    second = generate(settings, start_date=date(2024, 3, 1), bad_fraction=0.05)
    real_merge = Lakehouse.merge

    def killed(self, df, layer, table, *args, **kwargs):
        if table == "sales_orders_silver":
            raise OSError("killed")
        return real_merge(self, df, layer, table, *args, **kwargs)

    monkeypatch.setattr(Lakehouse, "merge", killed)
    assert not materialize(raise_on_error=False).success
    assert len(read_table(settings, "silver", "sales_orders_silver")) == first.orders
    monkeypatch.setattr(Lakehouse, "merge", real_merge)

    assert materialize().success

    assert len(read_table(settings, "silver", "sales_orders_silver")) == (
        first.orders + second.orders
    )
    quarantine = read_table(settings, "silver", "sales_orders_quarantine")
    assert len(quarantine) == first.bad_rows.total + second.bad_rows.total


def test_full_refresh_rebuilds_the_same_tables(settings, materialize):
    generate(settings, bad_fraction=0.05)
    materialize()
    generate(settings, start_date=date(2024, 3, 1), bad_fraction=0.05)
    materialize()
    incremental = {t: read_table(settings, "silver", t) for t in SILVER_TABLES}
    join = read_table(settings, "silver", "sales_orders_customer_join_min")

    assert materialize(run_config=FULL_REFRESH).success

    key = ["order_number"]
    pd.testing.assert_frame_equal(
        sorted_frame(read_table(settings, "silver", "sales_orders_silver"), key),
        sorted_frame(incremental["sales_orders_silver"], key),
    )
    quarantine = read_table(settings, "silver", "sales_orders_quarantine")
    assert len(quarantine) == len(incremental["sales_orders_quarantine"])
    pd.testing.assert_frame_equal(
        sorted_frame(read_table(settings, "silver", "sales_orders_customer_join_min"), key),
        sorted_frame(join, key),
    )


def test_a_blank_promo_info_is_quarantined_by_the_notebook_rule(settings, materialize):
    summary = generate(settings)
    [path] = summary.sales_orders_paths
    text = path.read_text()
    assert ',"{}"\n' in text  # records without a promotion end with an empty object
    path.write_text(text.replace(',"{}"\n', ',""\n', 1))  # one of them: a blank promo_info

    materialize()

    quarantine = read_table(settings, "silver", "sales_orders_quarantine")
    assert quarantine[FAILED_RULES].map(list).tolist() == [["promo_info_present"]]
    assert len(read_table(settings, "silver", "sales_orders_silver")) == summary.orders - 1


def test_maintenance_compacts_files_and_keeps_every_row(settings, materialize):
    generate(settings, drops=3)
    materialize(["customers_bronze", "sales_orders_bronze"])
    before = delta_table(settings, "bronze", "sales_orders_bronze")
    files_before, rows = len(before.file_uris()), len(before.to_pandas())

    job = build_definitions(settings).resolve_job_def("maintain_tables")
    result = job.execute_in_process(
        run_config={"ops": {"optimize_and_vacuum": {"config": {"retain_hours": 0}}}}
    )

    assert result.success
    after = delta_table(settings, "bronze", "sales_orders_bronze")
    assert len(after.file_uris()) == 1 < files_before
    assert len(after.to_pandas()) == rows
    parquet = list(table_folder(settings, "bronze", "sales_orders_bronze").glob("*.parquet"))
    assert len(parquet) == 1  # VACUUM deleted the compacted files


def test_full_refresh_rebuilds_from_bronze_as_it_is_now(settings, materialize, spark):
    first = generate(settings)
    materialize()
    second = generate(settings, start_date=date(2024, 3, 1))
    materialize()
    [removed] = second.sales_orders_paths
    bronze = table_uri(settings.lakehouse_uri, "bronze", "sales_orders_bronze")
    spark.sql(f"DELETE FROM delta.`{bronze}` WHERE _source_file = '{removed.resolve()}'")
    removed.unlink()  # rejected: its rows out of bronze, the file out of the landing zone

    assert materialize(run_config=FULL_REFRESH).success

    silver = read_table(settings, "silver", "sales_orders_silver")
    assert len(silver) == first.orders  # the deleted file's rows are not read back
    assert set(silver._source_file) == {str(p.resolve()) for p in first.sales_orders_paths}


def test_rejecting_a_file_silver_already_read_takes_its_rows_out_downstream(settings, materialize):
    first = generate(settings)
    materialize()
    landing = settings.landing_dir / "sales_orders"
    before = set(landing.iterdir())
    generate(settings, start_date=date(2024, 3, 1), customers=40, days=3)
    materialize()
    [late] = sorted(set(landing.iterdir()) - before)

    reject = build_definitions(settings).resolve_job_def("reject_landing_file")
    config = {"table": "sales_orders", "file_name": late.name}
    assert reject.execute_in_process(
        run_config={"ops": {"reject_file": {"config": config}}}
    ).success
    materialize()

    for table in ("sales_orders_silver", "sales_orders_customer_join_min"):
        assert len(read_table(settings, "silver", table)) == first.orders, table


def test_only_commits_that_take_rows_out_count_as_removals():
    def commit(operation, mode=None, **metrics):
        return {
            "operation": operation,
            "operationParameters": {"mode": mode} if mode else {},
            "operationMetrics": {k: str(v) for k, v in metrics.items()},
        }

    removals = [
        commit("DELETE", numDeletedRows=3),
        commit("WRITE", "Overwrite"),
        commit("CREATE OR REPLACE TABLE AS SELECT", "Overwrite"),
        commit("MERGE", numTargetRowsDeleted=1, numTargetRowsInserted=4),
    ]
    others = [
        commit("WRITE", "Append"),
        commit("MERGE", numTargetRowsDeleted=0, numTargetRowsUpdated=2),
        commit("OPTIMIZE"),
        commit("VACUUM END"),
    ]
    assert [removes_rows(c) for c in removals] == [True] * 4
    assert [removes_rows(c) for c in others] == [False] * 4
