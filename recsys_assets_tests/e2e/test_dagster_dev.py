"""The product as a user meets it: `dagster dev`, a CSV drop, the sensor's run, the UI's API.

Everything goes through a real ``dagster dev`` (webserver and daemon, see conftest.py): the
daemon's sensor sees the drop and launches ``refresh_job``, the run launcher runs it in a
subprocess, and the results are read back through Dagster's GraphQL API, as the UI reads them.
"""

from mlflow import MlflowClient

from recsys_assets import expectations
from recsys_assets.assets.bronze import UNCHANGED
from recsys_assets.registry import Verdict
from recsys_assets.settings import Settings
from recsys_assets_tests.e2e.conftest import (
    DagsterDev,
    Refresh,
    failures,
    run_events,
    runs,
    sensor,
    tags,
)

# Every asset of the README's graph, with its group.
EXPECTED_ASSETS = {
    "customers_bronze": "bronze",
    "sales_orders_bronze": "bronze",
    "customers_silver": "silver",
    "sales_orders_silver": "silver",
    "customers_quarantine": "silver",
    "sales_orders_quarantine": "silver",
    "sales_orders_customer_join_min": "silver",
    "als_interactions_30d": "gold",
    "als_train": "als_model",
    "als_test": "als_model",
    "als_challenger": "als_model",
    "als_evaluation": "als_model",
    "als_champion": "als_model",
    "customer_recommendations": "als_model",
    "customer_features": "gold",
    "churn_training_set": "churn_model",
    "churn_model": "churn_model",
    "churn_champion": "churn_model",
    "churn_predictions": "churn_model",
}


def rule_names(rules: tuple[expectations.Expectation, ...]) -> set[str]:
    return {r.name for r in (expectations.WELL_FORMED, *rules)}


# (asset, check) pairs: the gates, one check per silver expectation and its unique key, and the
# bronze check that no landing file changed after it was read.
EXPECTED_CHECKS = {
    ("als_evaluation", "rmse_gate"),
    ("churn_model", "churn_gate"),
    *(("customers_silver", name) for name in rule_names(expectations.CUSTOMERS)),
    *(("sales_orders_silver", name) for name in rule_names(expectations.SALES_ORDERS)),
    *((f"{source}_silver", "unique_key") for source in ("customers", "sales_orders")),
    *((f"{source}_bronze", UNCHANGED) for source in ("customers", "sales_orders")),
}

ASSETS_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    assetChecksOrError {
      __typename
      ... on AssetChecks {
        checks { name blocking }
      }
    }
  }
}
"""


def asset_nodes(dev: DagsterDev) -> dict[str, dict]:
    return {"/".join(n["assetKey"]["path"]): n for n in dev.graphql(ASSETS_QUERY)["assetNodes"]}


def test_the_sensor_runs_refresh_job_once_for_the_drop_and_it_succeeds(
    dagster_dev: DagsterDev, refresh: Refresh
):
    run = refresh.run
    assert run["status"] == "SUCCESS", failures(dagster_dev, run["runId"])
    assert tags(run)["dagster/sensor_name"] == "csv_drop_sensor"
    assert tags(run)["recsys/new_files"] == str(len(refresh.summary.paths))
    by_sensor = runs(dagster_dev, tags=[{"key": "dagster/sensor_name", "value": "csv_drop_sensor"}])
    assert [r["runId"] for r in by_sensor] == [run["runId"]]  # one run, not one per tick

    state = sensor(dagster_dev, "csv_drop_sensor", ticks=1000)["sensorState"]
    assert state["status"] == "RUNNING"  # on by default: no click needed
    launched = [t for t in state["ticks"] if t["runIds"]]
    assert [t["runIds"] for t in launched] == [[run["runId"]]]
    assert all(t["status"] != "FAILURE" for t in state["ticks"]), state["ticks"]


def test_every_asset_is_in_the_graph_and_materialised_by_that_run(
    dagster_dev: DagsterDev, refresh: Refresh
):
    nodes = asset_nodes(dagster_dev)

    missing = sorted(set(EXPECTED_ASSETS) - set(nodes))
    assert not missing, f"not in the asset graph: {missing}; graph: {sorted(nodes)}"
    assert {a: nodes[a]["groupName"] for a in EXPECTED_ASSETS} == EXPECTED_ASSETS
    events = run_events(dagster_dev, refresh.run["runId"])
    materialised = {
        "/".join(e["assetKey"]["path"]) for e in events if e["__typename"] == "MaterializationEvent"
    }
    unmaterialised = sorted(set(EXPECTED_ASSETS) - materialised)
    assert not unmaterialised, f"not materialised by run {refresh.run['runId']}: {unmaterialised}"


def test_the_asset_checks_ran_and_passed_in_the_sensors_run(
    dagster_dev: DagsterDev, refresh: Refresh
):
    nodes = asset_nodes(dagster_dev)
    found = {}
    for asset, node in nodes.items():
        checks = node["assetChecksOrError"]
        assert checks["__typename"] == "AssetChecks", (asset, checks)
        for check in checks["checks"]:
            found[asset, check["name"]] = check

    assert EXPECTED_CHECKS <= set(found), sorted(EXPECTED_CHECKS - set(found))
    assert found["als_evaluation", "rmse_gate"]["blocking"]
    assert found["churn_model", "churn_gate"]["blocking"]
    # Clean data, and no champion yet: in the sensor's run every rule holds and both gates pass
    # the challengers.
    evaluations = [
        e["evaluation"]
        for e in run_events(dagster_dev, refresh.run["runId"])
        if e["__typename"] == "AssetCheckEvaluationEvent"
    ]
    passed = {("/".join(e["assetKey"]["path"]), e["checkName"]): e["success"] for e in evaluations}
    assert {key: passed.get(key) for key in EXPECTED_CHECKS} == dict.fromkeys(EXPECTED_CHECKS, True)


def test_both_models_have_a_champion_in_the_registry(dagster_dev: DagsterDev, refresh: Refresh):
    settings = Settings.from_env({"RECSYS_HOME": str(dagster_dev.recsys_home)})
    client = MlflowClient(settings.mlflow_tracking_uri)
    for model in ("als_recommendation_model", "churn_model"):
        champion = client.get_model_version_by_alias(model, "champion")
        verdict = Verdict.from_tags(champion.tags)
        assert verdict is not None and verdict.status == "PASSED", (model, champion.tags)
