"""After the first drop (conftest's ``refresh``): a second drop, queued runs, a cancelled run.

These run after test_dagster_dev.py (pytest orders files by name) on the same ``dagster dev``.
"""

from datetime import date
from pathlib import Path

import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient

from recsys_assets import datagen
from recsys_assets.assets.als import MODEL_NAME as ALS_MODEL
from recsys_assets.assets.churn import MODEL_NAME as CHURN_MODEL
from recsys_assets.registry import CHAMPION, Verdict
from recsys_assets.settings import Settings
from recsys_assets_tests.e2e.conftest import (
    POLL_S,
    RUN_TIMEOUT_S,
    TERMINAL,
    DagsterDev,
    Refresh,
    failures,
    runs,
)
from recsys_assets_tests.processes import wait_for

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunSuccess { run { runId } }
    ... on TerminateRunFailure { message }
    ... on PythonError { message }
  }
}
"""


def settings(dev: DagsterDev) -> Settings:
    return Settings.from_env({"RECSYS_HOME": str(dev.recsys_home)})


def launch(dev: DagsterDev, *assets: str) -> str:
    selector = {
        "repositoryLocationName": dev.location,
        "repositoryName": dev.repository,
        "jobName": "__ASSET_JOB",
        "assetSelection": [{"path": [a]} for a in assets],
    }
    result = dev.graphql(LAUNCH, {"params": {"selector": selector, "mode": "default"}})
    launched = result["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def run_by_id(dev: DagsterDev, run_id: str) -> dict:
    [run] = runs(dev, runIds=[run_id])
    return run


def wait_until_finished(dev: DagsterDev, run_id: str) -> dict:
    def finished() -> dict | None:
        dev.check_alive()
        run = run_by_id(dev, run_id)
        return run if run["status"] in TERMINAL else None

    return wait_for(finished, RUN_TIMEOUT_S, POLL_S, f"run {run_id} to finish")


def version(client: MlflowClient, model: str, alias: str) -> str:
    return str(client.get_model_version_by_alias(model, alias).version)


def test_a_second_drop_is_ingested_alone_and_the_gate_decides(
    dagster_dev: DagsterDev, refresh: Refresh
):
    dev, home = dagster_dev, settings(dagster_dev)
    client = MlflowClient(home.mlflow_tracking_uri)
    before = {r["runId"] for r in runs(dev)}

    second = datagen.generate(dev.landing, customers=150, days=30, seed=7,
                              start_date=date(2024, 3, 1))  # fmt: skip

    def sensor_run() -> dict | None:
        new = [r for r in runs(dev, pipelineName="refresh_job") if r["runId"] not in before]
        return new[0] if new and new[0]["status"] in TERMINAL else None

    run = wait_for(sensor_run, RUN_TIMEOUT_S, POLL_S, "the sensor's run for the second drop")

    bronze = DeltaTable(f"{home.lakehouse_uri}/bronze/sales_orders_bronze").to_pandas()
    per_file = bronze.groupby("_source_file").size()
    [new_file] = second.sales_orders_paths
    assert per_file[str(new_file.resolve())] == second.rows_per_file[0]
    assert per_file.sum() == refresh.summary.orders + second.orders  # nothing read twice
    # Whatever the gates decided about the retrained models, the champion is a version whose
    # verdict passed, and the new data was scored by it in this run.
    for model, table in (
        (ALS_MODEL, "customer_recommendations"),
        (CHURN_MODEL, "churn_predictions"),
    ):
        now = version(client, model, CHAMPION)
        verdict = Verdict.from_tags(client.get_model_version(model, now).tags)
        assert verdict is not None and verdict.status == "PASSED", (model, verdict)
        scores = DeltaTable(f"{home.lakehouse_uri}/gold/{table}").to_pandas()
        assert set(scores.model_version.astype(str)) == {now}, failures(dev, run["runId"])
        stamp = scores.filter(like="_at").iloc[:, 0]  # generated_at / scored_at
        assert stamp.min().timestamp() >= run["startTime"], table
        assert scores.customer_id.nunique() == len(
            set(DeltaTable(f"{home.lakehouse_uri}/silver/customers_silver").to_pandas().customer_id)
        )


def test_runs_launched_together_are_queued_one_at_a_time(dagster_dev: DagsterDev, refresh):
    # Bronze with no new file: each run is short, so the test measures the queue, not Spark.
    first = launch(dagster_dev, "customers_bronze")
    second = launch(dagster_dev, "customers_bronze")

    a, b = wait_until_finished(dagster_dev, first), wait_until_finished(dagster_dev, second)

    assert a["status"] == b["status"] == "SUCCESS", failures(dagster_dev, first)
    earlier, later = sorted([a, b], key=lambda r: r["startTime"])
    assert later["startTime"] >= earlier["endTime"]  # dagster.yaml: max_concurrent_runs 1


def test_a_run_cancelled_half_way_leaves_every_table_readable(dagster_dev: DagsterDev, refresh):
    home = settings(dagster_dev)
    tables = sorted(p for p in Path(home.lakehouse_uri).glob("*/*") if (p / "_delta_log").is_dir())
    versions = {p: DeltaTable(str(p)).version() for p in tables}
    rows = {p: DeltaTable(str(p)).to_pyarrow_table().num_rows for p in tables}
    run_id = launch(dagster_dev, "customers_bronze", "sales_orders_bronze",
                    "customers_silver", "customers_quarantine", "sales_orders_silver",
                    "sales_orders_quarantine", "sales_orders_customer_join_min",
                    "als_interactions_30d")  # fmt: skip

    def started() -> bool:
        status = run_by_id(dagster_dev, run_id)["status"]
        if status in TERMINAL:
            pytest.fail(f"the run ended ({status}) before it could be cancelled")
        return status == "STARTED"

    wait_for(started, RUN_TIMEOUT_S, 0.5, "the run to start")
    terminated = dagster_dev.graphql(TERMINATE, {"runId": run_id})["terminateRun"]
    assert terminated["__typename"] == "TerminateRunSuccess", terminated

    assert wait_until_finished(dagster_dev, run_id)["status"] == "CANCELED"
    for path in tables:  # every table loads, at its old version or a newer committed one
        table = DeltaTable(str(path))
        assert table.version() >= versions[path]
        # Reads every data file the log names; a rebuilt table is never left empty.
        assert table.to_pyarrow_table().num_rows >= min(rows[path], 1), path
