"""The recommender's assets: split, challenger, evaluation and its gate, champion, batch.

Thin wiring over ``recsys_assets.ml.als`` (the model code) and ``recsys_assets.registry`` (the
champion/challenger protocol). Batch recommendations read ``@champion`` at run time and do not
sit below the gate, so a blocked challenger never stops the day's scoring.
"""

import os
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import pyspark
from mlflow import log_metrics, log_param, log_params
from mlflow.models import infer_signature
from mlflow.version import VERSION as mlflow_version
from pydantic import Field
from pyspark.ml import Pipeline, PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_assets.assets.silver import current_customers
from recsys_assets.ml import als as ml
from recsys_assets.ml import recommender
from recsys_assets.ml.als import RANKING_METRICS, K, split_bucket
from recsys_assets.registry import LIMIT, Registry, Requirement, Serving, registered_version
from recsys_assets.resources.lakehouse import Lakehouse
from recsys_assets.resources.mlflow import MlflowResource
from recsys_assets.settings import BATCH_FRESHNESS_WINDOW
from recsys_assets.tables import GOLD, ML, in_layer

MODEL_NAME = "als_recommendation_model"
# What MLflow's scoring server serves: the champion's factors as a pyfunc, no Spark needed.
SERVING = Serving("als_recommender", tag="als_version")
SERVING_EXPERIMENT = "recsys/serving"  # the runs that log serving models, of both models
EXPERIMENT = "recsys/als_recommendation"
GROUP = "als_model"
PIP_REQUIREMENTS = [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow_version}"]
SERVING_REQUIREMENTS = [f"mlflow=={mlflow_version}", f"numpy=={np.__version__}"]
# Batch scoring runs after every other ready step of a run (the in-process executor picks
# ready steps by this priority), so it follows a promotion in the same run, yet it does not
# depend on the champion asset, which a failed gate would skip.
SCORE_LAST = {"dagster/priority": "-1"}
# The batch tables are expected fresh every day (the UI shows it; settings.py sets the window).
BATCH_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=BATCH_FRESHNESS_WINDOW)

__all__ = ["split_bucket"]  # re-exported for tests and benchmarks


def model_uri(version: str) -> str:
    return f"models:/{MODEL_NAME}/{version}"


def registry(mlflow: MlflowResource) -> Registry:
    return Registry(mlflow.client, MODEL_NAME, SERVING)


# ---------------------------------------------------------------- split


class SplitConfig(dg.Config):
    train_percent: int = 80
    seed: int = 42  # changing it reshuffles every pair: champions trained before become unfair


@dg.multi_asset(
    group_name=GROUP,
    outs={
        "als_train": dg.AssetOut(
            is_required=False,
            kinds={"spark", "delta"},
            metadata=in_layer(ML),
            description="Training interactions: the pairs whose hash falls in the train share.",
        ),
        "als_test": dg.AssetOut(
            is_required=False,
            kinds={"spark", "delta"},
            metadata=in_layer(ML),
            description="Held-out interactions, never seen by any model trained on als_train.",
        ),
    },
    can_subset=True,
)
def als_split(
    context: dg.AssetExecutionContext, config: SplitConfig, als_interactions_30d: DataFrame
):
    """Split the gold interactions 80/20 by a seeded hash of the pair, stable across runs."""
    bucket = split_bucket(config.seed)
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    if "als_train" in selected:
        yield dg.Output(als_interactions_30d.where(bucket < config.train_percent), "als_train")
    if "als_test" in selected:
        yield dg.Output(als_interactions_30d.where(bucket >= config.train_percent), "als_test")


# ---------------------------------------------------------------- challenger


class ALSConfig(dg.Config):
    rank: int = 20
    max_iter: int = 10
    reg_param: float = 0.1
    alpha: float = 1.0
    seed: int = 42
    # ALS partitions users and items into blocks; one per core is fastest (benchmarks/README.md).
    # 0: this machine's core count, right for local[*]; on a cluster set the executor cores.
    num_blocks: int = 0

    @property
    def blocks(self) -> int:
        return self.num_blocks or os.cpu_count() or 2


def als_pipeline(config: ALSConfig) -> Pipeline:
    return ml.als_pipeline(
        rank=config.rank,
        max_iter=config.max_iter,
        reg_param=config.reg_param,
        alpha=config.alpha,
        seed=config.seed,
        blocks=config.blocks,
    )


def register_challenger(
    model: PipelineModel, train: DataFrame, mlflow: MlflowResource, dagster_run_id: str
) -> str:
    """Log the fitted model to the active MLflow run with its signature and an input example,
    register it as a new version with alias ``challenger``; returns the version."""
    example = train.select("customer_id", "product_id").limit(5).toPandas()
    predictions = model.transform(train.sparkSession.createDataFrame(example))
    logged = mlflow.log_spark_model(
        model,
        name="model",
        signature=infer_signature(example, predictions.select("prediction").toPandas()),
        input_example=example,
        registered_model_name=MODEL_NAME,
        pip_requirements=PIP_REQUIREMENTS,  # inferring them starts a second JVM
    )
    version = str(logged.registered_model_version)
    registry(mlflow).mark_challenger(version, dagster_run_id, "als_challenger")
    return version


@dg.asset(group_name=GROUP, kinds={"spark", "mlflow"})
def als_challenger(
    context: dg.AssetExecutionContext,
    config: ALSConfig,
    als_train: DataFrame,
    mlflow: MlflowResource,
    lakehouse: Lakehouse,
) -> dg.MaterializeResult:
    """An implicit-feedback ALS Pipeline fitted on als_train, registered as the challenger."""
    rows = als_train.count()
    if rows == 0:
        raise dg.Failure(
            "als_train is empty: als_interactions_30d has no interactions in its window. "
            "Ingest orders (see the landing folder) or widen window_days."
        )
    with mlflow.start_run(context, "als_challenger", experiment=EXPERIMENT) as run:
        log_params(config.model_dump())
        train = mlflow.log_table(lakehouse, ML, "als_train", "training")
        context.log.info(
            f"Fitting ALS (rank {config.rank}, {config.max_iter} iterations) on {rows} "
            f"interactions of als_train v{train.version}"
        )
        model = als_pipeline(config).fit(als_train)
        version = register_challenger(model, als_train, mlflow, context.run_id)
    return dg.MaterializeResult(
        metadata={
            # The version the gate and the champion act on (registry.registered_version).
            "model_version": dg.MetadataValue.int(int(version)),
            "model_uri": model_uri(version),
            "mlflow_run": mlflow.run_url(run),
            "mlflow_model_version": mlflow.model_version_url(MODEL_NAME, version),
            **train.metadata(),
            **lakehouse.spark.ui_metadata(),
            "train_rows": dg.MetadataValue.int(rows),
            **{k: v for k, v in config.model_dump().items()},
        }
    )


# ---------------------------------------------------------------- evaluation and gate


class EvaluationConfig(dg.Config):
    negative_seed: int = 42  # which never-bought pairs are sampled as preference 0


class RecommendationPolicy(dg.ConfigurableResource):
    """How recommendations are served, and therefore how they are evaluated: one setting that
    als_evaluation (and so the gate) and customer_recommendations both read."""

    exclude_purchased: bool = Field(
        default=True, description="Leave out products the customer already bought."
    )


EVALUATION_COLUMNS = ["rmse", "scored_rows", *RANKING_METRICS]


@dg.asset(
    group_name=GROUP,
    kinds={"spark", "mlflow", "delta"},
    metadata=in_layer(ML),
    deps=[als_challenger],
)
def als_evaluation(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    als_train: DataFrame,
    als_test: DataFrame,
    mlflow: MlflowResource,
    lakehouse: Lakehouse,
    recommendation_policy: RecommendationPolicy,
) -> DataFrame:
    """Challenger, champion and popularity on als_test: preference RMSE and ranking@10 of the
    policy customer_recommendations serves."""
    models = registry(mlflow)
    versions = {"challenger": registered_version(context, "als_challenger")}
    champion = models.champion()
    if champion is not None:
        versions["champion"] = champion

    exclude_purchased = recommendation_policy.exclude_purchased
    data = ml.held_out(als_train, als_test, K, config.negative_seed, exclude_purchased)
    with mlflow.start_run(context, "evaluation", experiment=EXPERIMENT) as run:
        datasets = [
            mlflow.log_table(lakehouse, ML, t, "evaluation") for t in ("als_train", "als_test")
        ]
        loaded = {role: mlflow.load_spark_model(model_uri(v)) for role, v in versions.items()}
        scored = ", ".join(f"{role} v{version}" for role, version in versions.items())
        context.log.info(f"Scoring {scored} and popularity on als_test")
        try:
            results = ml.evaluate_models(loaded, data)
        except ml.NothingToScore as error:
            raise dg.Failure(str(error)) from error
        finally:
            data.unpersist()
        log_param("exclude_purchased", exclude_purchased)
        for role, version in versions.items():
            log_param(f"{role}_model_uri", model_uri(version))
        for role, metrics in results.items():
            log_metrics({f"{role}_{k}": v for k, v in metrics.items()})

    context.add_output_metadata(
        {
            "mlflow_run": mlflow.run_url(run),
            **{k: v for dataset in datasets for k, v in dataset.metadata().items()},
            "exclude_purchased": exclude_purchased,
            **{f"{role}_version": dg.MetadataValue.int(int(v)) for role, v in versions.items()},
            **{
                f"{role}_{k}": dg.MetadataValue.float(v)
                for role, metrics in results.items()
                for k, v in metrics.items()
            },
        }
    )
    rows = [
        (role, int(versions[role]) if role in versions else None)
        + tuple(metrics.get(c) for c in EVALUATION_COLUMNS)
        + (context.run_id,)
        for role, metrics in results.items()
    ]
    schema = "role string, model_version int, " + ", ".join(
        f"{c} double" for c in EVALUATION_COLUMNS
    )
    return als_test.sparkSession.createDataFrame(rows, schema + ", dagster_run_id string")


class GateConfig(dg.Config):
    """What the challenger must meet; every requirement's verdict shows in the check."""

    ndcg_tolerance: float = 0.0  # how far NDCG@10 may fall below the champion's / popularity's
    max_rmse: float | None = None  # an absolute bound on the challenger's preference RMSE
    min_ndcg: float | None = None  # an absolute floor on the challenger's NDCG@10


def requirements(config: GateConfig) -> list[Requirement]:
    """RMSE must beat the champion's; NDCG@10 must not fall below the champion's nor
    popularity's (ties pass); optional absolute bounds."""
    found = [
        Requirement("rmse", "champion", higher_is_better=False, strict=True),
        Requirement("ndcg_at_10", "champion", True, tolerance=config.ndcg_tolerance),
        Requirement("ndcg_at_10", "popularity", True, tolerance=config.ndcg_tolerance),
    ]
    if config.max_rmse is not None:
        found.append(Requirement("rmse", LIMIT, False, limit=config.max_rmse))
    if config.min_ndcg is not None:
        found.append(Requirement("ndcg_at_10", LIMIT, True, limit=config.min_ndcg))
    return found


@dg.asset_check(
    asset=als_evaluation,
    blocking=True,
    description="Challenger RMSE below the champion's; NDCG@10 not below champion's, popularity's.",
)
def rmse_gate(
    context: dg.AssetCheckExecutionContext,
    config: GateConfig,
    als_evaluation: DataFrame,
    mlflow: MlflowResource,
) -> dg.AssetCheckResult:
    by_role = {r["role"]: r.asDict() for r in als_evaluation.collect()}
    scores = {role: {k: row.get(k) for k in EVALUATION_COLUMNS} for role, row in by_role.items()}
    version = str(by_role["challenger"]["model_version"])  # the version that was evaluated
    champion = by_role.get("champion")
    champion_version = str(champion["model_version"]) if champion else None
    decision = registry(mlflow).judge(
        version, champion_version, scores, requirements(config), context.run.run_id
    )
    return decision.check_result(
        challenger_version=int(version), champion_version=champion_version or "none"
    )


@dg.asset(group_name=GROUP, kinds={"mlflow", "spark"}, deps=[als_evaluation])
def als_champion(
    context: dg.AssetExecutionContext,
    mlflow: MlflowResource,
    sales_orders_silver: DataFrame,
    recommendation_policy: RecommendationPolicy,
) -> dg.MaterializeResult:
    """Alias 'champion' moved to this run's challenger once gated; served as als_recommender."""
    version = registered_version(context, "als_challenger")
    models = registry(mlflow)
    previous = models.promote(version, context.run_id)
    with mlflow.start_run(context, SERVING.name, experiment=SERVING_EXPERIMENT) as run:
        served = register_recommender(
            mlflow, version, sales_orders_silver, recommendation_policy.exclude_purchased
        )
    models.serve(version, served)
    context.log.info(f"{SERVING.name} v{served} (from {MODEL_NAME} v{version}) is champion")
    return dg.MaterializeResult(
        metadata={
            "model_version": dg.MetadataValue.int(int(version)),
            "model_uri": f"models:/{MODEL_NAME}@champion",
            "previous_champion_version": previous or "none",
            "serving_model_version": dg.MetadataValue.int(int(served)),
            "serving_model_uri": f"models:/{SERVING.name}@champion",
            "serving_mlflow_run": mlflow.run_url(run),
            "serving_mlflow_model_version": mlflow.model_version_url(SERVING.name, served),
        }
    )


def register_recommender(
    mlflow: MlflowResource, version: str, sales_orders_silver: DataFrame, exclude_purchased: bool
) -> str:
    """Log ``version``'s factors, indexes, purchases and popularity list as the pyfunc
    ``ml.recommender.Recommender`` (in the active run); returns its registered version."""
    model = mlflow.load_spark_model(model_uri(version))
    bought = purchases(sales_orders_silver).select("customer_id", "product_id")
    data = ml.recommender_data(model, bought, exclude_purchased, K)
    log_params({SERVING.tag: version, "exclude_purchased": exclude_purchased, "k": K})
    with tempfile.TemporaryDirectory() as folder:
        path = data.save(Path(folder) / "recommender.npz")
        return mlflow.log_pyfunc(
            recommender.Recommender(),
            SERVING.name,
            artifacts={recommender.ARTIFACT: str(path)},
            signature=recommender.SIGNATURE,
            pip_requirements=SERVING_REQUIREMENTS,
        )


# ---------------------------------------------------------------- batch inference


def purchases(sales_orders_silver: DataFrame) -> DataFrame:
    """(customer_id, product_id, product_name) of every ordered line."""
    return sales_orders_silver.select(
        "customer_id", F.explode("ordered_products").alias("p")
    ).select(
        "customer_id", F.col("p.id").alias("product_id"), F.col("p.name").alias("product_name")
    )


def recommendations_table(
    model: PipelineModel | None,
    customers: DataFrame,
    sales_orders_silver: DataFrame,
    version: str | None,
    exclude_purchased: bool = True,
) -> DataFrame:
    """Top K products per customer with names, source (als or popularity) and model version."""
    bought = purchases(sales_orders_silver).where("customer_id IS NOT NULL")
    recs = ml.recommendations(model, customers, bought, K, exclude_purchased)
    names = bought.groupBy("product_id").agg(F.max("product_name").alias("product_name"))
    return recs.join(names, "product_id", "left").select(
        "customer_id",
        "rank",
        "product_id",
        "product_name",
        "score",
        "source",
        F.lit(int(version) if version else None).cast("int").alias("model_version"),
        F.current_timestamp().alias("generated_at"),
    )


@dg.asset(
    group_name=GROUP,
    kinds={"spark", "mlflow", "delta"},
    metadata=in_layer(GOLD),
    op_tags=SCORE_LAST,
    freshness_policy=BATCH_FRESHNESS,
)
def customer_recommendations(
    context: dg.AssetExecutionContext,
    customers_silver: DataFrame,
    sales_orders_silver: DataFrame,
    mlflow: MlflowResource,
    recommendation_policy: RecommendationPolicy,
) -> DataFrame:
    """Top-10 unbought products per current customer from @champion (popularity if unknown)."""
    champion = registry(mlflow).champion()
    if champion is None:  # popularity is the policy that won the evaluation so far
        context.log.warning(
            f"{MODEL_NAME} has no champion: no model has passed rmse_gate yet, so every "
            "customer gets the popularity list (source=popularity)."
        )
    model = mlflow.load_spark_model(model_uri(champion)) if champion else None
    if champion:  # the scoring itself runs as the table is written
        context.log.info(f"Scoring current customers with {MODEL_NAME} v{champion}")
    # The evaluation left out what each customer bought in training; serving, all they bought.
    table = recommendations_table(
        model,
        current_customers(customers_silver),  # SCD2: the open records
        sales_orders_silver,
        champion,
        recommendation_policy.exclude_purchased,
    )
    context.add_output_metadata(
        {
            "model_version": dg.MetadataValue.int(int(champion)) if champion else "none",
            "exclude_purchased": recommendation_policy.exclude_purchased,
        }
    )
    return table
