"""Monitoring as asset checks: drift of the churn features and scores, what recommendations cover.

Every check here has WARN severity and is not blocking: a drifted feature or a thin catalogue
coverage shows in the UI (the numbers are float metadata, so the UI plots them over time) and
never fails a run. The computations are ``recsys_assets.ml.monitoring``.

- ``customer_features_drift`` (on ``customer_features``): PSI of every model feature against
  the train split of the exact ``churn_training_set`` version the churn champion was trained on
  (the Delta path and version its MLflow run logged as its training dataset), and Evidently's
  HTML drift report, logged to the champion's MLflow run and linked from the metadata. It runs
  last in its run (priority below the scoring steps), so it compares with the champion a
  promotion in the same run has just made.
- ``churn_score_drift`` (on ``churn_predictions``): PSI of the churn probability between the
  previous write of the table and this one (Delta time travel with delta-rs).
- ``catalogue_coverage``, ``full_list_share``, ``top_products_concentration``,
  ``popularity_share`` (on ``customer_recommendations``): one Spark pass, four checks.

A check without what it compares with (no champion yet, a champion whose run logged no training
set, a first write of the predictions) passes with the reason in its metadata (``skipped``).
"""

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
from deltalake import DeltaTable
from mlflow.data import get_source
from mlflow.entities import Run
from pydantic import Field
from pyspark.sql import DataFrame

from recsys_assets.assets.als import purchases
from recsys_assets.assets.silver import current_customers
from recsys_assets.ml import monitoring as mon
from recsys_assets.ml.als import POPULARITY_SOURCE, K
from recsys_assets.ml.churn import CATEGORICAL_FEATURES, NUMERIC_FEATURES, SPLIT, TRAIN
from recsys_assets.registry import Registry
from recsys_assets.resources.lakehouse import Lakehouse
from recsys_assets.resources.mlflow import MlflowResource
from recsys_assets.tables import GOLD

CHURN_MODEL = "churn_model"
TRAINING_SET = "churn_training_set"
FEATURE_DRIFT = "customer_features_drift"
SCORE_DRIFT = "churn_score_drift"
FEATURE_DRIFT_KEY = dg.AssetCheckKey(dg.AssetKey("customer_features"), FEATURE_DRIFT)
REPORT_FOLDER = "monitoring"  # in the champion's MLflow run: monitoring/<dagster run id>/
REPORT_FILE = "customer_features_drift.html"
# Below the batch scoring's -1 (SCORE_LAST): with the in-process executor the drift check runs
# once nothing else is ready, after churn_champion and churn_predictions of the same run.
AFTER_SCORING = {"dagster/priority": "-2"}
WARN = dg.AssetCheckSeverity.WARN


def skipped(reason: str, **metadata: object) -> dg.AssetCheckResult:
    """Nothing to compare with: passed, and the reason in the metadata and the description."""
    return dg.AssetCheckResult(
        passed=True,
        severity=WARN,
        description=f"Skipped: {reason}",
        metadata={"skipped": reason, **metadata},
    )


# --------------------------------------------------------------------------- feature drift


@dataclass(frozen=True)
class ChampionTrainingSet:
    """The train split the churn champion was fitted on, or why it cannot be read."""

    version: str | None = None  # the champion's model version
    run: Run | None = None  # the MLflow run that logged the model version
    path: str | None = None
    delta_version: int | None = None
    frame: pd.DataFrame | None = None  # train rows
    missing: str | None = None  # the reason, when frame is None


def training_dataset(mlflow: MlflowResource, run: Run) -> tuple[str, int | None] | None:
    """(path, Delta version) of ``churn_training_set`` logged as an input of ``run`` or of its
    parent (autologged candidates are nested runs; the table is logged on the parent)."""
    runs = [run]
    parent = run.data.tags.get("mlflow.parentRunId")
    if parent:
        runs.append(mlflow.client.get_run(parent))
    for candidate in runs:
        for logged in candidate.inputs.dataset_inputs if candidate.inputs else []:
            if logged.dataset.name == TRAINING_SET:
                source = get_source(logged.dataset)
                return source.path, source.delta_table_version  # type: ignore[attr-defined]
    return None


def champion_training_set(mlflow: MlflowResource, lakehouse: Lakehouse) -> ChampionTrainingSet:
    champion = Registry(mlflow.client, CHURN_MODEL).champion()
    if champion is None:
        return ChampionTrainingSet(missing=f"{CHURN_MODEL} has no champion yet.")
    version = mlflow.client.get_model_version(CHURN_MODEL, champion)
    if not version.run_id:
        return ChampionTrainingSet(champion, missing=f"{CHURN_MODEL} v{champion} has no run.")
    run = mlflow.client.get_run(version.run_id)
    found = training_dataset(mlflow, run)
    if found is None or found[1] is None:
        return ChampionTrainingSet(
            champion,
            run,
            missing=f"the MLflow run of {CHURN_MODEL} v{champion} ({run.info.run_id}) logged no "
            f"{TRAINING_SET} dataset with a Delta version: it predates dataset logging.",
        )
    path, delta_version = found
    try:
        table = DeltaTable(
            path, version=delta_version, storage_options=lakehouse.storage_options or None
        )
        frame = table.to_pandas()
    except Exception as error:  # noqa: BLE001 - delta-rs errors: gone table, vacuumed files
        return ChampionTrainingSet(
            champion,
            run,
            path,
            delta_version,
            missing=f"{path} at version {delta_version} cannot be read (vacuumed?): {error}",
        )
    train = frame[frame[SPLIT] == TRAIN].reset_index(drop=True)
    return ChampionTrainingSet(champion, run, path, delta_version, train)


def artifact_url(mlflow: MlflowResource, run: Run, artifact: str) -> str:
    """The MLflow UI's page of one artifact of ``run``."""
    info = run.info
    return (
        f"{mlflow.ui}/#/experiments/{info.experiment_id}/runs/{info.run_id}/artifactPath/{artifact}"
    )


def log_drift_report(
    mlflow: MlflowResource,
    run: Run,
    dagster_run_id: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    threshold: float,
) -> dict[str, dg.MetadataValue]:
    """Evidently's drift report, logged into ``run``; links for the check's metadata."""
    folder = f"{REPORT_FOLDER}/{dagster_run_id}"
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / REPORT_FILE)
        mon.drift_report_html(
            reference, current, NUMERIC_FEATURES, CATEGORICAL_FEATURES, threshold, path
        )
        mlflow.client.log_artifact(run.info.run_id, path, folder)
    artifact = f"{folder}/{REPORT_FILE}"
    return {
        "drift_report": dg.MetadataValue.url(artifact_url(mlflow, run, artifact)),
        "drift_report_artifact": dg.MetadataValue.path(f"{run.info.artifact_uri}/{artifact}"),
    }


class FeatureDriftConfig(dg.Config):
    psi_threshold: float = Field(default=mon.PSI_THRESHOLD, description="WARN above this PSI.")
    n_bins: int = Field(default=mon.N_BINS, description="Quantile bins of the training set.")
    html_report: bool = Field(default=True, description="Log Evidently's HTML report to MLflow.")


@dg.asset_check(
    asset="customer_features",
    name=FEATURE_DRIFT,
    op_tags=AFTER_SCORING,
    description="PSI of every churn feature against the train split the churn champion was "
    "trained on (WARN above the threshold); Evidently's HTML report in the champion's run.",
)
def customer_features_drift(
    context: dg.AssetCheckExecutionContext,
    config: FeatureDriftConfig,
    lakehouse: Lakehouse,
    mlflow: MlflowResource,
) -> dg.AssetCheckResult:
    features = lakehouse.log(GOLD, "customer_features")
    if features is None:
        return skipped("customer_features has no Delta table yet.")
    current = features.to_pandas()
    reference = champion_training_set(mlflow, lakehouse)
    common = {
        "customer_features_delta_version": dg.MetadataValue.int(features.version()),
        "current_rows": dg.MetadataValue.int(len(current)),
    }
    if reference.version is not None:
        common["champion_version"] = dg.MetadataValue.int(int(reference.version))
    if reference.frame is None:
        context.log.warning(f"{FEATURE_DRIFT} skipped: {reference.missing}")
        return skipped(reference.missing or "no reference", **common)
    if reference.frame.empty or current.empty:
        return skipped("the training set's train split or customer_features has no rows.", **common)
    psi = mon.feature_psi(
        reference.frame, current, NUMERIC_FEATURES, CATEGORICAL_FEATURES, config.n_bins
    )
    summary = mon.summarize(psi, config.psi_threshold)
    metadata = {
        **common,
        "max_psi": dg.MetadataValue.float(summary.max_psi),
        "max_psi_feature": summary.max_psi_feature,
        "features_over_threshold": dg.MetadataValue.int(len(summary.drifted)),
        "drifted_share": dg.MetadataValue.float(summary.drifted_share),
        "psi_threshold": dg.MetadataValue.float(config.psi_threshold),
        "psi_table": dg.MetadataValue.md(summary.markdown()),
        **{f"psi/{name}": dg.MetadataValue.float(value) for name, value in psi.items()},
        "training_set_uri": dg.MetadataValue.path(reference.path or ""),
        "training_set_delta_version": dg.MetadataValue.int(reference.delta_version or 0),
        "train_rows": dg.MetadataValue.int(len(reference.frame)),
    }
    if config.html_report and reference.run is not None:
        metadata.update(
            log_drift_report(
                mlflow,
                reference.run,
                context.run.run_id,
                reference.frame,
                current,
                config.psi_threshold,
            )
        )
    drifted = ", ".join(summary.drifted) or "none"
    return dg.AssetCheckResult(
        passed=not summary.drifted,
        severity=WARN,
        description=f"Max PSI {summary.max_psi:.3f} ({summary.max_psi_feature}); over "
        f"{config.psi_threshold}: {drifted}.",
        metadata=metadata,
    )


# --------------------------------------------------------------------------- score drift

MAINTENANCE = ("OPTIMIZE", "VACUUM")  # commits that leave the rows as they were


def previous_write(table: DeltaTable) -> int | None:
    """The newest version before the current one that wrote rows (not OPTIMIZE or VACUUM)."""
    current = table.version()
    for commit in table.history(100):  # newest first
        version = commit.get("version")
        operation = str(commit.get("operation", ""))
        if version is not None and version < current and not operation.startswith(MAINTENANCE):
            return int(version)
    return None


class ScoreDriftConfig(dg.Config):
    psi_threshold: float = Field(default=mon.PSI_THRESHOLD, description="WARN above this PSI.")
    n_bins: int = Field(default=mon.N_BINS, description="Quantile bins of the previous scores.")


@dg.asset_check(
    asset="churn_predictions",
    name=SCORE_DRIFT,
    description="PSI of the churn probability between the previous batch and this one.",
)
def churn_score_drift(config: ScoreDriftConfig, lakehouse: Lakehouse) -> dg.AssetCheckResult:
    log = lakehouse.log(GOLD, "churn_predictions")
    if log is None:
        return skipped("churn_predictions has no Delta table yet.")
    previous_version = previous_write(log)
    common = {"current_delta_version": dg.MetadataValue.int(log.version())}
    if previous_version is None:
        return skipped("this is the first batch of churn_predictions.", **common)
    uri, options = lakehouse.uri(GOLD, "churn_predictions"), lakehouse.storage_options or None
    columns = ["churn_probability", "model_version"]
    current = log.to_pandas(columns=columns)
    try:
        previous = DeltaTable(uri, version=previous_version, storage_options=options).to_pandas(
            columns=columns
        )
    except Exception as error:  # noqa: BLE001 - delta-rs errors: vacuumed files
        return skipped(f"version {previous_version} cannot be read (vacuumed?): {error}", **common)
    if previous.empty or current.empty:
        return skipped("the previous or the current batch has no rows.", **common)
    psi = mon.numeric_psi(previous.churn_probability, current.churn_probability, config.n_bins)

    def model_versions(frame: pd.DataFrame) -> str:
        return ",".join(str(v) for v in sorted(frame.model_version.dropna().unique()))

    return dg.AssetCheckResult(
        passed=psi <= config.psi_threshold,
        severity=WARN,
        description=f"PSI {psi:.3f} between versions {previous_version} and {log.version()}.",
        metadata={
            **common,
            "psi": dg.MetadataValue.float(psi),
            "psi_threshold": dg.MetadataValue.float(config.psi_threshold),
            "previous_delta_version": dg.MetadataValue.int(previous_version),
            "mean_churn_probability": dg.MetadataValue.float(
                float(current.churn_probability.mean())
            ),
            "previous_mean_churn_probability": dg.MetadataValue.float(
                float(previous.churn_probability.mean())
            ),
            "model_versions": model_versions(current),
            "previous_model_versions": model_versions(previous),
            "rows": dg.MetadataValue.int(len(current)),
            "previous_rows": dg.MetadataValue.int(len(previous)),
        },
    )


# --------------------------------------------------------------------------- recommendations

COVERAGE, FULL_LIST, CONCENTRATION, POPULARITY = (
    "catalogue_coverage",
    "full_list_share",
    "top_products_concentration",
    "popularity_share",
)
RECOMMENDATIONS = "customer_recommendations"
SILVER_INPUTS = ["customers_silver", "sales_orders_silver"]  # current customers, the catalogue


class RecommendationChecksConfig(dg.Config):
    min_catalogue_coverage: float = Field(
        default=0.2, description="WARN if fewer than this share of products are recommended."
    )
    min_full_list_share: float = Field(
        default=0.95, description=f"WARN if fewer customers than this get all {K} products."
    )
    max_top_products_concentration: float = Field(
        default=0.5,
        description=f"WARN if more than this share of the rows go to the {mon.TOP_PRODUCTS} "
        "most recommended products.",
    )
    max_popularity_share: float = Field(
        default=0.5, description="WARN if more than this share of rows come from popularity."
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            COVERAGE,
            asset=RECOMMENDATIONS,
            additional_deps=SILVER_INPUTS,
            description="Distinct recommended products / products ever ordered.",
        ),
        dg.AssetCheckSpec(
            FULL_LIST,
            asset=RECOMMENDATIONS,
            additional_deps=SILVER_INPUTS,
            description=f"Current customers who got {K} recommendations / current customers.",
        ),
        dg.AssetCheckSpec(
            CONCENTRATION,
            asset=RECOMMENDATIONS,
            additional_deps=SILVER_INPUTS,
            description=f"Share of the rows going to the {mon.TOP_PRODUCTS} most recommended "
            "products.",
        ),
        dg.AssetCheckSpec(
            POPULARITY,
            asset=RECOMMENDATIONS,
            additional_deps=SILVER_INPUTS,
            description="Share of the rows served by the popularity fallback.",
        ),
    ],
    ins={
        RECOMMENDATIONS: dg.AssetIn(RECOMMENDATIONS),
        "customers_silver": dg.AssetIn("customers_silver"),
        "sales_orders_silver": dg.AssetIn("sales_orders_silver"),
    },
)
def recommendation_checks(
    config: RecommendationChecksConfig,
    customer_recommendations: DataFrame,
    customers_silver: DataFrame,
    sales_orders_silver: DataFrame,
) -> Iterator[dg.AssetCheckResult]:
    """What the batch covers, from one Spark pass over it; only the counts reach the driver."""
    m = mon.recommendation_metrics(
        customer_recommendations,
        purchases(sales_orders_silver),
        current_customers(customers_silver),
        K,
        popularity_source=POPULARITY_SOURCE,
    )

    def result(name: str, value: float, limit: float, low_is_bad: bool, **counts: int):
        passed = value >= limit if low_is_bad else value <= limit
        return dg.AssetCheckResult(
            check_name=name,
            asset_key=RECOMMENDATIONS,
            passed=passed,
            severity=WARN,
            description=f"{name} {value:.3f} ({'min' if low_is_bad else 'max'} {limit}).",
            metadata={
                name: dg.MetadataValue.float(value),
                "threshold": dg.MetadataValue.float(limit),
                **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
            },
        )

    yield result(
        COVERAGE,
        m.catalogue_coverage,
        config.min_catalogue_coverage,
        True,
        recommended_products=m.recommended_products,
        catalogue_products=m.catalogue_products,
    )
    yield result(
        FULL_LIST,
        m.full_list_share,
        config.min_full_list_share,
        True,
        customers_with_full_list=m.customers_with_full_list,
        customers=m.customers,
    )
    yield result(
        CONCENTRATION,
        m.top_products_concentration,
        config.max_top_products_concentration,
        False,
        top_products_rows=m.top_products_rows,
        rows=m.rows,
    )
    yield result(
        POPULARITY,
        m.popularity_share,
        config.max_popularity_share,
        False,
        popularity_rows=m.popularity_rows,
        rows=m.rows,
    )
