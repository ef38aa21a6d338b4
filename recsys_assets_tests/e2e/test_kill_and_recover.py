"""Runs killed with SIGKILL at several points, then the daemon and a CLI run at once: nothing
lost, nothing stuck, nothing twice.

Its own homes and CLI runs (not the shared ``dagster dev``): each run is killed with its whole
process session (the run process and Spark's JVM), as a crash or ``kill -9`` would. Then
``dagster-daemon`` starts on the same instance: dead_run_sensor marks the killed runs failed,
which frees the one run slot, and csv_drop_sensor's run ingests the files, while a CLI run (which
bypasses the queue) materialises the medallion beside it: the tables both runs write.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient

from recsys_assets import datagen
from recsys_assets.assets.als import MODEL_NAME as ALS_MODEL
from recsys_assets.assets.churn import MODEL_NAME as CHURN_MODEL
from recsys_assets.registry import CHAMPION, DAGSTER_RUN_TAG, Verdict
from recsys_assets.settings import Settings
from recsys_assets_tests.processes import REPO, Service, kill_all, wait_for
from recsys_assets_tests.support import DEPLOYMENT_ENV, TEST_SPARK_CONF, home_table

DATA = {"customers": 300, "days": 60, "seed": 7}
# Later drops of ten days each: the models' 30-day window holds as much history as after the
# first drop, where the challengers beat the popularity baseline (test_dagster_dev.py).
LATER = {**DATA, "days": 10}
BIN = Path(sys.executable).parent
MATERIALIZE = [str(BIN / "dagster"), "asset", "materialize", "-m", "recsys_assets.definitions"]
STEP_FAILURE = dg.DagsterEventType.STEP_FAILURE
STARTED = dg.DagsterRunStatus.STARTED


def line_in(log: Path, pattern: str) -> bool:
    return re.search(pattern, log.read_text(errors="replace")) is not None


def killed_run(env: dict[str, str], log_dir: Path, name: str, when: str, after_s: float) -> None:
    """Materialise everything from the CLI and SIGKILL the run's session ``after_s`` seconds
    after its log matches ``when``."""
    run = Service.start(name, [*MATERIALIZE, "--select", "*"], log_dir, lambda: True, env)
    try:
        wait_for(lambda: run.check_alive() or line_in(run.log_path, when), 600, 0.2, f"'{when}'")
        time.sleep(after_s)
        run.check_alive()  # still running: the kill lands inside the step
    finally:
        kill_all(run.process.pid)
        run.process.wait(timeout=30)


def rows_per_file(drops: list[datagen.GenerationSummary]) -> dict[str, int]:
    return {
        str(path.resolve()): rows
        for drop in drops
        for path, rows in zip(drop.sales_orders_paths, drop.rows_per_file, strict=True)
    }


def bronze_rows_per_file(home: Path) -> dict[str, int]:
    table = home_table(home, "bronze", "sales_orders_bronze").to_pandas()
    return table.groupby("_source_file").size().to_dict()


@pytest.fixture
def homes(tmp_path: Path) -> dict[str, str]:
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT_ENV}
    return env | {
        "DAGSTER_HOME": str(dagster_home),
        "RECSYS_HOME": str(tmp_path / "recsys"),
        "RECSYS_LANDING_SETTLE_SECONDS": "0",
        "RECSYS_SPARK_CONF": TEST_SPARK_CONF,  # small data (the shared dagster dev runs defaults)
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def test_killed_runs_lose_nothing_and_the_daemon_goes_on(homes: dict[str, str], tmp_path: Path):
    landing = Path(homes["RECSYS_HOME"]) / "landing"
    logs = tmp_path / "logs"
    logs.mkdir()
    drops = [datagen.generate(landing, **DATA, start_date=date(2024, 1, 1))]

    # During bronze: the files are listed and being read, nothing committed yet.
    killed_run(homes, logs, "killed-in-bronze", r"sales_orders_bronze - .*file\(s\) to read", 0.5)
    # During training (whichever model starts first): the tables are written, the models not.
    training = r"(als_challenger|churn_model) - STEP_START"
    killed_run(homes, logs, "killed-in-training", training, 3)
    # During silver's write of a second drop (new keys, so an append rather than a MERGE).
    drops.append(datagen.generate(landing, **LATER, start_date=date(2024, 3, 1)))
    killed_run(homes, logs, "killed-in-merge", r"sales_orders_silver_tables - .*violations", 0.3)

    drops.append(datagen.generate(landing, **LATER, start_date=date(2024, 3, 11)))
    instance = dg.DagsterInstance.from_config(homes["DAGSTER_HOME"])
    killed = [r.run_id for r in instance.get_runs(dg.RunsFilter(statuses=[STARTED]))]
    assert len(killed) == 3  # left STARTED by their dead processes

    # The daemon; once its queued run has started, a CLI run (outside the queue) beside it that
    # writes the same bronze, silver and gold tables (the models are the sensor run's alone, so
    # no promotion race can turn either run down).
    daemon = Service.start(
        "daemon",
        [str(BIN / "dagster-daemon"), "run", "-m", "recsys_assets.definitions"],
        logs,
        lambda: True,
        homes,
    )
    beside = None
    try:

        def sensor_run(finished: bool) -> dg.DagsterRun | None:
            daemon.check_alive()
            runs = instance.get_runs(dg.RunsFilter(job_name="refresh_job"))
            wanted = [r for r in runs if r.is_finished or (not finished and r.status == STARTED)]
            return wanted[0] if wanted else None

        wait_for(lambda: sensor_run(finished=False), 600, 1, "the sensor's run to start")
        medallion = [*MATERIALIZE, "--select", "*als_interactions_30d"]
        beside = Service.start("beside", medallion, logs, lambda: True, homes)
        run = wait_for(lambda: sensor_run(finished=True), 900, 3, "the sensor's run to end")
        beside.process.wait(timeout=900)
    finally:
        daemon.stop()
        if beside:
            beside.stop()

    for run_id in killed:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    # Writes that lose to the other run's commit are retried from the tables it left: no step
    # of either run fails.
    failed_steps = {
        "sensor": {e.step_key for e in instance.all_logs(run.run_id, of_type=STEP_FAILURE)},
        "beside": set(
            re.findall(r'STEP_FAILURE - Execution of step "(\w+)"', beside.log_tail(10**6))
        ),
    }
    assert failed_steps == {"sensor": set(), "beside": set()}, (
        failed_steps,
        daemon.log_tail(),
        beside.log_tail(),
    )
    assert run.status == dg.DagsterRunStatus.SUCCESS and beside.process.returncode == 0
    home = Path(homes["RECSYS_HOME"])
    assert bronze_rows_per_file(home) == rows_per_file(drops)  # each file once
    silver = home_table(home, "silver", "sales_orders_silver")
    assert silver.to_pyarrow_dataset().count_rows() == sum(d.orders for d in drops)
    settings = Settings.from_env({"RECSYS_HOME": str(home)})
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_registry_uri)
    started_at = instance.get_run_record_by_id(run.run_id).start_time
    customers = home_table(home, "silver", "customers_silver").to_pandas()
    for model, table in (
        (ALS_MODEL, "customer_recommendations"),
        (CHURN_MODEL, "churn_predictions"),
    ):
        champion = client.get_model_version_by_alias(model, CHAMPION)  # promoted by that run
        verdict = Verdict.from_tags(champion.tags)
        assert verdict is not None and verdict.status == "PASSED", (model, verdict)
        assert champion.tags[DAGSTER_RUN_TAG] == run.run_id, model
        # ... and the day's scores come from it, for every customer, written in that run.
        scores = home_table(home, "gold", table).to_pandas()
        assert set(scores.model_version.astype(str)) == {str(champion.version)}, table
        stamp = scores.filter(like="_at").iloc[:, 0]  # generated_at / scored_at
        assert stamp.min().timestamp() >= started_at, table
        assert set(scores.customer_id) == set(customers.customer_id), table
    lakehouse = Path(settings.lakehouse_uri)
    tables = sorted(p.parent for p in lakehouse.glob("*/*/_delta_log"))
    assert len(tables) >= 10
    for table in tables:
        DeltaTable(str(table)).to_pyarrow_dataset().count_rows()  # every table reads
