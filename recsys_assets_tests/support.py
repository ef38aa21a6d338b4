"""Helpers for tests: small generated data, and Delta tables read back with delta-rs."""

import json
from datetime import date
from pathlib import Path

import dagster as dg
import pandas as pd
from deltalake import DeltaTable

from recsys_assets import assets, datagen
from recsys_assets.definitions import build_resources
from recsys_assets.resources.lakehouse import delta_rs_options
from recsys_assets.settings import Settings
from recsys_assets.tables import table_uri

# An S3-compatible store and its credentials (an s3a:// RECSYS_LAKEHOUSE_URI), as AWS_<name>.
AWS_VARIABLES = (
    "ENDPOINT_URL",
    "REGION",
    "DEFAULT_REGION",
    "ALLOW_HTTP",
    "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY",
    "SESSION_TOKEN",
    "PROFILE",
)
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

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
    *(f"AWS_{name}" for name in AWS_VARIABLES),
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


def materialize(
    settings: Settings, selection: object = assets.MEDALLION, **kwargs: object
) -> dg.ExecuteInProcessResult:
    """Materialise ``selection`` of the real code location against ``settings``, in this
    process, asset checks included; ``kwargs`` as ``dg.materialize`` takes them."""
    return assets.materialize(selection, build_resources(settings), **kwargs)


def generate(settings: Settings, **kwargs) -> datagen.GenerationSummary:
    """Small generated data in the landing zone."""
    options = {"customers": 120, "days": 60, "seed": 7, "start_date": date(2024, 1, 1)}
    return datagen.generate(settings.landing_dir, **{**options, **kwargs})


def storage_options(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """delta-rs's options for the lakehouse of ``settings``, with the credentials that its runs
    read from their environment ``env`` (this process's may have none)."""
    options = delta_rs_options(settings.object_store)
    if options:
        options.update({name: env[name] for name in CREDENTIALS if name in env})
    return options


def delta_table(
    settings: Settings, layer: str, name: str, env: dict[str, str] | None = None
) -> DeltaTable:
    """A table of the lakehouse of ``settings``, a folder or an object store (whose runs have
    the credentials in ``env``), read with delta-rs."""
    options = storage_options(settings, env or {})
    return DeltaTable(table_uri(settings.lakehouse_uri, layer, name), storage_options=options)


def table_folder(settings: Settings, layer: str, name: str) -> Path:
    """A table's folder, for a lakehouse on the local file system."""
    return Path(table_uri(settings.lakehouse_uri, layer, name))


def home_table(home: Path, layer: str, name: str) -> DeltaTable:
    """A table of the lakehouse a process with ``RECSYS_HOME=home`` (and nothing else) writes."""
    return delta_table(Settings.from_env({"RECSYS_HOME": str(home)}), layer, name)


def read_table(settings: Settings, layer: str, name: str) -> pd.DataFrame:
    """A Delta table as pandas, read with delta-rs (independently of Spark)."""
    return delta_table(settings, layer, name).to_pandas()
