"""The medallion assets through Spark Connect: the same code, the same rows as classic Spark.

Runs the Dagster CLI in a subprocess with ``SPARK_REMOTE=local[2]`` (a local Spark Connect
server), since a process that has used Connect stays in Connect mode.
"""

import os
import subprocess
import sys

import pandas as pd

from recsys_assets.settings import Settings
from recsys_assets_tests.support import generate, read_table

LINEAGE = ["_source_file", "_ingested_at"]  # where and when each home ingested the row


def sorted_table(settings: Settings, layer: str, name: str) -> pd.DataFrame:
    df = read_table(settings, layer, name).drop(columns=LINEAGE, errors="ignore")
    return df.sort_values(list(df.columns[:2])).reset_index(drop=True)


def test_medallion_through_spark_connect_matches_classic(tmp_path, settings, materialize):
    generate(settings, bad_fraction=0.05)
    materialize()

    connect = Settings.from_env({"RECSYS_HOME": str(tmp_path / "connect")})
    generate(connect, bad_fraction=0.05)
    env = {
        **os.environ,
        "RECSYS_HOME": str(connect.home),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "SPARK_REMOTE": "local[2]",
    }
    os.makedirs(env["DAGSTER_HOME"])
    cli = [sys.executable, "-m", "dagster", "asset", "materialize"]
    cli += ["-m", "recsys_assets.definitions", "--select", "*als_interactions_30d"]
    run = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600)

    assert run.returncode == 0, run.stderr[-3000:]
    assert "RUN_SUCCESS" in run.stderr
    for layer, name in [("silver", "sales_orders_silver"), ("gold", "als_interactions_30d")]:
        pd.testing.assert_frame_equal(
            sorted_table(connect, layer, name), sorted_table(settings, layer, name)
        )
