"""The ALS lifecycle with real Spark, real Delta and a real MLflow SQLite store in tmp_path."""

import shutil
import socket
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from mlflow import spark as mlflow_spark
from pyspark.sql import functions as F

from recsys_assets.assets import als
from recsys_assets.assets.als import MODEL_NAME, split_bucket
from recsys_assets.definitions import build_definitions
from recsys_assets.resources.mlflow import CHAMPION, MlflowResource
from recsys_assets.settings import Settings
from recsys_assets_tests.support import generate, read_table

MODEL_ASSETS = ["als_challenger", "als_evaluation", "als_champion", "customer_recommendations"]


@pytest.fixture(scope="module")
def split_lakehouse(tmp_path_factory, spark) -> Path:
    """Medallion tables and the train/test split, built once for the module."""
    settings = Settings.from_env({"RECSYS_HOME": str(tmp_path_factory.mktemp("als"))})
    generate(settings, customers=200)
    defs = build_definitions(settings)
    selection = dg.AssetSelection.assets("als_train", "als_test").upstream()
    dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=selection,
        resources=defs.resources,
    )
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


def champion_version(settings: Settings) -> str | None:
    version = mlflow_resource(settings).version_with_alias(MODEL_NAME, CHAMPION)
    return str(version.version) if version else None


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


def test_gate_promotes_first_blocks_weak_promotes_better_and_rolls_back(
    settings, lakehouse, materialize
):
    first = materialize(MODEL_ASSETS, run_config=als_config(rank=2, max_iter=2))
    assert first.success
    assert gate(first).passed and gate(first).metadata["reason"].value == "no champion yet"
    assert champion_version(settings) == "1"
    recommendations = read_table(settings, "gold", "customer_recommendations")
    assert (recommendations.groupby("customer_id").size() == 10).all()
    assert set(recommendations.model_version) == {1} and recommendations.product_name.notna().all()
    known = read_table(settings, "ml", "als_train").customer_id.nunique()
    assert recommendations.customer_id.nunique() == known
    evaluation = read_table(settings, "ml", "als_evaluation").set_index("role")
    assert set(evaluation.index) == {"challenger", "popularity"}
    assert evaluation.loc["challenger", "ndcg_at_10"] > evaluation.loc["popularity", "ndcg_at_10"]

    weak = materialize(
        MODEL_ASSETS, run_config=als_config(rank=1, max_iter=1), raise_on_error=False
    )
    assert not weak.success  # a blocking check that fails fails the run: the CLI exits non-zero
    verdict = gate(weak)
    assert not verdict.passed and "does not beat" in verdict.metadata["reason"].value
    assert verdict.metadata["challenger"].value > verdict.metadata["champion"].value
    assert champion_version(settings) == "1"
    assert not weak.asset_materializations_for_node("als_champion")
    client = mlflow_resource(settings).client
    assert client.get_model_version(MODEL_NAME, "2").tags["validation_status"] == "FAILED"

    # Measured on this data: RMSE 0.976 (first), 1.063 (weak), 0.789 (better).
    better = materialize(MODEL_ASSETS, run_config=als_config(rank=4, max_iter=3, alpha=5.0))
    assert gate(better).passed
    assert champion_version(settings) == "3"
    assert client.get_model_version(MODEL_NAME, "3").tags["previous_champion_version"] == "1"

    rollback = build_definitions(settings).resolve_job_def("rollback_champion")
    assert rollback.execute_in_process().success
    assert champion_version(settings) == "1"


def test_champion_owns_its_indexes_and_scores_reindexed_products(
    settings, lakehouse, materialize, spark
):
    materialize(["als_challenger", "als_evaluation", "als_champion"], run_config=als_config(4, 3))
    model = mlflow_spark.load_model(f"models:/{MODEL_NAME}@{CHAMPION}")
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
    assert "could score no row of als_test" in str(failure.step_failure_data.error)
    assert champion_version(settings) is None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_fails_with_its_address(
    tmp_path, lakehouse, spark, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    settings = Settings.from_env({"RECSYS_HOME": str(lakehouse.parent), "MLFLOW_TRACKING_URI": uri})
    defs = build_definitions(settings)

    result = dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        selection=["als_challenger"],
        resources=defs.resources,
        raise_on_error=False,
    )

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
