"""After the first drop (conftest's ``refresh``): a queued run and a cancelled run.

On the same ``dagster dev`` as test_dagster_dev.py (later drops, the sensor's runs for them and
the gate's decision on retrained models are test_kill_and_recover.py's).
"""

from pathlib import Path

import pytest
from deltalake import DeltaTable

from recsys_assets.settings import Settings
from recsys_assets_tests.e2e.conftest import (
    POLL_S,
    RUN_TIMEOUT_S,
    TERMINAL,
    DagsterDev,
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


def test_a_run_launched_beside_another_waits_and_a_cancelled_run_leaves_tables_readable(
    dagster_dev: DagsterDev, refresh
):
    home = settings(dagster_dev)
    tables = sorted(p for p in Path(home.lakehouse_uri).glob("*/*") if (p / "_delta_log").is_dir())
    versions = {p: DeltaTable(str(p)).version() for p in tables}
    rows = {p: DeltaTable(str(p)).to_pyarrow_table().num_rows for p in tables}
    medallion = launch(dagster_dev, "customers_bronze", "sales_orders_bronze",
                       "customers_silver", "customers_quarantine", "sales_orders_silver",
                       "sales_orders_quarantine", "sales_orders_customer_join_min",
                       "als_interactions_30d")  # fmt: skip
    # Bronze with no new file: short, so the test measures the queue, not Spark.
    beside = launch(dagster_dev, "customers_bronze")

    def started() -> bool:
        status = run_by_id(dagster_dev, medallion)["status"]
        if status in TERMINAL:
            pytest.fail(f"the run ended ({status}) before it could be cancelled")
        return status == "STARTED"

    wait_for(started, RUN_TIMEOUT_S, 0.5, "the run to start")
    # dagster.yaml: max_concurrent_runs 1, so the second run waits in the queue.
    assert run_by_id(dagster_dev, beside)["status"] == "QUEUED"
    terminated = dagster_dev.graphql(TERMINATE, {"runId": medallion})["terminateRun"]
    assert terminated["__typename"] == "TerminateRunSuccess", terminated

    cancelled = wait_until_finished(dagster_dev, medallion)
    assert cancelled["status"] == "CANCELED"
    queued = wait_until_finished(dagster_dev, beside)
    assert queued["status"] == "SUCCESS", failures(dagster_dev, beside)
    assert queued["startTime"] >= cancelled["endTime"]  # dequeued once the slot was free
    for path in tables:  # every table loads, at its old version or a newer committed one
        table = DeltaTable(str(path))
        assert table.version() >= versions[path]
        # Reads every data file the log names; a rebuilt table is never left empty.
        assert table.to_pyarrow_table().num_rows >= min(rows[path], 1), path
