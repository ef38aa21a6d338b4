"""The recommendation model lifecycle: split, challenger, evaluation, RMSE gate, champion, batch.

The registry is the state between steps, as on Databricks: training sets the ``challenger``
alias, the gate records its verdict on that model version (``validation_status``, as
mlops-stacks does), and ``als_champion`` moves ``champion`` only to a version that passed.
"""

import os
from dataclasses import dataclass
from typing import Literal

import dagster as dg
import pyspark
from mlflow import log_metrics, log_param, log_params
from mlflow.models import infer_signature
from mlflow.version import VERSION as mlflow_version
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import RankingEvaluator, RegressionEvaluator
from pyspark.ml.feature import IndexToString, StringIndexer
from pyspark.ml.recommendation import ALS
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_assets.promotion import GateDecision, decide
from recsys_assets.resources.lakehouse import Lakehouse
from recsys_assets.resources.mlflow import CHALLENGER, CHAMPION, MlflowResource
from recsys_assets.tables import GOLD, ML, in_layer

MODEL_NAME = "als_recommendation_model"
EXPERIMENT = "recsys/als_recommendation"
K = 10
RANKING_METRICS = {
    "precision_at_10": "precisionAtK",
    "recall_at_10": "recallAtK",
    "ndcg_at_10": "ndcgAtK",
    "map_at_10": "meanAveragePrecisionAtK",
}
GROUP = "als_model"
PIP_REQUIREMENTS = [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow_version}"]


def model_uri(version: str) -> str:
    return f"models:/{MODEL_NAME}/{version}"


# ---------------------------------------------------------------- split


class SplitConfig(dg.Config):
    train_percent: int = 80
    seed: int = 42  # changing it reshuffles every pair: champions trained before become unfair


def split_bucket(seed: int) -> Column:
    """0-99 from a hash of the (customer, product) pair: the same pair lands on the same side."""
    return F.pmod(F.xxhash64("customer_id", "product_id", F.lit(seed)), F.lit(100))


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


# ---------------------------------------------------------------- model


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
    """Indexers and ALS in one Pipeline, so the logged model owns its id numbering."""
    return Pipeline(
        stages=[
            StringIndexer(inputCol="customer_id", outputCol="user_idx", handleInvalid="skip"),
            StringIndexer(inputCol="product_id", outputCol="item_idx", handleInvalid="skip"),
            ALS(
                userCol="user_idx",
                itemCol="item_idx",
                ratingCol="interaction_weight",
                implicitPrefs=True,
                coldStartStrategy="drop",
                rank=config.rank,
                maxIter=config.max_iter,
                regParam=config.reg_param,
                alpha=config.alpha,
                seed=config.seed,
                numUserBlocks=config.blocks,
                numItemBlocks=config.blocks,
            ),
        ]
    )


def recommend(model: PipelineModel, users: DataFrame | None, n: int) -> DataFrame:
    """Top ``n`` (customer_id, product_id, score) per user, ids mapped back by the model itself.

    ``users`` (a frame with customer_id) limits the users; unknown customers get nothing.
    """
    user_indexer, item_indexer, als_model = model.stages
    if users is None:
        recs = als_model.recommendForAllUsers(n)
    else:
        recs = als_model.recommendForUserSubset(user_indexer.transform(users), n)
    exploded = recs.select("user_idx", F.explode("recommendations").alias("r")).select(
        "user_idx", F.col("r.item_idx").alias("item_idx"), F.col("r.rating").alias("score")
    )
    to_customer = IndexToString(
        inputCol="user_idx", outputCol="customer_key", labels=user_indexer.labels
    )
    to_product = IndexToString(
        inputCol="item_idx", outputCol="product_id", labels=item_indexer.labels
    )
    mapped = to_product.transform(to_customer.transform(exploded))
    return mapped.select(
        F.col("customer_key").cast("bigint").alias("customer_id"), "product_id", "score"
    )


def top_k_unseen(candidates: DataFrame, seen: DataFrame, k: int) -> DataFrame:
    """Each user's best ``k`` candidates among products not in ``seen``, with a 1-based rank."""
    window = Window.partitionBy("customer_id").orderBy(F.desc("score"), "product_id")
    return (
        candidates.join(
            seen.select("customer_id", "product_id"), ["customer_id", "product_id"], "left_anti"
        )
        .withColumn("rank", F.row_number().over(window))
        .where(F.col("rank") <= k)
    )


def ranking_metrics(recommended: DataFrame, relevant: DataFrame, k: int) -> dict[str, float]:
    """precision/recall/NDCG/MAP@k of ranked recommendations against each user's relevant items.

    RankingEvaluator wants arrays of doubles: products are keyed by a 64-bit hash of their id
    (a collision among even a million products has odds below 1e-4).
    """
    key = F.xxhash64("product_id").cast("double")
    predictions = recommended.groupBy("customer_id").agg(
        F.transform(
            F.sort_array(F.collect_list(F.struct(F.col("rank"), key.alias("key")))),
            lambda s: s["key"],
        ).alias("prediction")
    )
    labels = relevant.groupBy("customer_id").agg(F.collect_set(key).alias("label"))
    frame = (
        labels.join(predictions, "customer_id", "left")
        .withColumn("prediction", F.coalesce("prediction", F.array().cast("array<double>")))
        .cache()
    )
    evaluator = RankingEvaluator(k=k)
    metrics = {
        name: float(evaluator.setMetricName(spark_name).evaluate(frame))
        for name, spark_name in RANKING_METRICS.items()
    }
    frame.unpersist()
    return metrics


@dataclass(frozen=True)
class HeldOut:
    """What every evaluated model (and the baseline) is scored on, derived once."""

    train: DataFrame
    test: DataFrame
    users: DataFrame  # test customers also seen in training: those a recommender can rank for
    relevant: DataFrame  # their held-out (customer, product) pairs
    candidates: int  # k plus the most products a user bought in training: room to drop them


def held_out(train: DataFrame, test: DataFrame, k: int = K) -> HeldOut:
    users = (
        test.select("customer_id")
        .distinct()
        .join(train.select("customer_id").distinct(), "customer_id")
    )
    most_seen = train.groupBy("customer_id").count().agg(F.max("count")).first()
    return HeldOut(train, test, users, test.join(users, "customer_id"), k + int(most_seen[0] or 0))


def evaluate_model(model: PipelineModel, data: HeldOut, k: int = K) -> dict[str, float]:
    """RMSE on the held-out pairs the model can score, and ranking metrics for warm users."""
    scored = model.transform(data.test)
    scored_rows = scored.count()
    if scored_rows == 0:
        raise dg.Failure(
            "The model could score no row of als_test: none of its customers or products was "
            "seen in training. Regenerate data with more history or a longer window."
        )
    rmse = RegressionEvaluator(
        metricName="rmse", labelCol="interaction_weight", predictionCol="prediction"
    ).evaluate(scored)
    candidates = recommend(model, data.users, data.candidates)
    recommended = top_k_unseen(candidates, data.train, k)
    return {
        "rmse": float(rmse),
        "scored_rows": float(scored_rows),
        **ranking_metrics(recommended, data.relevant, k),
    }


def popularity_metrics(data: HeldOut, k: int = K) -> dict[str, float]:
    """The baseline: every user gets the most popular products they have not bought yet."""
    popular = (
        data.train.groupBy("product_id")
        .agg(F.countDistinct("customer_id").alias("score"))
        .orderBy(F.desc("score"), "product_id")
        .limit(data.candidates)
    )
    recommended = top_k_unseen(data.users.crossJoin(popular), data.train, k)
    return ranking_metrics(recommended, data.relevant, k)


def register_challenger(model: PipelineModel, train: DataFrame, mlflow: MlflowResource) -> str:
    """Log the fitted model to the active MLflow run with its signature and an input example,
    register it as a new version with alias ``challenger``; returns the version."""
    example = train.select("customer_id", "product_id").limit(5).toPandas()
    predictions = model.transform(train.sparkSession.createDataFrame(example))
    logged = mlflow.log_spark_model(
        model,
        artifact_path="model",
        signature=infer_signature(example, predictions.select("prediction").toPandas()),
        input_example=example,
        registered_model_name=MODEL_NAME,
        pip_requirements=PIP_REQUIREMENTS,  # inferring them starts a second JVM
    )
    version = str(logged.registered_model_version)
    mlflow.set_alias(MODEL_NAME, CHALLENGER, version)
    return version


def recommendations_table(
    model: PipelineModel, sales_orders_silver: DataFrame, version: str
) -> DataFrame:
    """Every known customer's top K products from ``model``, with names and the model version."""
    recs = recommend(model, None, K).withColumn(
        "rank",
        F.row_number().over(
            Window.partitionBy("customer_id").orderBy(F.desc("score"), "product_id")
        ),
    )
    names = (
        sales_orders_silver.select(F.explode("ordered_products").alias("p"))
        .groupBy(F.col("p.id").alias("product_id"))
        .agg(F.max("p.name").alias("product_name"))
    )
    return recs.join(names, "product_id", "left").select(
        "customer_id",
        "rank",
        "product_id",
        "product_name",
        "score",
        F.lit(int(version)).alias("model_version"),
        F.current_timestamp().alias("generated_at"),
    )


# ---------------------------------------------------------------- assets


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
    train_version = lakehouse.version(ML, "als_train")
    with mlflow.start_run(context, "als_challenger", experiment=EXPERIMENT) as run:
        log_params(config.model_dump())
        log_params(
            {
                "train_table": lakehouse.uri(ML, "als_train"),
                "train_delta_version": -1 if train_version is None else train_version,
                "train_rows": rows,
            }
        )
        version = register_challenger(als_pipeline(config).fit(als_train), als_train, mlflow)
    return dg.MaterializeResult(
        metadata={
            "model_version": dg.MetadataValue.int(int(version)),
            "model_uri": model_uri(version),
            "mlflow_run": mlflow.run_url(run),
            "train_rows": dg.MetadataValue.int(rows),
            **{k: v for k, v in config.model_dump().items()},
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"spark", "mlflow", "delta"},
    metadata=in_layer(ML),
    deps=[als_challenger],
)
def als_evaluation(
    context: dg.AssetExecutionContext,
    als_train: DataFrame,
    als_test: DataFrame,
    mlflow: MlflowResource,
) -> DataFrame:
    """Challenger, champion and a popularity baseline scored on als_test: RMSE and ranking@10."""
    challenger = mlflow.version_with_alias(MODEL_NAME, CHALLENGER)
    if challenger is None:
        raise dg.Failure(f"{MODEL_NAME} has no '{CHALLENGER}' version: materialise als_challenger.")
    champion = mlflow.version_with_alias(MODEL_NAME, CHAMPION)
    evaluated = {"challenger": challenger, **({"champion": champion} if champion else {})}

    data = held_out(als_train, als_test)
    results: list[dict] = []
    with mlflow.start_run(context, "evaluation", experiment=EXPERIMENT) as run:
        for role, version in evaluated.items():
            model = mlflow.load_spark_model(model_uri(version.version))
            metrics = evaluate_model(model, data)
            results.append({"role": role, "model_version": int(version.version), **metrics})
            log_param(f"{role}_model_uri", model_uri(version.version))
        baseline = popularity_metrics(data)
        results.append({"role": "popularity", "model_version": None, "rmse": None, **baseline})
        for result in results:
            log_metrics({f"{result['role']}_{k}": v for k, v in result.items() if is_metric(k, v)})

    context.add_output_metadata(
        {
            "mlflow_run": mlflow.run_url(run),
            "challenger_version": dg.MetadataValue.int(int(challenger.version)),
            **{
                f"{r['role']}_{k}": dg.MetadataValue.float(v)
                for r in results
                for k, v in r.items()
                if is_metric(k, v)
            },
        }
    )
    return evaluation_frame(als_test, results, context.run_id)


def is_metric(key: str, value) -> bool:
    return key not in ("role", "model_version") and value is not None


def evaluation_frame(any_frame: DataFrame, results: list[dict], run_id: str) -> DataFrame:
    columns = ["rmse", "scored_rows", *RANKING_METRICS]
    rows = [(r["role"], r["model_version"], *[r.get(c) for c in columns], run_id) for r in results]
    schema = "role string, model_version int, " + ", ".join(f"{c} double" for c in columns)
    return any_frame.sparkSession.createDataFrame(rows, schema + ", dagster_run_id string")


class GateConfig(dg.Config):
    metric: Literal["rmse", "ndcg_at_10"] = "rmse"
    max_rmse: float | None = None  # with metric rmse: the challenger must also be at most this


def gate_decision(rows: list[dict], config: GateConfig) -> GateDecision:
    by_role = {r["role"]: r for r in rows}
    challenger, champion = by_role["challenger"], by_role.get("champion")
    return decide(
        config.metric,
        challenger[config.metric],
        champion[config.metric] if champion else None,
        higher_is_better=config.metric != "rmse",
        limit=config.max_rmse if config.metric == "rmse" else None,
    )


@dg.asset_check(
    asset=als_evaluation,
    blocking=True,
    description="The challenger must beat the champion's RMSE (or NDCG@10) on als_test.",
)
def rmse_gate(
    context: dg.AssetCheckExecutionContext,
    config: GateConfig,
    als_evaluation: DataFrame,
    mlflow: MlflowResource,
) -> dg.AssetCheckResult:
    rows = [r.asDict() for r in als_evaluation.collect()]
    decision = gate_decision(rows, config)
    by_role = {r["role"]: r for r in rows}
    version = str(by_role["challenger"]["model_version"])
    champion = by_role.get("champion")
    mlflow.record_validation(
        MODEL_NAME,
        version,
        decision,
        context.run.run_id,
        str(champion["model_version"]) if champion else None,
    )
    return decision.check_result(challenger_version=int(version))


@dg.asset(group_name=GROUP, kinds={"mlflow"}, deps=[als_evaluation])
def als_champion(context: dg.AssetExecutionContext, mlflow: MlflowResource) -> dg.MaterializeResult:
    """The registry alias 'champion', moved to the challenger once the gate passed it."""
    version, previous = mlflow.promote_validated(MODEL_NAME, context.run_id)
    return dg.MaterializeResult(
        metadata={
            "model_version": dg.MetadataValue.int(int(version)),
            "model_uri": f"models:/{MODEL_NAME}@{CHAMPION}",
            "previous_champion_version": previous or "none",
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"spark", "mlflow", "delta"},
    metadata=in_layer(GOLD),
    deps=[als_champion],
)
def customer_recommendations(sales_orders_silver: DataFrame, mlflow: MlflowResource) -> DataFrame:
    """Top-10 products per customer from the champion, with product names and model version."""
    champion = mlflow.version_with_alias(MODEL_NAME, CHAMPION)
    if champion is None:
        raise dg.Failure(f"{MODEL_NAME} has no '{CHAMPION}': materialise als_champion first.")
    model = mlflow.load_spark_model(model_uri(champion.version))  # the version we record below
    return recommendations_table(model, sales_orders_silver, champion.version)
