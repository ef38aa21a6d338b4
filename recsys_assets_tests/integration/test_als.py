"""The ALS lifecycle with real Spark, real Delta and a real MLflow SQLite store in tmp_path."""

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from mlflow import pyfunc
from mlflow import spark as mlflow_spark
from mlflow.data import get_source
from pyspark.sql import functions as F

from recsys_assets.assets import als
from recsys_assets.assets.als import MODEL_NAME, split_bucket
from recsys_assets.definitions import build_definitions
from recsys_assets.registry import Registry
from recsys_assets.resources.mlflow import MlflowResource
from recsys_assets.settings import Settings
from recsys_assets.tables import table_uri
from recsys_assets_tests.processes import free_port
from recsys_assets_tests.support import (
    delta_table,
    generate,
    materialize,
    read_table,
    settings_for,
)

MODEL_ASSETS = ["als_challenger", "als_evaluation", "als_champion", "customer_recommendations"]


@pytest.fixture(scope="module")
def split_lakehouse(tmp_path_factory, spark) -> Path:
    """Medallion tables and the train/test split, built once for the module."""
    settings = settings_for(tmp_path_factory.mktemp("als"))
    generate(settings, customers=200)
    materialize(settings, dg.AssetSelection.assets("als_train", "als_test").upstream())
    return Path(settings.lakehouse_uri)


@pytest.fixture
def lakehouse(settings, split_lakehouse) -> Path:
    """This test's own copy of the split tables, beside its own MLflow store."""
    shutil.copytree(split_lakehouse, settings.lakehouse_uri)
    return Path(settings.lakehouse_uri)


def als_config(rank: int, max_iter: int, alpha: float = 1.0) -> dict:
    """Small, fast fits; blocks fixed so the numbers do not depend on the machine's cores."""
    config = {"rank": rank, "max_iter": max_iter, "alpha": alpha, "num_blocks": 2}
    return {"ops": {"als_challenger": {"config": config}}}


def gate(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "rmse_gate"]
    return evaluation


def mlflow_resource(settings: Settings) -> MlflowResource:
    return build_definitions(settings).resources["mlflow"]  # type: ignore[index,return-value]


def evaluation_params(settings: Settings, run_id: str) -> dict[str, str]:
    """The parameters of the MLflow run that als_evaluation logged in Dagster run ``run_id``."""
    client = mlflow_resource(settings).client
    experiment = client.get_experiment_by_name(als.EXPERIMENT)
    assert experiment is not None
    [run] = client.search_runs(
        [experiment.experiment_id],
        f"attributes.run_name = 'evaluation' AND tags.dagster_run_id = '{run_id}'",
    )
    return run.data.params


def assert_runs_link_tables_and_versions(settings: Settings, result) -> None:
    """The challenger's and the evaluation's MLflow runs name the Delta versions they read; the
    registered version names the Dagster run and asset that trained it."""
    client = mlflow_resource(settings).client
    [challenger] = result.asset_materializations_for_node("als_challenger")
    [evaluation] = result.asset_materializations_for_node("als_evaluation")
    for event, context, tables in [
        (challenger, "training", {"als_train"}),
        (evaluation, "evaluation", {"als_train", "als_test"}),
    ]:
        run = client.get_run(event.metadata["mlflow_run"].value.rsplit("/", 1)[-1])
        inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
        assert set(inputs) == tables
        for name, logged in inputs.items():
            table = delta_table(settings, "ml", name)  # delta-rs
            source = get_source(logged.dataset)
            assert source.path == table_uri(settings.lakehouse_uri, "ml", name)
            assert source.delta_table_version == table.version()
            assert event.metadata[f"{name}_delta_version"].value == table.version()
            assert event.metadata[f"{name}_digest"].value == logged.dataset.digest
            assert {t.key: t.value for t in logged.tags} == {"mlflow.data.context": context}
    version = str(challenger.metadata["model_version"].value)
    registered = client.get_model_version(MODEL_NAME, version)
    assert registered.tags["dagster_run_id"] == result.run_id
    assert registered.tags["dagster_asset"] == "als_challenger"
    assert challenger.metadata["mlflow_run"].value.endswith(registered.run_id)
    link = challenger.metadata["mlflow_model_version"].value
    assert link.endswith(f"/#/models/{MODEL_NAME}/versions/{version}")


def champion_version(settings: Settings) -> str | None:
    return Registry(mlflow_resource(settings).client, MODEL_NAME).champion()


def assert_served_champion_answers_as_the_batch(settings: Settings, als_version: str) -> None:
    """als_recommender@champion is tied to ALS ``als_version`` and, loaded as MLflow's scoring
    server loads it (pyfunc, no Spark), answers as customer_recommendations, unknown ids too."""
    client = mlflow_resource(settings).client
    served = client.get_model_version_by_alias(als.SERVING.name, "champion")
    assert served.tags[als.SERVING.tag] == als_version
    model = pyfunc.load_model(f"models:/{als.SERVING.name}@champion")
    batch = read_table(settings, "gold", "customer_recommendations")
    assert set(batch.model_version) == {int(als_version)}
    by_source = batch.groupby("source").customer_id.unique()
    customers = [*by_source["als"][:15], *by_source["popularity"][:5]]
    answer = model.predict(pd.DataFrame({"customer_id": customers}))
    expected = batch[batch.customer_id.isin(customers)]
    key = ["customer_id", "rank"]
    joined = expected.merge(answer, on=key, how="outer", suffixes=("_batch", "_served"))
    assert len(joined) == len(expected) == len(answer) == 10 * len(customers)
    assert (joined.product_id_batch == joined.product_id_served).all()
    assert (joined.source_batch == joined.source_served).all()
    np.testing.assert_allclose(joined.score_served, joined.score_batch, rtol=1e-4, atol=1e-5)
    unknown = model.predict(pd.DataFrame({"customer_id": [-1]}))
    popular = batch[batch.source == "popularity"].product_id.value_counts()
    assert set(unknown.source) == {"popularity"} and len(unknown) == 10
    assert unknown.product_id.iloc[0] in set(popular.index)


def test_split_is_a_stable_function_of_the_pair(spark):
    pairs = spark.createDataFrame(
        [(c, f"P{p}") for c in range(200) for p in range(20)], "customer_id long, product_id string"
    )
    sides = pairs.withColumn("bucket", split_bucket(42))
    subset = (
        pairs.where("customer_id % 3 = 0").orderBy(F.rand(1)).withColumn("bucket", split_bucket(42))
    )  # other rows, other order: same buckets

    joined = sides.join(subset, ["customer_id", "product_id"]).select(
        sides.bucket.alias("a"), subset.bucket.alias("b")
    )
    assert joined.where("a != b").count() == 0
    train_share = sides.where("bucket < 80").count() / sides.count()
    assert 0.75 < train_share < 0.85
    assert sides.withColumn("other", split_bucket(7)).where("bucket != other").count() > 0


def run(settings, instance, selection, config=None) -> dg.ExecuteInProcessResult:
    """Materialise against one instance for the whole test: pinned versions are read from it."""
    return materialize(
        settings, selection, run_config=config, instance=instance, raise_on_error=False
    )


def scored_version(result: dg.ExecuteInProcessResult) -> int:
    [event] = result.asset_materializations_for_node("customer_recommendations")
    return event.metadata["model_version"].value


def bought_pairs(settings: Settings) -> set[tuple[int, str]]:
    """Every (customer, product) of sales_orders_silver."""
    orders = read_table(settings, "silver", "sales_orders_silver")
    return {
        (c, p["id"])
        for c, products in zip(orders.customer_id, orders.ordered_products, strict=True)
        for p in products
    }


def assert_no_purchased_product(settings: Settings) -> None:
    recommendations = read_table(settings, "gold", "customer_recommendations")
    bought = bought_pairs(settings)
    pairs = set(zip(recommendations.customer_id, recommendations.product_id, strict=True))
    assert len(pairs) == len(recommendations)  # no product twice for one customer
    assert not pairs & bought


def assert_recommendation_checks(settings: Settings, result) -> None:
    """The four WARN checks on customer_recommendations ran, with the numbers of the table
    (read with delta-rs and counted again with pandas)."""
    evaluations = {
        e.check_name: e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("customer_recommendations")
    }
    recommendations = read_table(settings, "gold", "customer_recommendations")
    customers = read_table(settings, "silver", "customers_silver")
    orders = read_table(settings, "silver", "sales_orders_silver")
    catalogue = {p["id"] for products in orders.ordered_products for p in products}
    current = set(customers[customers.valid_to.isna()].customer_id)
    per_customer = recommendations.groupby("customer_id").size()
    expected = {
        "catalogue_coverage": recommendations.product_id.nunique() / len(catalogue),
        "full_list_share": (per_customer >= 10).sum() / len(current),
        "top_products_concentration": recommendations.product_id.value_counts().iloc[:10].sum()
        / len(recommendations),
        "popularity_share": (recommendations.source == "popularity").mean(),
    }
    assert set(evaluations) == set(expected)
    for name, value in expected.items():
        evaluation = evaluations[name]
        assert evaluation.severity == dg.AssetCheckSeverity.WARN, name
        assert evaluation.metadata[name].value == pytest.approx(value, rel=1e-12), name
        limit = evaluation.metadata["threshold"].value
        low_is_bad = name in ("catalogue_coverage", "full_list_share")
        assert evaluation.passed == (value >= limit if low_is_bad else value <= limit), name
    assert evaluations["popularity_share"].metadata["popularity_rows"].value == int(
        (recommendations.source == "popularity").sum()
    )
    assert evaluations["catalogue_coverage"].metadata["catalogue_products"].value == len(catalogue)


# Measured on this data (200 customers, 60 days, seed 7), preference RMSE / NDCG@10:
# champion rank 2, 2 iterations 0.632 / 0.175; popularity NDCG 0.152; the alpha=40 challenger
# 0.603 / 0.135 (better RMSE, worse ranking); rank 4, 3 iterations, alpha 5: 0.515 / 0.240.
CHAMPION_CONFIG = als_config(rank=2, max_iter=2)
WEAK_RANKING = als_config(rank=20, max_iter=10, alpha=40.0)
BETTER = als_config(rank=4, max_iter=3, alpha=5.0)


def test_the_gate_blocks_a_better_rmse_that_ranks_worse_and_scoring_goes_on(
    settings, lakehouse, spark
):
    instance = dg.DagsterInstance.ephemeral()
    first = run(settings, instance, MODEL_ASSETS, CHAMPION_CONFIG)
    assert first.success
    assert_runs_link_tables_and_versions(settings, first)
    verdict = gate(first)
    assert verdict.passed and verdict.metadata["champion_version"].value == "none"
    assert champion_version(settings) == "1" and scored_version(first) == 1
    recommendations = read_table(settings, "gold", "customer_recommendations")
    customers = read_table(settings, "silver", "customers_silver")
    assert set(recommendations.customer_id) == set(customers.customer_id)
    assert (recommendations.groupby("customer_id").size() == 10).all()
    assert set(recommendations.model_version) == {1} and recommendations.product_name.notna().all()
    known = set(read_table(settings, "ml", "als_train").customer_id)
    sources = recommendations.groupby("customer_id").source.agg(set)
    assert all(sources[c] == ({"als"} if c in known else {"popularity"}) for c in sources.index)
    assert (sources == {"popularity"}).sum() > 0  # customers without orders in the window
    assert_no_purchased_product(settings)
    assert_recommendation_checks(settings, first)
    assert_served_champion_answers_as_the_batch(settings, "1")

    weak = run(settings, instance, MODEL_ASSETS, WEAK_RANKING)
    assert not weak.success  # a failed blocking check fails the run
    verdict = gate(weak)
    values = {k: v.value for k, v in verdict.metadata.items()}
    assert not verdict.passed
    assert values["challenger_rmse"] < values["champion_rmse"] - 0.02  # RMSE alone would promote
    assert values["challenger_ndcg_at_10"] < values["champion_ndcg_at_10"] - 0.02
    assert values["challenger_ndcg_at_10"] < values["popularity_ndcg_at_10"]
    assert "is below champion's" in values["requirement: rmse < champion"]
    assert "is below champion's" in values["requirement: ndcg_at_10 >= champion"]
    assert "is below popularity's" in values["requirement: ndcg_at_10 >= popularity"]
    assert champion_version(settings) == "1"
    assert not weak.asset_materializations_for_node("als_champion")
    assert scored_version(weak) == 1  # the day's scores, from the unchanged champion
    assert_recommendation_checks(settings, weak)  # a blocked gate: the monitoring still runs
    registry = Registry(mlflow_resource(settings).client, MODEL_NAME)
    assert registry.verdict("2").status == "FAILED"

    better = run(settings, instance, MODEL_ASSETS, BETTER)
    assert better.success and gate(better).passed
    assert champion_version(settings) == "3"
    assert scored_version(better) == 3  # scoring ran after the promotion in the same run
    assert registry.version("3").tags["previous_champion_version"] == "1"
    assert_served_champion_answers_as_the_batch(settings, "3")
    served = Registry(mlflow_resource(settings).client, als.SERVING.name)
    assert served.champion() == "2"  # one als_recommender version per promotion: v1, v2

    rollback = build_definitions(settings).resolve_job_def("rollback_champion")
    assert rollback.execute_in_process(instance=instance).success
    assert champion_version(settings) == "1"
    assert served.champion() == "1"  # the recommender built from ALS v1 again
    assert_served_champion_answers_as_the_batch(settings, "1")
    assert registry.verdict("3").status == "ROLLED_BACK"
    assert set(read_table(settings, "gold", "customer_recommendations").model_version) == {1}

    # The gate again without retraining: it judges v3 (als_challenger's latest), and refuses it.
    again = run(settings, instance, ["als_evaluation", "als_champion"])
    assert not again.success and not gate(again).passed
    assert "rolled back" in gate(again).metadata["reason"].value
    assert champion_version(settings) == "1" and registry.verdict("3").status == "ROLLED_BACK"


def test_when_purchases_are_not_excluded_that_policy_is_evaluated_and_served(
    settings, lakehouse, materialize
):
    policy = {"recommendation_policy": {"config": {"exclude_purchased": False}}}
    config = {**CHAMPION_CONFIG, "resources": policy}
    result = materialize(MODEL_ASSETS, run_config=config, raise_on_error=False)

    # Whether this policy's challenger passes the gate or not, the batch is scored (last).
    assert result.asset_materializations_for_node("customer_recommendations")
    [evaluation] = result.asset_materializations_for_node("als_evaluation")
    assert evaluation.metadata["exclude_purchased"].value is False
    assert evaluation_params(settings, result.run_id)["exclude_purchased"] == "False"
    recommendations = read_table(settings, "gold", "customer_recommendations")
    bought = bought_pairs(settings)
    repeated = sum(
        pair in bought
        for pair in zip(recommendations.customer_id, recommendations.product_id, strict=True)
    )
    assert repeated > len(recommendations) * 0.2  # what exclusion removes by default


def test_champion_owns_its_indexes_and_scores_reindexed_products(
    settings, lakehouse, materialize, spark
):
    materialize(["als_challenger", "als_evaluation", "als_champion"], run_config=als_config(4, 3))
    model = mlflow_spark.load_model(f"models:/{MODEL_NAME}@champion")
    user_indexer, item_indexer, als_model = model.stages

    # A table whose product frequencies are reversed: a freshly fitted indexer would renumber.
    test = spark.createDataFrame(
        read_table(settings, "ml", "als_test")[["customer_id", "product_id"]]
    )
    scored = model.transform(test).toPandas()

    users = {r.id: np.array(r.features) for r in als_model.userFactors.collect()}
    items = {r.id: np.array(r.features) for r in als_model.itemFactors.collect()}
    user_index = {int(label): i for i, label in enumerate(user_indexer.labels)}
    item_index = {label: i for i, label in enumerate(item_indexer.labels)}
    expected = [
        float(users[user_index[c]] @ items[item_index[p]])
        for c, p in zip(scored.customer_id, scored.product_id, strict=True)
    ]
    assert len(scored) > 0
    np.testing.assert_allclose(scored.prediction, expected, rtol=1e-4, atol=1e-5)


def test_an_empty_training_set_fails_clearly_and_registers_nothing(
    settings, lakehouse, materialize
):
    columns = {"customer_id": pa.int64(), "product_id": pa.string()}
    columns |= {"total_qty": pa.int64(), "interaction_weight": pa.float64()}
    schema = pa.schema(list(columns.items()))
    write_deltalake(str(lakehouse / "ml" / "als_train"), schema.empty_table(), mode="overwrite")

    result = materialize(["als_challenger"], raise_on_error=False)

    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "als_train is empty" in str(failure.step_failure_data.error)
    assert mlflow_resource(settings).client.search_registered_models() == []


def test_a_test_split_of_unknown_customers_fails_evaluation_and_moves_no_alias(
    settings, lakehouse, materialize
):
    test = read_table(settings, "ml", "als_test")
    test["customer_id"] += 10**12  # nobody the model has seen
    write_deltalake(str(lakehouse / "ml" / "als_test"), test, mode="overwrite")

    result = materialize(
        ["als_challenger", "als_evaluation", "als_champion"],
        run_config=als_config(2, 2),
        raise_on_error=False,
    )

    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "No held-out row can be scored" in str(failure.step_failure_data.error)
    assert champion_version(settings) is None


def test_an_unreachable_tracking_server_fails_with_its_address(
    tmp_path, lakehouse, spark, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(lakehouse.parent, MLFLOW_TRACKING_URI=uri)

    result = materialize(settings, ["als_challenger"], raise_on_error=False)

    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.step_failure_data.error)
    assert uri in message and "unreachable" in message


def test_als_assets_are_in_their_group_with_descriptions():
    defs = build_definitions(Settings.from_env({}))
    graph = defs.resolve_asset_graph()
    for name in ["als_train", "als_test", *MODEL_ASSETS]:
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == "als_model"
        assert node.description, name
    assert als.rmse_gate.check_specs  # the gate is a declared, blocking check
    [spec] = als.rmse_gate.check_specs
    assert spec.blocking
