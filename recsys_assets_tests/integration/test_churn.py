"""Churn: features, autologged candidates, registry aliases, the blocking gate, batch inference.

Real Spark, Delta tables and an MLflow SQLite store in tmp_path. The full ``+churn_predictions``
path runs once per module (it is the slow part); later tests build on the registry it leaves.
"""

from dataclasses import dataclass
from datetime import timedelta

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake
from mlflow import MlflowClient
from mlflow import sklearn as mlflow_sklearn
from mlflow.data import get_source
from mlflow.entities.model_registry import ModelVersion
from mlflow.utils.autologging_utils import autologging_is_disabled
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from recsys_assets.assets import churn
from recsys_assets.ml import churn as ml
from recsys_assets.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION_TAG,
    Registry,
    Verdict,
)
from recsys_assets.resources.mlflow import DAGSTER_RUN_TAG, MlflowResource
from recsys_assets.sensors import DRIFT_RETRAIN_TAG, drift_retrain_sensor
from recsys_assets.settings import Settings
from recsys_assets.tables import table_uri
from recsys_assets_tests.support import generate, materialize, read_table, settings_for
from recsys_assets_tests.unit.test_ml_churn import training_rows

CUSTOMERS, DAYS = 400, 90  # ~6k orders; about 100 validation customers


INSTANCE = dg.DagsterInstance.ephemeral()  # one event log: gates read the version trained


def run_assets(
    settings: Settings, selection, raise_on_error: bool = True
) -> dg.ExecuteInProcessResult:
    """Materialise a selection against this module's instance."""
    return materialize(settings, selection, raise_on_error=raise_on_error, instance=INSTANCE)


def registry(settings: Settings) -> MlflowClient:
    return MlflowClient(settings.mlflow_tracking_uri)


def alias(settings: Settings, name: str) -> ModelVersion:
    return registry(settings).get_model_version_by_alias(churn.MODEL_NAME, name)


def alias_version(settings: Settings, name: str) -> str:
    return str(alias(settings, name).version)  # the SQLite store gives an int here


def versions(settings: Settings) -> list[str]:
    found = registry(settings).search_model_versions(f"name = '{churn.MODEL_NAME}'")
    return sorted(str(v.version) for v in found)


def gate_evaluation(result: dg.ExecuteInProcessResult):
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "churn_gate"]
    return evaluation


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return str(failure.step_failure_data.error)


@dataclass(frozen=True)
class Trained:
    settings: Settings
    customers: int
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def trained(tmp_path_factory, spark) -> Trained:
    """Generated data taken from the landing zone through to churn_predictions, once."""
    settings = settings_for(tmp_path_factory.mktemp("churn") / "home")
    summary = generate(settings, customers=CUSTOMERS, days=DAYS)
    result = run_assets(
        settings, dg.AssetSelection.assets("churn_champion", "churn_predictions").upstream()
    )
    return Trained(settings, summary.customers, result)


# ----------------------------------------------------------------------- the full path


def test_candidates_are_autologged_runs_nested_under_one_parent(trained):
    client = registry(trained.settings)
    experiment = client.get_experiment_by_name(churn.EXPERIMENT)
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.{DAGSTER_RUN_TAG} = '{trained.result.run_id}'"
    )
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]

    assert {r.info.run_name for r in children} == {"logistic_regression", "random_forest"}
    assert len(runs) == 1 + len(children)
    for child in children:
        assert child.data.params["steps"]  # autologged: the Pipeline's parameters
        expected = {"logistic_regression": "model__C", "random_forest": "model__n_estimators"}
        assert expected[child.info.run_name] in child.data.params  # the estimator's own
        assert 0.5 < child.data.metrics["training_roc_auc"] <= 1.0  # autologged
        assert child.data.metrics[ml.AUC_TAG] > 0.6  # ours, on validation
    best = max(children, key=lambda r: r.data.metrics[ml.AUC_TAG])
    # Only the best candidate's fitted Pipeline is logged, in its own run, and registered.
    assert [bool(c.outputs.model_outputs) for c in children] == [c is best for c in children]
    [logged] = best.outputs.model_outputs
    versions = client.search_model_versions(f"name = '{churn.MODEL_NAME}'")
    [registered] = [v for v in versions if v.run_id == best.info.run_id]
    assert registered.source == f"models:/{logged.model_id}"
    assert parent.data.metrics[ml.AUC_TAG] == best.data.metrics[ml.AUC_TAG]
    assert parent.data.tags["best_candidate"] == best.info.run_name
    assert autologging_is_disabled("sklearn")  # the step turned autolog off again

    metadata = trained.result.asset_materializations_for_node("churn_model")[0].metadata
    assert parent.info.run_id in metadata["mlflow_run"].value
    table = metadata["candidates"].value
    assert "logistic_regression" in table and "random_forest" in table
    assert metadata["val_roc_auc"].value == best.data.metrics[ml.AUC_TAG]
    assert metadata["model_version"].value == 1


def test_best_candidate_is_registered_gated_and_promoted_to_champion(trained):
    champion, challenger = alias(trained.settings, CHAMPION), alias(trained.settings, CHALLENGER)
    assert versions(trained.settings) == ["1"]
    assert str(champion.version) == str(challenger.version) == "1"
    auc = float(champion.tags[ml.AUC_TAG])
    assert auc > 0.65, f"the champion's validation ROC AUC is only {auc:.3f}"
    assert champion.tags[DAGSTER_RUN_TAG] == trained.result.run_id
    verdict = Verdict.from_tags(champion.tags)
    assert verdict.status == "PASSED" and verdict.dagster_run_id == trained.result.run_id

    gate = gate_evaluation(trained.result)
    assert gate.passed and gate.metadata["reason"].value == "no champion to compare roc_auc with"
    test_auc = gate.metadata["challenger_roc_auc"].value  # on the later test slice
    assert test_auc > 0.65 and verdict.metrics["challenger_roc_auc"] == test_auc
    model = trained.result.asset_materializations_for_node("churn_model")[0].metadata
    assert model["test_roc_auc"].value == pytest.approx(test_auc)  # mlflow.models.evaluate's
    run = registry(trained.settings).get_run(model["mlflow_run"].value.rsplit("/", 1)[-1])
    [training] = [i for i in run.inputs.dataset_inputs if i.dataset.name == "churn_training_set"]
    source = get_source(training.dataset)
    path = table_uri(trained.settings.lakehouse_uri, "ml", "churn_training_set")
    assert source.path == path and source.delta_table_version == DeltaTable(path).version()
    assert {t.key: t.value for t in training.tags} == {"mlflow.data.context": "training"}
    assert model["churn_training_set_delta_version"].value == source.delta_table_version
    assert champion.tags["dagster_asset"] == "churn_model"
    assert model["mlflow_model_version"].value.endswith("/#/models/churn_model/versions/1")
    artifacts = {a.path for a in registry(trained.settings).list_artifacts(run.info.run_id)}
    assert {"roc_curve_plot.png", "precision_recall_curve_plot.png"} <= artifacts, artifacts
    assert "confusion_matrix.png" in artifacts
    promoted = trained.result.asset_materializations_for_node("churn_champion")[0]
    assert promoted.metadata["model_version"].value == 1


def test_predictions_score_every_current_customer_with_the_champion(trained):
    settings = trained.settings
    predictions = read_table(settings, "gold", "churn_predictions")
    customers = read_table(settings, "silver", "customers_silver")

    assert list(predictions.columns) == [
        "customer_id",
        "churn_probability",
        "model_version",
        "scored_at",
    ]
    assert len(predictions) == trained.customers and predictions.customer_id.is_unique
    assert set(predictions.customer_id) == set(customers.customer_id)
    assert predictions.churn_probability.between(0.0, 1.0).all()
    assert predictions.churn_probability.std() > 0.05  # not one constant score
    assert (predictions.model_version == 1).all() and predictions.scored_at.notna().all()

    # Scored from the newest data, not from the training cutoff horizon_days earlier.
    orders = read_table(settings, "silver", "sales_orders_silver")
    newest = orders.order_datetime.max()
    scored = trained.result.asset_materializations_for_node("churn_predictions")[0]
    assert pd.Timestamp(scored.metadata["features_as_of"].value) == newest.floor("s")
    assert scored.metadata["model_version"].value == 1


def test_the_served_churn_scorer_answers_as_churn_predictions(trained):
    settings = trained.settings
    client = registry(settings)
    served = client.get_model_version_by_alias(churn.SERVING.name, "champion")
    assert served.tags[churn.SERVING.tag] == "1"  # the churn_model champion it was built from
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{churn.SERVING.name}@champion")
    predictions = read_table(settings, "gold", "churn_predictions").set_index("customer_id")

    ids = list(predictions.index[:25])
    looked_up = model.predict(pd.DataFrame({"customer_id": ids})).set_index("customer_id")
    assert list(looked_up.index) == ids and set(looked_up.features) == {"customer_features"}
    pd.testing.assert_series_equal(
        looked_up.churn_probability, predictions.churn_probability.loc[ids], check_names=False
    )
    assert (looked_up.model_version == 1).all()

    features = read_table(settings, "gold", "customer_features")
    passed = features[features.customer_id.isin(ids[:5])]
    scored = model.predict(passed).set_index("customer_id")  # every column, as_of included
    assert set(scored.features) == {"request"}
    pd.testing.assert_series_equal(
        scored.churn_probability,
        predictions.churn_probability.loc[scored.index],
        check_names=False,
    )
    for frame, message in [
        (pd.DataFrame({"customer_id": [-1]}), r"No features for customer_id\(s\) \[-1\]"),
        (pd.DataFrame({"customer_id": ids[:1], "colour": ["red"]}), "Unknown column"),
        (passed.drop(columns=["total_spend"]), r"without \['total_spend'\]"),
    ]:
        with pytest.raises(mlflow.exceptions.MlflowException, match=message) as raised:
            model.predict(frame)
        assert raised.value.get_http_status_code() == 400


def test_training_set_labels_and_time_slices(trained):
    settings = trained.settings
    training = read_table(settings, "ml", "churn_training_set")
    orders = read_table(settings, "silver", "sales_orders_silver")
    newest = orders.order_datetime.max().floor("s")

    # 90 days of data: the test split is a later time slice than train and validation.
    test_cut, early_cut = newest - timedelta(days=30), newest - timedelta(days=60)
    assert set(training[training.split == "test"].as_of) == {test_cut}
    assert set(training[training.split != "test"].as_of) == {early_cut}
    for cutoff, rows in training.groupby("as_of"):
        # The label, recomputed with pandas: no order in (cutoff, cutoff + 30 days].
        window = orders[(orders.order_datetime > cutoff)]
        window = window[window.order_datetime <= cutoff + timedelta(days=30)]
        assert (rows.churned == (~rows.customer_id.isin(window.customer_id)).astype(int)).all()
        before = orders[orders.order_datetime <= cutoff].groupby("customer_id").size()
        counts = rows.set_index("customer_id").order_count
        assert (counts == before.reindex(counts.index, fill_value=0)).all()
        assert 0.1 < rows.churned.mean() < 0.6
    early = training[training.split != "test"].split.value_counts(normalize=True)
    assert 0.7 < early["train"] < 0.9


# ----------------------------------------------------------------------- monitoring


def check_evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def psi_by_hand(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """PSI written again with pandas' cut (right-closed bins at the reference's deciles)."""
    if reference.dtype == object:
        p, q = reference.value_counts(normalize=True), current.value_counts(normalize=True)
        p, q = p.align(q, fill_value=0.0)
    else:
        edges = sorted(set(np.quantile(reference.astype(float), np.arange(1, bins) / bins)))
        cuts = [-np.inf, *edges, np.inf]
        p = pd.cut(reference, cuts).value_counts(normalize=True, sort=False)
        q = pd.cut(current, cuts).value_counts(normalize=True, sort=False)
    p, q = p.clip(lower=1e-4), q.clip(lower=1e-4)
    return float(((q - p) * np.log(q / p)).sum())


def test_drift_checks_compare_with_the_champions_training_set_and_the_previous_batch(
    trained, monkeypatch
):
    settings, result = trained.settings, trained.result
    assert result.success  # a drifted feature warns, it does not fail the run

    drift = check_evaluation(result, "customer_features_drift")
    assert drift.severity == dg.AssetCheckSeverity.WARN
    values = {k: v.value for k, v in drift.metadata.items()}
    # The reference is the exact churn_training_set version the champion's MLflow run logged.
    model = result.asset_materializations_for_node("churn_model")[0].metadata
    assert values["champion_version"] == 1
    assert values["training_set_delta_version"] == model["churn_training_set_delta_version"].value
    path = table_uri(settings.lakehouse_uri, "ml", "churn_training_set")
    train = DeltaTable(path, version=values["training_set_delta_version"]).to_pandas()
    train = train[train.split == "train"]
    current = read_table(settings, "gold", "customer_features")
    assert values["train_rows"] == len(train) and values["current_rows"] == len(current)
    features = [*ml.NUMERIC_FEATURES, *ml.CATEGORICAL_FEATURES]
    assert {k.removeprefix("psi/") for k in values if k.startswith("psi/")} == set(features)
    for name in features:
        expected = psi_by_hand(train[name], current[name])
        assert values[f"psi/{name}"] == pytest.approx(expected, rel=1e-9, abs=1e-12), name
    psi = {name: values[f"psi/{name}"] for name in features}
    assert values["max_psi"] == max(psi.values())
    over = [name for name, value in psi.items() if value > values["psi_threshold"]]
    assert values["features_over_threshold"] == len(over) and drift.passed == (not over)
    # Tenure grows with the 60 days between the training cutoff and today's: drift by design.
    assert psi["days_since_first_order"] > 0.2
    # Evidently's report, in the champion's MLflow run, linked from the metadata.
    champion_run = alias(settings, CHAMPION).run_id
    folder = f"monitoring/{result.run_id}"
    logged = [a.path for a in registry(settings).list_artifacts(champion_run, folder)]
    assert logged == [f"{folder}/customer_features_drift.html"]
    experiment = registry(settings).get_run(champion_run).info.experiment_id
    assert values["drift_report"] == (  # the MLflow UI of `make mlflow`, for a local store
        f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{champion_run}"
        f"/artifactPath/{logged[0]}"
    )
    assert values["drift_report_artifact"].endswith(logged[0])

    scores = check_evaluation(result, "churn_score_drift")
    assert scores.passed and scores.severity == dg.AssetCheckSeverity.WARN
    assert "first batch" in scores.metadata["skipped"].value  # nothing to compare with yet

    # The trained run retrained churn_model: the drift sensor does not retrain again for it.
    monkeypatch.setenv("RECSYS_DRIFT_RETRAIN_PSI", "0")
    tick = drift_retrain_sensor(dg.build_sensor_context(instance=INSTANCE))
    assert not tick.run_requests and "retrained" in tick.skip_reason.skip_message

    # A previous batch with other scores, then features and scores again, without retraining.
    uri = table_uri(settings.lakehouse_uri, "gold", "churn_predictions")
    batch = DeltaTable(uri).to_pandas()
    shifted = batch.assign(churn_probability=batch.churn_probability**3)
    write_deltalake(uri, shifted, mode="overwrite")
    rescored = run_assets(settings, ["customer_features", "churn_predictions"])
    scores = check_evaluation(rescored, "churn_score_drift")
    now = DeltaTable(uri)
    values = {k: v.value for k, v in scores.metadata.items()}
    assert (values["previous_delta_version"], values["current_delta_version"]) == (
        now.version() - 1,
        now.version(),
    )
    expected = psi_by_hand(shifted.churn_probability, now.to_pandas().churn_probability)
    assert values["psi"] == pytest.approx(expected, rel=1e-9) and expected > 0.2
    assert not scores.passed and scores.severity == dg.AssetCheckSeverity.WARN
    assert values["previous_mean_churn_probability"] == pytest.approx(
        shifted.churn_probability.mean()
    )

    # That run drifted and did not train: the sensor asks for a refresh, once.
    tick = drift_retrain_sensor(dg.build_sensor_context(instance=INSTANCE))
    [request] = tick.run_requests
    assert request.tags[DRIFT_RETRAIN_TAG] == rescored.run_id
    again = drift_retrain_sensor(dg.build_sensor_context(instance=INSTANCE, cursor=tick.cursor))
    assert not again.run_requests


# ----------------------------------------------------------------------- the gate


def test_an_identical_retrain_does_not_beat_the_champion_and_is_not_promoted(trained):
    settings = trained.settings
    result = run_assets(settings, ["churn_model", "churn_champion"], raise_on_error=False)

    assert not result.success
    gate = gate_evaluation(result)
    assert not gate.passed
    assert gate.metadata["challenger_version"].value == 2
    assert gate.metadata["champion_version"].value == "1"
    values = {k: v.value for k, v in gate.metadata.items()}
    assert values["challenger_roc_auc"] == values["champion_roc_auc"]  # same data, same model
    assert "is equal to champion's" in values["reason"]
    assert result.asset_materializations_for_node("churn_champion") == []
    assert alias_version(settings, CHAMPION) == "1"
    assert alias_version(settings, CHALLENGER) == "2"
    assert Verdict.from_tags(alias(settings, CHALLENGER).tags).status == "FAILED"


def test_the_champion_moves_only_after_the_gate_passed_in_the_same_run(trained):
    settings = trained.settings
    champion = alias_version(settings, CHAMPION)

    result = run_assets(settings, ["churn_champion"], raise_on_error=False)

    assert not result.success
    assert "No gate judged" in failure_message(result)  # v2 (the latest churn_model) was not
    assert alias_version(settings, CHAMPION) == champion


# ----------------------------------------------------------------------- bad training sets


@pytest.mark.parametrize(
    "rows, cause",
    [
        (training_rows(200, lambda ids: 0), "single class"),
        (training_rows(8, lambda ids: ids % 2), "too few rows"),
    ],
)
def test_bad_training_data_fails_the_run_and_moves_no_alias(trained, tmp_path, rows, cause):
    # The trained registry, with another lakehouse holding a bad churn_training_set.
    settings = settings_for(trained.settings.home, RECSYS_LAKEHOUSE_URI=str(tmp_path / "lakehouse"))
    write_deltalake(f"{settings.lakehouse_uri}/ml/churn_training_set", rows)
    before = {a: alias_version(settings, a) for a in (CHAMPION, CHALLENGER)}
    known = versions(settings)

    result = run_assets(settings, ["churn_model", "churn_champion"], raise_on_error=False)

    assert not result.success
    assert cause in failure_message(result)
    assert {a: alias_version(settings, a) for a in (CHAMPION, CHALLENGER)} == before
    assert versions(settings) == known  # nothing registered
    client = registry(settings)
    experiment = client.get_experiment_by_name(churn.EXPERIMENT).experiment_id
    assert not client.search_runs([experiment], f"tags.{DAGSTER_RUN_TAG} = '{result.run_id}'")


def register(tracking: MlflowResource, model: Pipeline, alias_name: str) -> str:
    """Log a fitted pipeline as autolog does, register it and point ``alias_name`` at it."""
    with mlflow.start_run(experiment_id=tracking.experiment_id(churn.EXPERIMENT)):
        info = mlflow_sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",  # as autolog logs the candidates
            pip_requirements=["scikit-learn"],  # skips the slow requirements inference
        )
    version = str(mlflow.register_model(info.model_uri, churn.MODEL_NAME).version)
    Registry(tracking.client, churn.MODEL_NAME).client.set_registered_model_alias(
        churn.MODEL_NAME, alias_name, version
    )
    return version


def test_a_challenger_that_beats_the_champion_is_promoted(settings):
    tracking = MlflowResource(
        tracking_uri=settings.mlflow_tracking_uri,
        artifact_root=settings.mlflow_artifact_root,
        spark_staging_uri=settings.spark_staging_uri,
    )
    tracking.setup_for_execution(dg.build_init_resource_context())
    # Churn depends on a feature's value non-monotonically: a forest learns it, a constant not.
    rows = training_rows(200, lambda ids: (ids % 7).isin([2, 3]).astype(int))
    splits = ml.split_for_training(rows, min_rows=20)
    fitted = {
        name: Pipeline([("prep", ml.preprocessor(scale=False)), ("model", model)]).fit(
            ml.model_input(splits.train), splits.train[ml.LABEL]
        )
        for name, model in [("weak", DummyClassifier()), ("strong", RandomForestClassifier())]
    }
    weak = register(tracking, fitted["weak"], CHAMPION)
    strong = register(tracking, fitted["strong"], CHALLENGER)
    register(tracking, fitted["weak"], CHALLENGER)  # the alias moves on: the pinned one counts

    gate = churn.evaluate_gate("run-1", tracking, strong, splits.test)
    promoted = churn.promote(strong, "run-1", tracking)

    assert gate.passed and "is above champion's" in gate.metadata["reason"].value
    assert gate.metadata["champion_roc_auc"].value == 0.5
    assert gate.metadata["challenger_roc_auc"].value > 0.9
    champion = alias(settings, CHAMPION)
    assert str(champion.version) == strong != weak
    assert champion.tags[PREVIOUS_CHAMPION_TAG] == weak  # so the rollback job can restore it
    assert str(promoted.metadata["previous_champion_version"]) == weak
    with pytest.raises(dg.Failure, match="No gate judged"):  # the gate's verdict was for run-1
        churn.promote(strong, "run-2", tracking)
