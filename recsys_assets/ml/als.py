"""The ALS recommender: pipeline, recommendations, the held-out set and its metrics.

Evaluation and serving follow the same rules: products a customer already bought are left out
(unless the policy says otherwise, for both), and customers the model does not know get the
popularity list.
"""

from dataclasses import dataclass

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import RankingEvaluator, RegressionEvaluator
from pyspark.ml.feature import IndexToString, StringIndexer
from pyspark.ml.recommendation import ALS
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

K = 10
RANKING_METRICS = {
    "precision_at_10": "precisionAtK",
    "recall_at_10": "recallAtK",
    "ndcg_at_10": "ndcgAtK",
    "map_at_10": "meanAveragePrecisionAtK",
}
PAIR = ["customer_id", "product_id"]
ALS_SOURCE, POPULARITY_SOURCE = "als", "popularity"


class NothingToScore(ValueError):
    """No held-out row can be scored by every model: the comparison would be empty."""


def split_bucket(seed: int) -> Column:
    """0-99 from a hash of the (customer, product) pair: the same pair lands on the same side."""
    return F.pmod(F.xxhash64("customer_id", "product_id", F.lit(seed)), F.lit(100))


def als_pipeline(
    *, rank: int, max_iter: int, reg_param: float, alpha: float, seed: int, blocks: int
) -> Pipeline:
    """Indexers and implicit ALS in one Pipeline, so the logged model owns its id numbering."""
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
                rank=rank,
                maxIter=max_iter,
                regParam=reg_param,
                alpha=alpha,
                seed=seed,
                numUserBlocks=blocks,
                numItemBlocks=blocks,
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
        candidates.join(seen.select(*PAIR).distinct(), PAIR, "left_anti")
        .withColumn("rank", F.row_number().over(window))
        .where(F.col("rank") <= k)
    )


def most_bought(pairs: DataFrame) -> int:
    """The most distinct products one customer has in ``pairs``: room to make when excluding."""
    row = pairs.select(*PAIR).distinct().groupBy("customer_id").count().agg(F.max("count")).first()
    return int(row[0] or 0)


def popular_products(pairs: DataFrame, n: int) -> DataFrame:
    """The ``n`` products bought by the most customers (ties by id): product_id, score."""
    return (
        pairs.groupBy("product_id")
        .agg(F.countDistinct("customer_id").cast("double").alias("score"))
        .orderBy(F.desc("score"), "product_id")
        .limit(n)
    )


def ranking_metrics(recommended: DataFrame, relevant: DataFrame, k: int) -> dict[str, float]:
    """precision/recall/NDCG/MAP@k of ranked recommendations against each user's relevant items.

    Every user with a relevant item counts (one without recommendations scores 0).
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


def sampled_negatives(
    positives: DataFrame, items: DataFrame, bought: DataFrame, seed: int
) -> DataFrame:
    """For each customer, as many products they never bought as they have ``positives``.

    Chosen by a seeded hash of the pair, not ``rand``: the same inputs give the same pairs on
    any partitioning, so every model of an evaluation (and every rerun) sees the same rows.
    """
    wanted = positives.groupBy("customer_id").agg(F.count(F.lit(1)).alias("_wanted"))
    order = Window.partitionBy("customer_id").orderBy(
        F.xxhash64("customer_id", "product_id", F.lit(seed)), "product_id"
    )
    return (
        wanted.crossJoin(items.select("product_id").distinct())
        .join(bought.select(*PAIR).distinct(), PAIR, "left_anti")
        .withColumn("_n", F.row_number().over(order))
        .where(F.col("_n") <= F.col("_wanted"))
        .select(*PAIR)
    )


@dataclass(frozen=True)
class HeldOut:
    """What every evaluated model (and the baseline) is scored on, derived once."""

    train: DataFrame
    users: DataFrame  # test customers also seen in training: those a recommender can rank for
    relevant: DataFrame  # their held-out (customer, product) pairs
    preferences: DataFrame  # relevant pairs (preference 1) and as many never-bought pairs (0)
    candidates: int  # k, plus the most products a user bought in training when they are dropped
    exclude_purchased: bool  # the serving policy evaluated: training purchases left out

    @property
    def seen(self) -> DataFrame:
        """The pairs a ranking leaves out: what each user bought in training, or none."""
        pairs = self.train.select(*PAIR)
        return pairs if self.exclude_purchased else pairs.limit(0)

    def unpersist(self) -> None:
        self.preferences.unpersist()


def held_out(
    train: DataFrame, test: DataFrame, k: int = K, seed: int = 42, exclude_purchased: bool = True
) -> HeldOut:
    users = (
        test.select("customer_id")
        .distinct()
        .join(train.select("customer_id").distinct(), "customer_id")
    )
    relevant = test.select(*PAIR).join(users, "customer_id")
    negatives = sampled_negatives(
        relevant, train, train.select(*PAIR).unionByName(test.select(*PAIR)), seed
    )
    preferences = (
        relevant.withColumn("preference", F.lit(1.0))
        .unionByName(negatives.withColumn("preference", F.lit(0.0)))
        .cache()
    )
    room = k + (most_bought(train) if exclude_purchased else 0)
    return HeldOut(train, users, relevant, preferences, room, exclude_purchased)


def preference_rmse(predictions: dict[str, DataFrame]) -> tuple[dict[str, float], int]:
    """RMSE of each model's ``prediction`` against ``preference`` on the rows *every* model
    scored (implicit ALS drops pairs it cannot score); returns (rmse by name, rows compared)."""
    names = list(predictions)
    common = None
    for name, scored in predictions.items():
        frame = scored.select(*PAIR, "preference", F.col("prediction").alias(f"_p_{name}"))
        common = frame if common is None else common.join(frame, [*PAIR, "preference"])
    assert common is not None
    common = common.cache()
    rows = common.count()
    if rows == 0:
        common.unpersist()
        raise NothingToScore(
            "No held-out row can be scored by every model: none of als_test's customers or "
            "products was seen in training. Regenerate data with more history or a longer window."
        )
    rmse = {
        name: float(
            RegressionEvaluator(
                metricName="rmse", labelCol="preference", predictionCol=f"_p_{name}"
            ).evaluate(common)
        )
        for name in names
    }
    common.unpersist()
    return rmse, rows


def ranking_of(model: PipelineModel, data: HeldOut, k: int = K) -> dict[str, float]:
    """Ranking metrics of a model's top ``k`` products (unseen ones, if the policy excludes
    purchases) for the held-out users."""
    candidates = recommend(model, data.users, data.candidates)
    return ranking_metrics(top_k_unseen(candidates, data.seen, k), data.relevant, k)


def popularity_metrics(data: HeldOut, k: int = K) -> dict[str, float]:
    """The baseline: every user gets the most popular products (not bought yet, if the policy
    excludes purchases)."""
    popular = popular_products(data.train, data.candidates)
    recommended = top_k_unseen(data.users.crossJoin(popular), data.seen, k)
    return ranking_metrics(recommended, data.relevant, k)


def evaluate_models(
    models: dict[str, PipelineModel], data: HeldOut, k: int = K
) -> dict[str, dict[str, float]]:
    """Every model's preference RMSE (on common rows) and ranking@k, plus ``popularity``'s."""
    predictions = {name: model.transform(data.preferences) for name, model in models.items()}
    rmse, rows = preference_rmse(predictions)
    results = {
        name: {"rmse": rmse[name], "scored_rows": float(rows), **ranking_of(model, data, k)}
        for name, model in models.items()
    }
    results[POPULARITY_SOURCE] = popularity_metrics(data, k)
    return results


def recommendations(
    model: PipelineModel | None,
    customers: DataFrame,
    purchases: DataFrame,
    k: int = K,
    exclude_purchased: bool = True,
) -> DataFrame:
    """Top ``k`` products for every customer of ``customers``: customer_id, product_id, score,
    rank, source. ``source`` is ``als`` for customers the model knows and ``popularity`` (the
    most bought products) for the others, and for everyone without a ``model`` (no model has
    beaten the popularity baseline yet); ``purchases`` (customer_id, product_id) are left out
    when ``exclude_purchased``."""
    customers = customers.select("customer_id").distinct()
    seen = purchases.select(*PAIR) if exclude_purchased else purchases.select(*PAIR).limit(0)
    room = k + (most_bought(seen) if exclude_purchased else 0)
    if model is None:
        nothing = F.lit(None)
        scored = customers.select(
            "customer_id",
            nothing.cast("string").alias("product_id"),
            nothing.cast("float").alias("score"),
        ).limit(0)
    else:
        scored = recommend(model, customers, room)
    known = top_k_unseen(scored, seen, k).withColumn("source", F.lit(ALS_SOURCE))
    cold = customers.join(known.select("customer_id").distinct(), "customer_id", "left_anti")
    popular = top_k_unseen(cold.crossJoin(popular_products(purchases, room)), seen, k)
    return known.unionByName(popular.withColumn("source", F.lit(POPULARITY_SOURCE)))
