"""Churn assets: training set, autologged candidates, gate, champion, batch scoring.

Thin wiring over ``recsys_assets.ml.churn`` and ``recsys_assets.registry``. Candidates are
fitted on the train split in nested autologged MLflow runs and compared on validation; the
best one's model is logged in its run, registered as a new version of ``churn_model`` and
evaluated on test with ``mlflow.models.evaluate`` (ROC and PR curves, confusion matrix).
``churn_gate`` judges that version on test against the champion; ``churn_predictions`` scores
``customer_features`` with ``@champion`` on every refresh, whether or not the challenger won.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import sklearn
from mlflow import log_metric, log_params, register_model, set_tag, start_run
from mlflow import sklearn as mlflow_sklearn
from mlflow.models import infer_signature
from pyspark.sql import DataFrame

from recsys_assets.assets.als import BATCH_FRESHNESS, SCORE_LAST, SERVING_EXPERIMENT
from recsys_assets.ml import churn as ml
from recsys_assets.ml import churn_scorer
from recsys_assets.ml.churn import (
    AUC_TAG,
    CANDIDATE_TAG,
    LABEL,
    PREDICTION_COLUMNS,
    SPLIT,
    TEST,
    TRAINING_COLUMNS,
    VALIDATION,
    Candidate,
    Splits,
)
from recsys_assets.registry import LIMIT, Registry, Requirement, Serving, registered_version
from recsys_assets.resources.lakehouse import PANDAS_IO_MANAGER, Lakehouse
from recsys_assets.resources.mlflow import DAGSTER_RUN_TAG, MlflowResource
from recsys_assets.tables import GOLD, ML, column_schema, in_layer

GROUP = "churn_model"
MODEL_NAME = "churn_model"
EXPERIMENT = "recsys/churn_model"
METRIC = "roc_auc"
# What MLflow's scoring server serves: the champion with the features it scores, by customer_id.
SERVING = Serving("churn_scorer", tag="churn_version")
SERVING_REQUIREMENTS = [
    f"mlflow=={mlflow.__version__}",
    f"scikit-learn=={sklearn.__version__}",
    f"pandas=={pd.__version__}",
]


def registry(tracking: MlflowResource) -> Registry:
    return Registry(tracking.client, MODEL_NAME, SERVING)


def load_version(version: str):
    return mlflow_sklearn.load_model(f"models:/{MODEL_NAME}/{version}")


def utc_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """Spark's ``toPandas`` gives naive times in the session zone (UTC): say so, so the Delta
    table keeps a UTC ``timestamp``, as the Spark-written tables do, not a ``timestamp_ntz``."""
    naive = [c for c in frame.columns if pd.api.types.is_datetime64_dtype(frame[c])]
    return frame.assign(**{c: frame[c].dt.tz_localize("UTC") for c in naive})


class ChurnTrainingSetConfig(dg.Config):
    horizon_days: int = 30  # the label window after each cutoff: the one place it is set
    split_seed: int = 42
    validation_percent: int = 20
    test_percent: int = 20  # used only when the data is too short for a later test slice
    min_history_days: int = 21  # of orders before the earlier cutoff, for a time-sliced test


@dg.asset(
    group_name=GROUP,
    kinds={"spark", "pandas", "delta"},
    metadata={**in_layer(ML), "dagster/column_schema": column_schema(TRAINING_COLUMNS)},
    io_manager_key=PANDAS_IO_MANAGER,  # one row per customer and cutoff: pandas-sized
)
def churn_training_set(
    context: dg.AssetExecutionContext,
    config: ChurnTrainingSetConfig,
    customers_silver: DataFrame,
    sales_orders_customer_join_min: DataFrame,
) -> pd.DataFrame:
    """Point-in-time features, the churn label after each cutoff, train/validation/test."""
    try:
        rows, test_as_of, mode = ml.training_set(
            customers_silver,
            sales_orders_customer_join_min,
            config.horizon_days,
            config.split_seed,
            config.validation_percent,
            config.test_percent,
            config.min_history_days,
        )
    except ml.Unlearnable as error:
        raise dg.Failure(str(error)) from error
    frame = utc_timestamps(rows.toPandas())
    split_rows = frame[SPLIT].value_counts()
    context.add_output_metadata(
        {
            "test_as_of": ml.iso(test_as_of),
            "test_split": mode,  # "time": a later slice; "hash": customers of the same cutoff
            "dagster/row_count": len(frame),
            **{
                f"{name}_rows": int(split_rows.get(name, 0)) for name in ("train", VALIDATION, TEST)
            },
            "churn_rate": float(frame[LABEL].mean()) if len(frame) else 0.0,
        }
    )
    return frame


# --------------------------------------------------------------------------- model


# What the logged model needs to load and score, pinned (inferring them imports the model in
# a subprocess, seconds per model).
PIP_REQUIREMENTS = [
    f"scikit-learn=={sklearn.__version__}",
    f"pandas=={pd.__version__}",
    f"numpy=={np.__version__}",
    f"mlflow=={mlflow.__version__}",
]


@dataclass(frozen=True)
class Trained:
    candidates: list[Candidate]
    best: Candidate
    model_uri: str  # the best candidate's fitted Pipeline, logged in its run


def train_candidates(splits: Splits, experiment_id: str, tags: dict[str, str]) -> Trained:
    """Fit every candidate in its own nested, autologged MLflow run (its parameters, training
    metrics and train split), score it on validation, and log the best one's model there."""
    x_train, y_train = ml.model_input(splits.train), splits.train[LABEL]
    candidates, fitted = [], {}
    mlflow_sklearn.autolog(log_models=False, silent=True)
    try:
        for name, pipeline in ml.candidate_pipelines().items():
            with start_run(
                experiment_id=experiment_id,
                run_name=name,
                nested=True,
                tags={**tags, CANDIDATE_TAG: name},
            ) as run:
                pipeline.fit(x_train, y_train)
                auc = ml.roc_auc(pipeline, splits.validation)
                log_metric(AUC_TAG, auc)
            candidates.append(Candidate(name, run.info.run_id, auc))
            fitted[name] = pipeline
    finally:
        mlflow_sklearn.autolog(disable=True)
    best = max(candidates, key=lambda c: c.roc_auc)
    model = fitted[best.name]
    with start_run(run_id=best.run_id, nested=True):
        info = mlflow_sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_train, model.predict(x_train)),  # as autolog infers it
            pip_requirements=PIP_REQUIREMENTS,
            serialization_format=mlflow_sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,  # as autolog's
        )
    return Trained(candidates, best, info.model_uri)


def evaluate_on_test(model_uri: str, test: pd.DataFrame) -> dict[str, float]:
    """``mlflow.models.evaluate`` on test, in the active run: metrics plus ROC and PR curves and
    a confusion matrix as artifacts (the classifier evaluator only: no SHAP, so it stays cheap)."""
    data = ml.model_input(test).assign(**{LABEL: test[LABEL].to_numpy()})
    result = mlflow.models.evaluate(
        model_uri,
        data,
        targets=LABEL,
        model_type="classifier",
        evaluators=["default"],
        evaluator_config={"default": {"log_model_explainability": False, "pos_label": 1}},
    )
    return {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}


class ChurnModelConfig(dg.Config):
    min_rows: int = 30  # fewer rows than this cannot be split into train, validation and test


@dg.asset(group_name=GROUP, kinds={"sklearn", "mlflow"})
def churn_model(
    context: dg.AssetExecutionContext,
    config: ChurnModelConfig,
    mlflow: MlflowResource,
    lakehouse: Lakehouse,
    churn_training_set: pd.DataFrame,
) -> dg.MaterializeResult:
    """Autologged candidates, the best on validation registered as challenger, test-evaluated."""
    try:
        splits = ml.split_for_training(churn_training_set, config.min_rows)
    except ml.Unlearnable as error:
        raise dg.Failure(str(error)) from error
    return register_best_candidate(context, mlflow, lakehouse, splits)


def register_best_candidate(
    context: dg.AssetExecutionContext,
    tracking: MlflowResource,
    lakehouse: Lakehouse,
    splits: Splits,
) -> dg.MaterializeResult:
    tags = {DAGSTER_RUN_TAG: context.run_id}
    with tracking.start_run(context, run_name="churn_candidates", experiment=EXPERIMENT) as parent:
        # The table, once, on the parent: autolog logs each candidate's own train split.
        dataset = tracking.log_table(lakehouse, ML, "churn_training_set", "training")
        log_params(
            {
                "train_rows": len(splits.train),
                "validation_rows": len(splits.validation),
                "test_rows": len(splits.test),
                "test_as_of": str(splits.test["as_of"].iloc[0]),
                "candidates": ",".join(ml.candidate_pipelines()),
            }
        )
        trained = train_candidates(splits, parent.info.experiment_id, tags)
        candidates, best = trained.candidates, trained.best
        log_metric(AUC_TAG, best.roc_auc)
        set_tag("best_candidate", best.name)
        version_tags = {AUC_TAG: repr(best.roc_auc), CANDIDATE_TAG: best.name}
        version = register_model(trained.model_uri, MODEL_NAME, tags=version_tags).version
        set_tag("registered_version", version)
        test_metrics = evaluate_on_test(trained.model_uri, splits.test)
    registry(tracking).mark_challenger(str(version), context.run_id, "churn_model")
    context.log.info(f"{MODEL_NAME} v{version} ({best.name}, AUC {best.roc_auc:.4f}) is challenger")
    return dg.MaterializeResult(
        metadata={
            # The version churn_gate and churn_champion act on (registry.registered_version).
            "model_version": dg.MetadataValue.int(int(version)),
            "candidates": dg.MetadataValue.md(ml.candidates_table(candidates, best)),
            "mlflow_run": tracking.run_url(parent),
            "mlflow_model_version": tracking.model_version_url(MODEL_NAME, str(version)),
            **dataset.metadata(),
            "best_candidate": best.name,
            AUC_TAG: dg.MetadataValue.float(best.roc_auc),
            **{f"{AUC_TAG}/{c.name}": dg.MetadataValue.float(c.roc_auc) for c in candidates},
            **{
                f"test_{k}": dg.MetadataValue.float(v)
                for k, v in test_metrics.items()
                if k in ("roc_auc", "precision_recall_auc", "f1_score", "accuracy_score")
            },
            "train_rows": len(splits.train),
            "validation_rows": len(splits.validation),
            "test_rows": len(splits.test),
        }
    )


class ChurnGateConfig(dg.Config):
    min_roc_auc: float | None = None  # an absolute floor on the challenger's test ROC AUC


@dg.asset_check(
    asset=churn_model,
    blocking=True,
    additional_ins={"churn_training_set": dg.AssetIn("churn_training_set")},
    description="The challenger must beat the champion's ROC AUC on the test split.",
)
def churn_gate(
    context: dg.AssetCheckExecutionContext,
    config: ChurnGateConfig,
    mlflow: MlflowResource,
    churn_training_set: pd.DataFrame,
) -> dg.AssetCheckResult:
    test = churn_training_set[churn_training_set[SPLIT] == TEST]
    version = registered_version(context, "churn_model")
    return evaluate_gate(context.run.run_id, mlflow, version, test, config.min_roc_auc)


def evaluate_gate(
    run_id: str,
    tracking: MlflowResource,
    version: str,
    test: pd.DataFrame,
    min_roc_auc: float | None = None,
) -> dg.AssetCheckResult:
    """Score ``version`` and the champion on ``test``; record the verdict on ``version``."""
    if test.empty or test[LABEL].nunique() < 2:
        raise dg.Failure("The test split needs both classes to compare ROC AUC.")
    models = registry(tracking)
    champion = models.champion()
    scores = {"challenger": {METRIC: ml.roc_auc(load_version(version), test)}}
    if champion is not None:
        scores["champion"] = {METRIC: ml.roc_auc(load_version(champion), test)}
    requirements = [Requirement(METRIC, "champion", higher_is_better=True, strict=True)]
    if min_roc_auc is not None:
        requirements.append(Requirement(METRIC, LIMIT, True, limit=min_roc_auc))
    decision = models.judge(version, champion, scores, requirements, run_id)
    return decision.check_result(
        challenger_version=int(version),
        champion_version=champion or "none",
        test_rows=len(test),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"mlflow"},
    deps=[churn_model],
    ins={"customer_features": dg.AssetIn(input_manager_key=PANDAS_IO_MANAGER)},
)
def churn_champion(
    context: dg.AssetExecutionContext, mlflow: MlflowResource, customer_features: pd.DataFrame
) -> dg.MaterializeResult:
    """Alias 'champion' moved to this run's challenger once gated; served as churn_scorer."""
    version = registered_version(context, "churn_model")
    promoted = promote(version, context.run_id, mlflow)
    with mlflow.start_run(context, SERVING.name, experiment=SERVING_EXPERIMENT) as run:
        served = register_scorer(mlflow, version, customer_features)
    registry(mlflow).serve(version, served)
    context.log.info(f"{SERVING.name} v{served} (from {MODEL_NAME} v{version}) is champion")
    return dg.MaterializeResult(
        metadata={
            **promoted.metadata,
            "serving_model_version": dg.MetadataValue.int(int(served)),
            "serving_model_uri": f"models:/{SERVING.name}@champion",
            "serving_mlflow_run": mlflow.run_url(run),
            "serving_mlflow_model_version": mlflow.model_version_url(SERVING.name, served),
        }
    )


def register_scorer(tracking: MlflowResource, version: str, features: pd.DataFrame) -> str:
    """Log ``version`` with ``features`` as the pyfunc ``ml.churn_scorer.ChurnScorer`` (in the
    active run); returns its registered version."""
    log_params({SERVING.tag: version, "customers": len(features)})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "customer_features.parquet"
        churn_scorer.feature_table(features).to_parquet(path)
        return tracking.log_pyfunc(
            churn_scorer.ChurnScorer(),
            SERVING.name,
            artifacts={
                churn_scorer.CLASSIFIER: f"models:/{MODEL_NAME}/{version}",
                churn_scorer.FEATURES: str(path),
            },
            model_config={churn_scorer.VERSION_KEY: int(version)},
            signature=churn_scorer.SIGNATURE,
            pip_requirements=SERVING_REQUIREMENTS,
        )


def promote(version: str, run_id: str, tracking: MlflowResource) -> dg.MaterializeResult:
    models = registry(tracking)
    previous = models.promote(version, run_id)
    verdict = models.verdict(version)
    auc = verdict.metrics.get(f"challenger_{METRIC}") if verdict else None
    return dg.MaterializeResult(
        metadata={
            "model_version": dg.MetadataValue.int(int(version)),
            "previous_champion_version": previous or "none",
            f"test_{METRIC}": dg.MetadataValue.float(auc) if auc is not None else "unknown",
        }
    )


# --------------------------------------------------------------------------- batch scoring


@dg.asset(
    group_name=GROUP,
    kinds={"pandas", "delta"},
    metadata={**in_layer(GOLD), "dagster/column_schema": column_schema(PREDICTION_COLUMNS)},
    # One row per customer, scored by scikit-learn: read and written by delta-rs, not Spark.
    ins={"customer_features": dg.AssetIn(input_manager_key=PANDAS_IO_MANAGER)},
    io_manager_key=PANDAS_IO_MANAGER,
    op_tags=SCORE_LAST,
    freshness_policy=BATCH_FRESHNESS,
)
def churn_predictions(
    context: dg.AssetExecutionContext,
    mlflow: MlflowResource,
    customer_features: pd.DataFrame,
) -> pd.DataFrame:
    """The champion's churn probability for every current customer, from the newest data."""
    scored = score_customers(mlflow, customer_features)
    version = int(scored["model_version"].iloc[0]) if len(scored) else 0
    as_of = customer_features["as_of"].max()
    context.add_output_metadata(
        {
            "model_version": dg.MetadataValue.int(version),
            "features_as_of": ml.iso(int(as_of.timestamp())) if len(scored) else "none",
            "dagster/row_count": len(scored),
            "mean_churn_probability": float(scored["churn_probability"].mean())
            if len(scored)
            else 0.0,
        }
    )
    return scored


def score_customers(tracking: MlflowResource, features: pd.DataFrame) -> pd.DataFrame:
    """customer_id, churn_probability, model_version, scored_at, scored by the champion."""
    champion = registry(tracking).champion()
    if champion is None:
        raise dg.Failure(f"{MODEL_NAME} has no champion: nothing to score with.")
    model = load_version(champion)
    probability = model.predict_proba(ml.model_input(features))[:, 1] if len(features) else []
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].astype("int64"),
            "churn_probability": pd.Series(probability, dtype="float64"),
            "model_version": int(champion),
            "scored_at": pd.Timestamp.now(tz="UTC"),
        }
    )
