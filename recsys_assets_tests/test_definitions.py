"""The code location as Dagster and its UI see it.

Pure definitions tests: nothing is materialised and no Spark session starts. The repository
snapshot is what a code server sends the webserver.
"""

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap

from recsys_assets.definitions import build_definitions
from recsys_assets.settings import Settings


def snapshot(defs: dg.Definitions) -> RepositorySnap:
    return RepositorySnap.from_def(defs.get_repository_def())


@pytest.fixture
def plain_defs(tmp_path) -> dg.Definitions:
    return build_definitions(Settings.from_env({"RECSYS_HOME": str(tmp_path)}))


def upstream_closure(graph, key: dg.AssetKey) -> set[dg.AssetKey]:
    """``key`` and every asset it depends on, walked along the graph's parent edges."""
    seen, todo = set(), [key]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node).parent_keys)
    return seen


@pytest.mark.parametrize(
    ("champion", "includes", "excludes"),
    [
        (
            "als_champion",
            ["als_train", "als_test", "als_challenger", "als_evaluation", "customers_bronze"],
            ["customer_recommendations", "churn_model", "churn_champion", "customer_features"],
        ),
        (
            "churn_champion",
            ["churn_training_set", "churn_model", "customers_bronze", "sales_orders_bronze"],
            ["churn_predictions", "als_champion", "als_challenger", "customer_recommendations"],
        ),
    ],
)
def test_champion_jobs_run_exactly_their_models_chain(plain_defs, champion, includes, excludes):
    job_name = f"{champion}_job"
    job = plain_defs.resolve_job_def(job_name)
    assert job.executor_def is dg.in_process_executor  # one Spark session (one JVM) per run

    snap = snapshot(plain_defs)
    in_job = {node.asset_key for node in snap.asset_nodes if job_name in node.job_names}
    graph = plain_defs.resolve_asset_graph()
    assert in_job == upstream_closure(graph, dg.AssetKey(champion))
    assert {dg.AssetKey(name) for name in includes} <= in_job
    assert not {dg.AssetKey(name) for name in excludes} & in_job

    # The blocking gate runs in the job, so a losing challenger never reaches the champion step.
    checks = {c.name for c in snap.asset_check_nodes or [] if job_name in c.job_names}
    assert {"rmse_gate" if champion == "als_champion" else "churn_gate"} <= checks
