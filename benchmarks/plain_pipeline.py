"""The whole refresh as ONE plain PySpark script, the notebook way: the baseline of overhead.py.

It does what materialising every asset does, in the same order and with the project's own
functions: read the CSV drops, apply the silver expectations, build gold, fit ALS and log and
register it in MLflow, evaluate it against a popularity baseline, gate and promote it, write
recommendations, and train, gate, promote and score the churn model. Every table the assets
write is written here too, the same way (delta-spark), and MLflow receives the same runs, model
versions and aliases.

What a notebook does not do, and so this script does not either: record a run and its events,
keep incremental bookmarks (every table is built from scratch, as a full refresh), and load the
ALS model back from the registry for evaluation and
recommendations (the fitted model is used). That is the cost of orchestration being measured.

    RECSYS_HOME=/tmp/x python benchmarks/plain_pipeline.py --out result.json
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path

from mlflow import log_metric, log_metrics, log_param, log_params, register_model, set_tag
from mlflow import start_run as mlflow_run
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_assets import expectations
from recsys_assets.assets import als, bronze, churn, gold, silver
from recsys_assets.definitions import build_resources
from recsys_assets.ml import als as ml_als
from recsys_assets.ml import churn as ml_churn
from recsys_assets.registry import Registry
from recsys_assets.resources.lakehouse import Lakehouse
from recsys_assets.resources.landing import LandingZone
from recsys_assets.resources.mlflow import DAGSTER_RUN_TAG, MlflowResource
from recsys_assets.resources.spark import build_session
from recsys_assets.schemas import CUSTOMERS_COLUMNS, SALES_ORDERS_COLUMNS
from recsys_assets.settings import Settings


class Lake:
    """Writes Delta tables with delta-spark as the assets do, and reads them back for the next
    cell, as a notebook does."""

    def __init__(self, lakehouse: Lakehouse):
        self.lakehouse = lakehouse

    def uri(self, layer: str, table: str) -> str:
        return self.lakehouse.uri(layer, table)

    def save(self, df: DataFrame, layer: str, table: str, mode: str = "overwrite") -> None:
        self.lakehouse.write(df, layer, table, mode, {})

    def save_and_use(self, df: DataFrame, layer: str, table: str, mode: str = "overwrite"):
        """Write the table, and go on with the table written, as the next cell would."""
        self.save(df, layer, table, mode)
        return self.lakehouse.read(layer, table)


def ingest_and_conform(
    spark: SparkSession, lake: Lake, landing: LandingZone
) -> dict[str, DataFrame]:
    """Bronze (every CSV of the landing zone; the tables start empty), silver, and their join."""
    tables = {}
    for spec, columns in (
        (silver.CUSTOMERS, CUSTOMERS_COLUMNS),
        (silver.SALES_ORDERS, SALES_ORDERS_COLUMNS),
    ):
        files = [str(p) for p in landing.files(spec.source)]
        raw = bronze.read_csv_drops(spark, files, columns)
        raw = lake.save_and_use(raw, "bronze", f"{spec.source}_bronze", mode="append")
        rows = spec.typed(raw.withColumn(silver.BRONZE_VERSION, F.lit(0).cast("long")))
        rules = spec.rules_for(silver.SilverConfig())
        applied = expectations.apply(rows, rules, spec.shown, spec.unique)
        print("violations:", {o.name: o.violations for o in applied.outcomes})
        lake.save(applied.quarantine, "silver", f"{spec.source}_quarantine")
        conformed = applied.passing.drop(silver.BRONZE_VERSION)
        tables[spec.source] = lake.save_and_use(conformed, "silver", f"{spec.source}_silver")
        applied.release()
    customers = silver.current_customers(tables["customers"])
    joined = silver.join_customers(tables["sales_orders"], customers)
    tables["joined"] = lake.save_and_use(joined, "silver", "sales_orders_customer_join_min")
    return tables


def recommender(
    spark: SparkSession,
    lake: Lake,
    tracking: MlflowResource,
    tables: dict[str, DataFrame],
    run_id: str,
) -> dict[str, float]:
    """Gold interactions, split, ALS challenger, evaluation, gate, champion, recommendations."""
    interactions = gold.interactions(tables["joined"], gold.InteractionsConfig().window_days)
    interactions = lake.save_and_use(interactions, "gold", "als_interactions_30d")
    split = als.SplitConfig()
    bucket = als.split_bucket(split.seed)
    train = lake.save_and_use(interactions.where(bucket < split.train_percent), "ml", "als_train")
    test = lake.save_and_use(interactions.where(bucket >= split.train_percent), "ml", "als_test")

    config = als.ALSConfig()
    train.count()  # as als_challenger does, to refuse an empty training set
    with mlflow_run(
        experiment_id=tracking.experiment_id(als.EXPERIMENT), run_name="als_challenger"
    ):
        log_params(config.model_dump())
        tracking.log_table(lake.lakehouse, "ml", "als_train", "training")
        model = als.als_pipeline(config).fit(train)
        version = als.register_challenger(model, train, tracking, run_id)

    # A fresh home has no champion: the challenger is the one model evaluated.
    data = ml_als.held_out(train, test)
    with mlflow_run(experiment_id=tracking.experiment_id(als.EXPERIMENT), run_name="evaluation"):
        for table in ("als_train", "als_test"):
            tracking.log_table(lake.lakehouse, "ml", table, "evaluation")
        results = ml_als.evaluate_models({"challenger": model}, data)
        log_param("challenger_model_uri", als.model_uri(version))
        for role, values in results.items():
            log_metrics({f"{role}_{k}": v for k, v in values.items()})
    data.unpersist()
    metrics = results["challenger"]
    rows = [
        (role, int(version) if role == "challenger" else None)
        + tuple(values.get(c) for c in als.EVALUATION_COLUMNS)
        + (run_id,)
        for role, values in results.items()
    ]
    schema = "role string, model_version int, " + ", ".join(
        f"{c} double" for c in als.EVALUATION_COLUMNS
    )
    lake.save(
        spark.createDataFrame(rows, schema + ", dagster_run_id string"), "ml", "als_evaluation"
    )
    models = Registry(tracking.client, als.MODEL_NAME)
    scores = {role: dict(values) for role, values in results.items()}
    models.judge(version, None, scores, als.requirements(als.GateConfig()), run_id)
    models.promote(version, run_id)

    recs = als.recommendations_table(
        model, silver.current_customers(tables["customers"]), tables["sales_orders"], version
    )
    lake.save(recs, "gold", "customer_recommendations")
    return metrics


def churn_model(
    spark: SparkSession,
    lake: Lake,
    tracking: MlflowResource,
    tables: dict[str, DataFrame],
    run_id: str,
) -> float:
    """Features, training set, autologged candidates, gate, champion, batch scoring."""
    customers, orders = tables["customers"], tables["joined"]
    newest = ml_churn.newest_order(orders)
    features = lake.save_and_use(
        ml_churn.customer_features_as_of(ml_churn.current_records(customers), orders, newest),
        "gold",
        "customer_features",
    )
    set_config = churn.ChurnTrainingSetConfig()
    training_set, _, _ = ml_churn.training_set(
        customers,
        orders,
        set_config.horizon_days,
        set_config.split_seed,
        set_config.validation_percent,
        set_config.test_percent,
        set_config.min_history_days,
    )
    counts = training_set.groupBy(ml_churn.SPLIT).agg(F.count(F.lit(1)), F.sum(ml_churn.LABEL))
    print("churn training set:", [tuple(r) for r in counts.collect()])
    pandas = lake.save_and_use(training_set, "ml", "churn_training_set").toPandas()

    splits = ml_churn.split_for_training(pandas, churn.ChurnModelConfig().min_rows)
    tags = {DAGSTER_RUN_TAG: run_id}
    experiment = tracking.experiment_id(churn.EXPERIMENT)
    with mlflow_run(experiment_id=experiment, run_name="churn_candidates", tags=tags) as parent:
        tracking.log_table(lake.lakehouse, "ml", "churn_training_set", "training")
        log_params(
            {
                "train_rows": len(splits.train),
                "validation_rows": len(splits.validation),
                "test_rows": len(splits.test),
                "candidates": ",".join(ml_churn.candidate_pipelines()),
            }
        )
        trained = churn.train_candidates(splits, parent.info.experiment_id, tags)
        log_metric(ml_churn.AUC_TAG, trained.best.roc_auc)
        set_tag("best_candidate", trained.best.name)
        version = str(register_model(trained.model_uri, churn.MODEL_NAME).version)
        churn.evaluate_on_test(trained.model_uri, splits.test)
    Registry(tracking.client, churn.MODEL_NAME).mark_challenger(version, run_id, "churn_model")
    churn.evaluate_gate(run_id, tracking, version, splits.test)
    churn.promote(version, run_id, tracking)

    scored = churn.score_customers(tracking, features.toPandas())
    lake.save(spark.createDataFrame(scored), "gold", "churn_predictions")
    return trained.best.roc_auc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write timings as JSON here")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    settings = Settings.from_env()
    spark = build_session(settings.spark_master, settings.spark_remote, settings.spark_conf)
    tracking: MlflowResource = build_resources(settings)["mlflow"]  # type: ignore[assignment]
    tracking.setup_for_execution(None)  # type: ignore[arg-type]  # sets the tracking URIs
    lake = Lake(build_resources(settings)["lakehouse"])  # type: ignore[arg-type]
    run_id = str(uuid.uuid4())  # stands in for the Dagster run id on gate verdicts

    tables = ingest_and_conform(spark, lake, LandingZone(root=str(settings.landing_dir)))
    als_metrics = recommender(spark, lake, tracking, tables, run_id)
    auc = churn_model(spark, lake, tracking, tables, run_id)
    done = time.perf_counter()
    print(
        f"ALS rmse {als_metrics['rmse']:.4f} ndcg@10 {als_metrics['ndcg_at_10']:.4f}; "
        f"churn AUC {auc:.4f}"
    )
    if args.out:
        args.out.write_text(json.dumps({"seconds": done - start}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
