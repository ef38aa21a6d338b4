"""Helpers for tests: small generated data, and Delta tables read back with delta-rs."""

import json
from datetime import date
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable

from recsys_assets import datagen
from recsys_assets.settings import Settings
from recsys_assets.tables import table_uri

# Where a process sends its tables, Spark work, MLflow runs and Dagster runs, and how Spark is
# tuned: tests that start the CLI or `dagster dev` set these themselves, so the caller's shell
# never leaks in.
DEPLOYMENT_ENV = (
    "RECSYS_HOME",
    "RECSYS_LAKEHOUSE_URI",
    "SPARK_MASTER",
    "SPARK_REMOTE",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "DAGSTER_HOME",
    "RECSYS_SPARK_CONF",
)


# Small data: a shuffle partition per core (the project's 64 are sized for 10M orders), and
# Spark's interpreted evaluation, as in Spark's own test suites: compiling generated code costs
# more than it saves on tables of a few hundred rows (a quarter of an incremental test's time).
# Every test runs with it (as RECSYS_SPARK_CONF) but the e2e suite's `dagster dev`, which runs
# the project's own settings, as a user meets them.
TEST_SQL = {
    "spark.sql.shuffle.partitions": "2",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
TEST_SPARK_CONF = json.dumps(TEST_SQL)


def settings_for(home: Path, **env: str) -> Settings:
    """Settings for a test's own ``RECSYS_HOME``. Files are generated just before each run, so
    they need not settle (tests that want the wait set it themselves)."""
    defaults = {
        "RECSYS_HOME": str(home),
        "RECSYS_LANDING_SETTLE_SECONDS": "0",
        "RECSYS_SPARK_CONF": TEST_SPARK_CONF,
    }
    return Settings.from_env({**defaults, **env})


def generate(settings: Settings, **kwargs) -> datagen.GenerationSummary:
    """Small generated data in the landing zone."""
    options = {"customers": 120, "days": 60, "seed": 7, "start_date": date(2024, 1, 1)}
    return datagen.generate(settings.landing_dir, **{**options, **kwargs})


def delta_table(settings: Settings, layer: str, name: str) -> DeltaTable:
    return DeltaTable(table_uri(settings.lakehouse_uri, layer, name))


def read_table(settings: Settings, layer: str, name: str) -> pd.DataFrame:
    """A Delta table as pandas, read with delta-rs (independently of Spark)."""
    return delta_table(settings, layer, name).to_pandas()
