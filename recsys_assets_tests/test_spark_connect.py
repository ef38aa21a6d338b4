"""Orders silver through Spark Connect: the same code, the same rows as classic Spark.

Runs the Dagster CLI in a subprocess with ``SPARK_REMOTE=local[2]`` (a local Spark Connect
server), since a process that has used Connect stays in Connect mode.
"""

import os
import subprocess
import sys

import dagster as dg
import pandas as pd

from recsys_assets.settings import Settings
from recsys_assets_tests.support import generate, read_table

# Where and when each home ingested the row.
LINEAGE = ["_source_file", "_ingested_at", "_source_modified_ns"]
# Bronze to silver: reads, rules, the quarantine, MERGE (the cluster suite runs the whole graph
# through a Connect server).
SILVER_ORDERS = ["sales_orders_silver", "sales_orders_quarantine"]


def sorted_table(settings: Settings, layer: str, name: str) -> pd.DataFrame:
    df = read_table(settings, layer, name).drop(columns=LINEAGE, errors="ignore")
    order = df.astype(str).sort_values(list(df.columns)).index  # every column: a total order
    return df.loc[order].reset_index(drop=True)


def test_orders_silver_through_spark_connect_matches_classic(tmp_path, settings, materialize):
    generate(settings, bad_fraction=0.05)
    materialize(dg.AssetSelection.assets(*SILVER_ORDERS).upstream())

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
    cli += ["-m", "recsys_assets.definitions", "--select", f"*{SILVER_ORDERS[0]}"]
    run = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600)

    assert run.returncode == 0, run.stderr[-3000:]
    assert "RUN_SUCCESS" in run.stderr
    for name in SILVER_ORDERS:
        pd.testing.assert_frame_equal(
            sorted_table(connect, "silver", name), sorted_table(settings, "silver", name)
        )
