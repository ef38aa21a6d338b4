"""The same graph, by configuration alone: embedded defaults (the reference), a Spark standalone
cluster (the medallion, its IO done by the executors), a Spark Connect server on that cluster
with an MLflow tracking server and a Dagster instance on PostgreSQL (materialise-all and the
model lifecycle), and tables on an S3-compatible store (materialise-all). Each run is the
Dagster CLI in a subprocess, as a user runs it; the tables must hold the same rows and the
champion must behave the same.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from recsys_assets.assets import als, churn
from recsys_assets.maintenance import existing_tables
from recsys_assets.registry import CHAMPION, Verdict
from recsys_assets.settings import Settings
from recsys_assets.tables import table_uri
from recsys_assets_tests.cluster.conftest import Postgres, S3Server, SparkCluster
from recsys_assets_tests.processes import HOST, REPO, Service, run
from recsys_assets_tests.support import DEPLOYMENT_ENV, TEST_SPARK_CONF, delta_table, generate

RUN_TIMEOUT_S = 900  # a whole-graph CLI run takes about 2 min here; room for slow machines
# Small models, so the lifecycle below is quick; the same on every deployment.
FIRST = {"rank": 2, "max_iter": 2}
BETTER = {"rank": 4, "max_iter": 3, "alpha": 5.0}
# What `*als_interactions_30d` writes: the tables that grow with the data.
MEDALLION_TABLES = [
    ("bronze", "customers_bronze"),
    ("bronze", "sales_orders_bronze"),
    ("silver", "customers_silver"),
    ("silver", "customers_quarantine"),
    ("silver", "sales_orders_silver"),
    ("silver", "sales_orders_quarantine"),
    ("silver", "sales_orders_customer_join_min"),
    ("gold", "als_interactions_30d"),
]
TABLES = [
    *MEDALLION_TABLES,
    ("gold", "customer_features"),
    ("ml", "als_train"),
    ("ml", "als_test"),
    ("ml", "churn_training_set"),
    ("gold", "churn_predictions"),
    ("gold", "customer_recommendations"),
]
# Columns that name where or when a run happened, not what it computed.
RUN_COLUMNS = {"_ingested_at", "_source_modified_ns", "generated_at", "scored_at", "dagster_run_id"}


def als_config(params: dict) -> dict:
    return {"ops": {"als_challenger": {"config": params}}}


@dataclass
class Deployment:
    """One configuration of the project: its state, its Dagster instance, its environment."""

    root: Path
    env: dict[str, str]

    @property
    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def dagster(self, *args: str) -> subprocess.CompletedProcess:
        return run([sys.executable, "-m", "dagster", *args], RUN_TIMEOUT_S, self.env, self.root)

    def materialize(self, selection: str, config: dict) -> subprocess.CompletedProcess:
        return self.dagster(
            "asset", "materialize", "-m", "recsys_assets.definitions",
            "--select", selection, "--config-json", json.dumps(config),
        )  # fmt: skip

    def rows(self, layer: str, table: str) -> list[str]:
        """Every row as canonical JSON, sorted: equal lists mean the same rows."""
        data = delta_table(self.settings, layer, table, self.env).to_pyarrow_table()
        data = data.drop_columns([c for c in data.column_names if c in RUN_COLUMNS])
        return sorted(canonical(row) for row in data.to_pylist())


def canonical(row: dict) -> str:
    if "_source_file" in row:  # the file, not the folder it landed in
        row = {**row, "_source_file": Path(row["_source_file"]).name}
    # Sums over differently partitioned data differ in their last bits (1e-12 seen).
    return json.dumps(
        {k: f"{v:.9g}" if isinstance(v, float) else v for k, v in row.items()},
        sort_keys=True,
        default=str,
    )


def deployment(root: Path, instance_yaml: str, **env: str) -> Deployment:
    """Generated data and an instance folder under ``root``; ``env`` picks the engines."""
    dagster_home = root / "dagster"
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / instance_yaml, dagster_home / "dagster.yaml")
    clean = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT_ENV}
    full_env = {
        **clean,
        "RECSYS_HOME": str(root / "recsys"),
        "DAGSTER_HOME": str(dagster_home),
        "RECSYS_SPARK_CONF": TEST_SPARK_CONF,  # small data; the same on every deployment
    }
    target = Deployment(root, {**full_env, **env})
    # Where ALS beats popularity (test_als.py); the bad rows are extra, so the good ones are
    # those of clean data and every deployment quarantines the same rows.
    generate(target.settings, customers=200, bad_fraction=0.05)
    return target


def assert_succeeded(run: subprocess.CompletedProcess) -> None:
    assert run.returncode == 0 and "RUN_SUCCESS" in run.stderr, run.stderr[-5000:]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Deployment:
    """The reference: embedded defaults (local Spark, SQLite MLflow, Dagster on SQLite)."""
    target = deployment(tmp_path_factory.mktemp("embedded"), "dagster.yaml")
    assert_succeeded(target.materialize("*", als_config(FIRST)))
    return target


def assert_same_tables(
    deployed: Deployment, reference: Deployment, tables: list[tuple[str, str]] = TABLES
) -> None:
    for layer, table in tables:
        assert deployed.rows(layer, table) == reference.rows(layer, table), f"{layer}.{table}"


def champion(client: MlflowClient, model: str) -> str:
    return str(client.get_model_version_by_alias(model, CHAMPION).version)


def executor_output_bytes(event_logs: Path) -> dict[str, int]:
    """Bytes each executor's tasks wrote to storage, from Spark's event log (its task metrics)."""
    written: dict[str, int] = {}
    for path in (p for p in event_logs.rglob("*") if p.is_file()):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["Event"] != "SparkListenerTaskEnd" or "Task Metrics" not in event:
                continue
            executor = event["Task Info"]["Executor ID"]
            output = event["Task Metrics"].get("Output Metrics", {}).get("Bytes Written", 0)
            written[executor] = written.get(executor, 0) + output
    return written


def data_file_bytes(target: Deployment, tables: list[tuple[str, str]]) -> int:
    """The size of the tables' data files (every version: nothing is vacuumed)."""
    return sum(
        f.stat().st_size
        for layer, table in tables
        for f in Path(table_uri(target.settings.lakehouse_uri, layer, table)).glob("*.parquet")
    )


def test_standalone_cluster_runs_the_medallion_in_its_workers(
    spark_cluster: SparkCluster, embedded: Deployment, tmp_path
):
    spark_conf, event_logs = tmp_path / "spark-conf", tmp_path / "spark-events"
    spark_conf.mkdir()
    event_logs.mkdir()
    (spark_conf / "spark-defaults.conf").write_text(
        f"spark.eventLog.enabled true\nspark.eventLog.dir {event_logs.as_uri()}\n"
        "spark.eventLog.rolling.enabled false\nspark.eventLog.compress false\n"
    )
    target = deployment(tmp_path, "dagster.yaml", SPARK_MASTER=spark_cluster.url,
                        SPARK_LOCAL_IP=HOST, SPARK_CONF_DIR=str(spark_conf))  # fmt: skip

    # The medallion, whose IO grows with the data; the models run on this cluster's executors
    # in the Spark Connect test below.
    assert_succeeded(target.materialize("*als_interactions_30d", {}))

    assert_same_tables(target, embedded, MEDALLION_TABLES)
    # Executors ran in the worker processes: each worker launched one for the run's application
    # and its log shows tasks.
    (app,) = [a for a in spark_cluster.state()["completedapps"] if a["name"] == "recsys_assets"]
    for work_dir in spark_cluster.work_dirs:
        logs = list((work_dir / app["id"]).glob("*/stderr"))
        assert logs and any("Running task" in log.read_text() for log in logs), work_dir
    # The executors wrote the tables: every byte of their data files came out of an executor's
    # task (the driver runs none), none through the client process.
    written = executor_output_bytes(event_logs)
    assert "driver" not in written and len(written) == len(spark_cluster.work_dirs)
    assert sum(written.values()) >= data_file_bytes(target, MEDALLION_TABLES) > 0


def test_connect_server_mlflow_server_and_postgres_instance(
    spark_connect: str, mlflow_server: str, postgres: Postgres, embedded: Deployment, tmp_path
):
    target = deployment(
        tmp_path,
        "dagster.postgres.yaml",
        SPARK_REMOTE=spark_connect,
        MLFLOW_TRACKING_URI=mlflow_server,
        DAGSTER_PG_URL=postgres.url("dagster"),
    )
    client = MlflowClient(mlflow_server)

    # The whole graph, model training and logging included, through Spark Connect.
    assert_succeeded(target.materialize("*", als_config(FIRST)))
    assert_same_tables(target, embedded)
    assert target.rows("silver", "sales_orders_quarantine")  # the rules ran there too
    for model in (als.MODEL_NAME, churn.MODEL_NAME):
        assert champion(client, model) == "1"
        assert Verdict.from_tags(client.get_model_version(model, "1").tags).status == "PASSED"

    # The lifecycle on the tracking server: a better challenger is promoted (its verdict and
    # the alias recorded there), and the rollback job gives the alias back. A challenger that
    # the gate blocks is test_als.py's, on the same Registry code.
    models = "als_challenger als_evaluation als_champion customer_recommendations".split()
    assert_succeeded(target.materialize(",".join(models), als_config(BETTER)))
    assert champion(client, als.MODEL_NAME) == "2"
    served = client.get_model_version_by_alias(als.SERVING.name, CHAMPION)  # what make serve loads
    assert (str(served.version), served.tags[als.SERVING.tag]) == ("2", "2")
    verdict = Verdict.from_tags(client.get_model_version(als.MODEL_NAME, "2").tags)
    assert (verdict.status, verdict.champion_version) == ("PASSED", "1")  # compared with v1
    rollback = target.dagster("job", "execute", "-m", "recsys_assets.definitions",
                              "-j", "rollback_champion")  # fmt: skip
    assert_succeeded(rollback)
    assert champion(client, als.MODEL_NAME) == "1"
    assert champion(client, als.SERVING.name) == "1"  # the recommender built from ALS v1
    rolled_back = Verdict.from_tags(client.get_model_version(als.MODEL_NAME, "2").tags)
    assert rolled_back.status == "ROLLED_BACK"

    # Runs, their event logs and schedule state live in PostgreSQL.
    schedule = target.dagster("schedule", "start", "daily_refresh",
                              "-m", "recsys_assets.definitions")  # fmt: skip
    assert schedule.returncode == 0, schedule.stderr[-3000:]
    with postgres.connect("dagster") as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs ORDER BY create_timestamp")
        # ... the last two: the rollback, and the re-scoring run it launched
        statuses = [s for (s,) in cursor.fetchall()]
        assert statuses == ["SUCCESS", "SUCCESS", "SUCCESS", "SUCCESS"]
        cursor.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        )
        assert cursor.fetchone()[0] > len(TABLES)
        cursor.execute("SELECT status, instigator_body FROM instigators")
        states = {status for status, body in cursor.fetchall() if '"daily_refresh"' in body}
        assert states == {"RUNNING"}


def test_tables_on_an_s3_compatible_store(
    s3_server: S3Server, embedded: Deployment, tmp_path, monkeypatch
):
    bucket, prefix = "recsys-lakehouse", "tables"
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    lakehouse = f"s3a://{bucket}/{prefix}"
    target = deployment(tmp_path, "dagster.yaml", RECSYS_LAKEHOUSE_URI=lakehouse, **s3_server.env)

    # The whole graph: Spark (S3A) writes and MERGEs the tables, delta-rs reads their logs and
    # dagster-deltalake writes the churn tables, all in the bucket.
    assert_succeeded(target.materialize("*", als_config(FIRST)))

    assert_same_tables(target, embedded)  # read back from the bucket with delta-rs
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    ]
    for layer, table in TABLES:
        folder = f"{prefix}/{layer}/{table}/"
        assert any(k.startswith(f"{folder}_delta_log/") and k.endswith(".json") for k in keys)
        assert any(k.startswith(folder) and k.endswith(".parquet") for k in keys), folder
    # Nothing of the lakehouse was written locally (landing files and MLflow stay local).
    assert not list(target.root.rglob("_delta_log")) and target.settings.object_store
    assert (target.settings.home / "mlflow").is_dir()
    # What maintenance lists, through pyarrow (which spells the scheme s3://).
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    assert set(TABLES) <= set(existing_tables(target.settings.lakehouse_uri))


def test_every_server_listens_on_loopback_only(
    servers: list[Service], postgres, mlflow_server, spark_cluster, spark_connect, s3_server
):
    assert {s.name for s in servers} >= {
        "postgres", "mlflow", "spark-master", "spark-connect", "moto-s3"
    }  # fmt: skip
    for server in servers:
        addresses = server.listening_addresses()
        assert addresses, f"{server.name} listens nowhere"
        assert all(ipaddress.ip_address(a).is_loopback for a in addresses), (server.name, addresses)
