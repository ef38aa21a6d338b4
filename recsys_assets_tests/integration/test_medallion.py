"""Bronze -> silver -> gold through Dagster, on generated CSV drops, real Spark and Delta."""

import csv
import json
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd

from recsys_assets.assets import bronze
from recsys_assets.definitions import build_definitions
from recsys_assets.expectations import FAILED_RULES
from recsys_assets.resources.lakehouse import Lakehouse
from recsys_assets.schemas import SALES_ORDERS_COLUMNS
from recsys_assets_tests import support
from recsys_assets_tests.support import delta_table, generate, read_table

BRONZE = ["customers_bronze", "sales_orders_bronze"]


def check_violations(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, int]:
    return {
        e.check_name: e.metadata["violations"].value
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey(asset)
    }


def test_materialises_every_table_and_quarantines_bad_rows_with_reasons(
    settings, materialize, spark
):
    summary = generate(settings, bad_fraction=0.08, malformed_fraction=0.02)
    bad = summary.bad_rows

    result = materialize()

    assert result.success
    # The run's session took RECSYS_SPARK_CONF over the project's 64 partitions.
    assert (
        spark.conf.get("spark.sql.shuffle.partitions")
        == settings.spark_conf["spark.sql.shuffle.partitions"]
        == "2"
    )
    bronze = read_table(settings, "bronze", "sales_orders_bronze")
    assert len(bronze) == summary.orders + bad.total - bad.missing_pk
    silver = read_table(settings, "silver", "sales_orders_silver")
    assert len(silver) == summary.orders and silver.order_number.is_unique
    customers = read_table(settings, "silver", "customers_silver")  # SCD2: every record
    assert len(customers) == summary.customer_rows
    assert customers.valid_to.isna().sum() == summary.customers

    quarantine = read_table(settings, "silver", "sales_orders_quarantine")
    assert len(quarantine) == bad.total
    reasons = quarantine[FAILED_RULES].map(list)
    assert (reasons.map(lambda r: "well_formed_row" in r)).sum() == bad.malformed
    assert (reasons.map(lambda r: "valid_quantities" in r)).sum() >= (
        bad.negative_qty + bad.non_numeric_qty
    )
    assert quarantine["_rescued_data"].notna().sum() == bad.malformed  # the raw line is kept

    violations = check_violations(result, "sales_orders_silver")
    assert violations["pk_must_exist"] == 0
    assert violations["well_formed_row"] == bad.malformed
    assert sum(violations.values()) >= bad.total - bad.malformed

    join = read_table(settings, "silver", "sales_orders_customer_join_min")
    assert len(join) == summary.orders and join.loyalty_segment.notna().all()
    gold = read_table(settings, "gold", "als_interactions_30d")
    assert list(gold.columns) == ["customer_id", "product_id", "total_qty", "interaction_weight"]
    assert len(gold) > 0 and (gold.total_qty > 0).all()
    assert not gold.duplicated(["customer_id", "product_id"]).any()

    materialised = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node("sales_orders_silver_tables")
    }
    assert materialised["sales_orders_silver"]["dagster/row_count"].value == summary.orders
    assert materialised["sales_orders_quarantine"]["dagster/row_count"].value == bad.total
    [commit] = delta_table(settings, "silver", "sales_orders_silver").history(1)
    assert json.loads(commit["userMetadata"]) == {
        "dagster_run_id": result.run_id,
        "sources": {"sales_orders_bronze": 0},
    }


def test_each_file_is_ingested_exactly_once(settings, materialize):
    first = generate(settings)
    materialize(BRONZE)
    version = delta_table(settings, "bronze", "sales_orders_bronze").version()
    again = materialize(BRONZE)  # nothing new: nothing read again, and no empty commit
    assert delta_table(settings, "bronze", "sales_orders_bronze").version() == version
    assert len(read_table(settings, "bronze", "sales_orders_bronze")) == first.orders
    metadata = again.asset_materializations_for_node("sales_orders_bronze")[0].metadata
    assert metadata["dagster/row_count"].value == first.orders
    assert metadata["rows_written"].value == 0 and metadata["new_files"].value == 0

    second = generate(settings, start_date=date(2024, 3, 1))  # a later drop; customers.csv again
    result = materialize()

    bronze = read_table(settings, "bronze", "sales_orders_bronze")
    assert len(bronze) == first.orders + second.orders
    assert bronze.groupby("_source_file").size().to_dict() == {
        str(p.resolve()): n
        for p, n in zip(
            first.sales_orders_paths + second.sales_orders_paths,
            first.rows_per_file + second.rows_per_file,
            strict=True,
        )
    }
    assert len(read_table(settings, "bronze", "customers_bronze")) == first.customer_rows
    [metadata] = [m.metadata for m in result.asset_materializations_for_node("sales_orders_bronze")]
    assert metadata["new_files"].value == len(second.sales_orders_paths)
    silver = read_table(settings, "silver", "sales_orders_silver")
    assert len(silver) == first.orders + second.orders


def test_a_redropped_file_is_not_double_counted(settings, materialize):
    summary = generate(settings)
    materialize()
    [path] = summary.sales_orders_paths
    shutil.copy(path, path.with_name("copy_of_" + path.name))

    materialize()

    assert len(read_table(settings, "bronze", "sales_orders_bronze")) == 2 * summary.orders
    assert len(read_table(settings, "silver", "sales_orders_silver")) == summary.orders


def test_an_ingest_that_fails_before_its_commit_is_healed_by_the_next_run(
    settings, materialize, monkeypatch
):
    summary = generate(settings, drops=3)
    real_append = Lakehouse.append_once

    def crash_on_bronze(self, df, layer, table, *args, **kwargs):
        if table == "sales_orders_bronze":
            raise OSError("disk full")
        return real_append(self, df, layer, table, *args, **kwargs)

    monkeypatch.setattr(Lakehouse, "append_once", crash_on_bronze)
    failed = materialize(BRONZE, raise_on_error=False)
    assert not failed.success
    assert not support.table_folder(settings, "bronze", "sales_orders_bronze").exists()

    monkeypatch.setattr(Lakehouse, "append_once", real_append)
    assert materialize(BRONZE).success
    bronze = read_table(settings, "bronze", "sales_orders_bronze")
    assert len(bronze) == summary.orders and bronze._source_file.nunique() == 3


def test_a_missing_order_number_fails_every_run_until_its_file_is_rejected(settings, materialize):
    first = generate(settings)
    materialize()
    version = delta_table(settings, "silver", "sales_orders_silver").version()
    landing = settings.landing_dir / "sales_orders"
    before = set(landing.iterdir())

    drop = dict(start_date=date(2024, 3, 1), customers=40, days=3)
    bad = generate(settings, **drop, missing_pk_fraction=0.05).bad_rows
    result = materialize(raise_on_error=False)

    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert "pk_must_exist" in message and "violated by" in message
    [poison] = sorted(set(landing.iterdir()) - before)  # the drop is one file
    assert f"file_name: '{poison.name}'" in message and "reject_landing_file" in message
    assert delta_table(settings, "silver", "sales_orders_silver").version() == version
    [check] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("sales_orders_silver") and e.check_name == "pk_must_exist"
    ]
    assert not check.passed and check.metadata["violations"].value == bad.missing_pk > 0
    assert len(read_table(settings, "silver", "sales_orders_silver")) == first.orders

    def poison_rows() -> int:
        bronze = read_table(settings, "bronze", "sales_orders_bronze")
        return int((bronze._source_file == str(poison)).sum())

    in_bronze = poison_rows()
    reject = build_definitions(settings).resolve_job_def("reject_landing_file")
    config = {"table": "sales_orders", "file_name": poison.name, "reason": "blank order_number"}
    run_config = {"ops": {"reject_file": {"config": config}}}
    assert reject.execute_in_process(run_config=run_config).success
    assert not poison.exists() and (landing / "_rejected" / poison.name).exists()
    note = json.loads((landing / "_rejected" / f"{poison.name}.why.json").read_text())
    assert note["reason"] == "blank order_number"
    assert note["bronze_rows_deleted"] == in_bronze > bad.missing_pk and poison_rows() == 0

    fixed = generate(settings, **drop)  # the corrected file, under the same name
    assert poison.exists()
    assert materialize().success
    silver = read_table(settings, "silver", "sales_orders_silver")
    assert len(silver) == first.orders + fixed.orders and silver.order_number.is_unique


def test_gold_window_is_run_config(settings, materialize):
    generate(settings)
    config = {"ops": {"als_interactions_30d": {"config": {"window_days": 7}}}}
    materialize(run_config=config)

    gold = read_table(settings, "gold", "als_interactions_30d")
    join = read_table(settings, "silver", "sales_orders_customer_join_min")
    recent = join[join.order_datetime > join.order_datetime.max() - pd.Timedelta(days=7)]
    assert set(gold.customer_id) == set(recent.customer_id)
    assert gold.total_qty.sum() == sum(p["qty"] for ps in recent.ordered_products for p in ps)


def write_csv(path, columns, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def test_landing_file_names_and_headers_are_read_as_written_or_set_aside(settings, materialize):
    folder = settings.landing_dir / "sales_orders"
    folder.mkdir(parents=True)
    columns = list(SALES_ORDERS_COLUMNS)
    row = {c: f"{c}-{{n}}" for c in columns}

    def rows(*numbers):
        return [[row[c].format(n=n) for c in columns] for n in numbers]

    write_csv(folder / "a[1].csv", columns, rows(1))  # glob characters: read literally, once
    write_csv(folder / "a1.csv", columns, rows(2))
    write_csv(folder / "b*.csv", columns, rows(3))
    write_csv(folder / "S24.CSV", columns, rows(4))
    write_csv(folder / "late:1.csv", columns, rows(5))  # Spark cannot read a ':' name
    write_csv(folder / "d.csv.part", columns, rows(6))
    permuted = list(reversed(columns))  # mapped by name, not by position
    write_csv(folder / "p.csv", permuted, [list(reversed(r)) for r in rows(7)])
    write_csv(folder / "x.csv", [*columns[:-1], "promo"], rows(8))  # unknown column: set aside

    result = materialize(["sales_orders_bronze"])
    again = materialize(["sales_orders_bronze"])

    bronze = read_table(settings, "bronze", "sales_orders_bronze")
    files = zip(bronze._source_file, bronze.order_number, strict=True)
    by_file = {Path(f).name: n for f, n in files}
    assert len(bronze) == len(by_file)  # one row per file read, none twice
    assert by_file == {
        "a[1].csv": "order_number-1",
        "a1.csv": "order_number-2",
        "b*.csv": "order_number-3",
        "S24.CSV": "order_number-4",
        "p.csv": "order_number-7",
    }
    assert set(bronze[bronze._source_file.str.endswith("p.csv")].iloc[0][columns]) == {
        f"{c}-7" for c in columns
    }
    [metadata] = [m.metadata for m in result.asset_materializations_for_node("sales_orders_bronze")]
    assert set(metadata["skipped_files"].value) == {"late:1.csv", "d.csv.part"}
    assert "unknown ['promo']" in metadata["rejected_files"].value["x.csv"]
    assert (folder / "_rejected" / "x.csv").exists() and not (folder / "x.csv").exists()
    [metadata] = [m.metadata for m in again.asset_materializations_for_node("sales_orders_bronze")]
    assert metadata["new_files"].value == 0  # nothing read twice


def test_a_run_that_lists_the_files_while_another_appends_them_ingests_nothing_twice(
    settings, materialize, monkeypatch
):
    summary = generate(settings)
    real = bronze.ingested_files
    raced = []

    def another_run_appends_after_this_listing(lakehouse, table, version):
        done = real(lakehouse, table, version)
        if table == "sales_orders_bronze" and not raced:
            raced.append(table)
            assert materialize(["sales_orders_bronze"]).success  # lists, appends, commits
        return done  # what this run saw: nothing ingested yet

    monkeypatch.setattr(bronze, "ingested_files", another_run_appends_after_this_listing)
    result = materialize(["sales_orders_bronze"])

    assert raced and len(read_table(settings, "bronze", "sales_orders_bronze")) == summary.orders
    [metadata] = [m.metadata for m in result.asset_materializations_for_node("sales_orders_bronze")]
    assert metadata["new_files"].value == 0  # the other run's append stood; this one's did not


def test_a_key_repeated_in_one_file_keeps_its_last_record_and_quarantines_the_other(
    settings, materialize
):
    summary = generate(settings)
    with open(summary.sales_orders_paths[0], newline="") as f:
        template = next(csv.DictReader(f))
    first = {**template, "order_number": "990000001", "customer_name": "first",
             "clicked_items": 'one record\nover two lines'}  # fmt: skip
    second = {**template, "order_number": "990000001", "customer_name": "second"}
    columns = list(SALES_ORDERS_COLUMNS)
    write_csv(
        settings.landing_dir / "sales_orders" / "repeats.csv",
        columns,
        [[r[c] for c in columns] for r in (first, second)],
    )

    result = materialize(["sales_orders_bronze", "sales_orders_quarantine", "sales_orders_silver"])

    bronze = read_table(settings, "bronze", "sales_orders_bronze")
    repeats = bronze[bronze._source_file.str.endswith("repeats.csv")]
    assert sorted(zip(repeats._source_record, repeats.customer_name, strict=True)) == [
        (1, "first"),
        (2, "second"),  # the record after a two-line one is the second, not the third
    ]
    silver = read_table(settings, "silver", "sales_orders_silver")
    assert silver[silver.order_number == 990000001].customer_name.tolist() == ["second"]
    assert len(silver) == summary.orders + 1
    quarantine = read_table(settings, "silver", "sales_orders_quarantine")
    loser = quarantine[quarantine.order_number == "990000001"]
    assert loser.customer_name.tolist() == ["first"]
    assert [list(r) for r in loser[FAILED_RULES]] == [["unique_key"]]
    assert check_violations(result, "sales_orders_silver")["unique_key"] == 1


def rewrite_first_orders_file(summary) -> tuple[str, int, str]:
    """Rewrite the first orders file without its first row and with its second row's customer
    renamed; returns (file name, the removed order number, the renamed order number)."""
    path = summary.sales_orders_paths[0]
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    removed, renamed = rows[0]["order_number"], rows[1]["order_number"]
    rows[1]["customer_name"] = "renamed"
    columns = list(SALES_ORDERS_COLUMNS)
    write_csv(path, columns, [[r[c] for c in columns] for r in rows[1:]])
    return path.name, int(removed), int(renamed)


ORDERS_SILVER = ["sales_orders_bronze", "sales_orders_quarantine", "sales_orders_silver"]


def unchanged_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "landing_files_unchanged"
    ]
    return evaluation


def test_a_file_rewritten_after_ingestion_is_reported_and_left_as_read(settings, materialize):
    summary = generate(settings)
    materialize(ORDERS_SILVER)
    name, removed, renamed = rewrite_first_orders_file(summary)

    result = materialize(ORDERS_SILVER)

    check = unchanged_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert list(check.metadata["changed_files"].value) == [name]
    assert check.metadata["read_again"].value == []
    assert len(read_table(settings, "bronze", "sales_orders_bronze")) == summary.orders
    silver = read_table(settings, "silver", "sales_orders_silver").set_index("order_number")
    assert removed in silver.index and silver.loc[renamed].customer_name != "renamed"


def test_with_reingest_changed_a_rewritten_file_replaces_its_rows(settings, materialize):
    summary = generate(settings)
    materialize(ORDERS_SILVER)
    name, removed, renamed = rewrite_first_orders_file(summary)

    result = support.materialize(replace(settings, landing_reingest_changed=True), ORDERS_SILVER)

    assert unchanged_check(result).metadata["read_again"].value == [name]
    bronze = read_table(settings, "bronze", "sales_orders_bronze")
    assert len(bronze) == summary.orders - 1  # the file's old rows replaced, not added to
    silver = read_table(settings, "silver", "sales_orders_silver").set_index("order_number")
    assert removed not in silver.index and len(silver) == summary.orders - 1
    assert silver.loc[renamed].customer_name == "renamed"
    again = materialize(ORDERS_SILVER)  # read once: the next run finds it as ingested
    assert unchanged_check(again).passed
