"""The ALS recommender: pipeline, recommendations, the held-out set and its metrics.

Evaluation and serving follow the same rules: products a customer already bought are left out
(unless the policy says otherwise, for both), and customers the model does not know get the
popularity list.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.feature import IndexToString, StringIndexer
from pyspark.ml.recommendation import ALS
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_assets.ml.ranking import top_k_unseen
from recsys_assets.ml.recommender import ALS_SOURCE, POPULARITY_SOURCE, K, RecommenderData

RANKING_METRICS = ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10")  # at K
PAIR = ["customer_id", "product_id"]


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


def first_k_unseen(
    lists: DataFrame, seen: DataFrame, k: int, by: str = "customer_id", item: str = "product_id"
) -> DataFrame:
    """Each row's first ``k`` ``candidates`` (an array of structs with an ``item`` field, best
    first) that are not among its ``seen`` (``by``, ``item``) pairs: one row per kept candidate,
    its fields, and a 1-based ``rank``.

    Filtering each row's array, instead of exploding every candidate and ranking it in a window,
    keeps the work per customer at the size of one short list (no sort of users x candidates).
    """
    seen_sets = seen.groupBy(by).agg(F.collect_set(item).alias("_seen"))
    unseen = F.filter(
        "candidates", lambda c: ~F.coalesce(F.array_contains("_seen", c[item]), F.lit(False))
    )
    return (
        lists.join(seen_sets, by, "left")
        .select(by, F.posexplode(F.slice(unseen, 1, k)).alias("_pos", "_c"))
        .select(by, "_c.*", (F.col("_pos") + 1).alias("rank"))
    )


USERS_PER_BLOCK = 4096  # scored at once in a Python worker: block x catalogue doubles


def als_top_k(model: PipelineModel, users: DataFrame, seen: DataFrame, k: int) -> DataFrame:
    """The model's best ``k`` products not in ``seen`` for each user it knows: customer_id,
    product_id, score, rank; unknown customers and products are skipped.

    Users are scored in blocks against the item factors (products x rank, pandas-sized) in
    ``mapInPandas`` with :func:`top_k_unseen`, the served recommender's own ranking: ties by the
    model's product index, what a user bought masked before the top ``k`` is taken. ALS's
    ``recommendForUserSubset`` would need room for ``k`` plus every purchase per user, about
    the whole catalogue per user on the JVM heap at 10M orders.
    """
    user_indexer, item_indexer, als_model = model.stages
    items = factor_matrix(als_model.itemFactors, len(item_indexer.labels), als_model.rank)
    known = user_indexer.transform(users.select("customer_id").distinct())
    seen_idx = item_indexer.transform(user_indexer.transform(seen.select(*PAIR).distinct()))
    seen_lists = seen_idx.groupBy("user_idx").agg(
        F.collect_list(F.col("item_idx").cast("int")).alias("seen")
    )
    scored_users = (
        known.join(als_model.userFactors, F.col("user_idx") == F.col("id"))
        .join(seen_lists, "user_idx", "left")
        .select("customer_id", "features", "seen")
    )

    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            for start in range(0, len(frame), USERS_PER_BLOCK):
                block = frame.iloc[start : start + USERS_PER_BLOCK]
                factors = np.stack(block["features"].to_numpy()).astype("float32")
                bought = [
                    np.empty(0, dtype="int64") if s is None else np.asarray(s, dtype="int64")
                    for s in block["seen"]
                ]
                row, item, value, rank = top_k_unseen(factors, items, bought, k)
                yield pd.DataFrame(
                    {
                        "customer_id": block["customer_id"].to_numpy()[row],
                        "item_idx": item.astype("int32"),
                        "score": value.astype("float32"),
                        "rank": rank.astype("int32"),
                    }
                )

    # Ids mapped back in the JVM: a string column typed by mapInPandas over Spark Connect is
    # written to Delta as 'string collate UTF8_BINARY', which delta-rs cannot read.
    top = scored_users.mapInPandas(score, "customer_id long, item_idx int, score float, rank int")
    to_product = IndexToString(
        inputCol="item_idx", outputCol="product_id", labels=item_indexer.labels
    )
    return to_product.transform(top).select("customer_id", "product_id", "score", "rank")


def factor_matrix(factors: DataFrame, size: int, rank: int) -> np.ndarray:
    """ALS's (id, features) factors as a float32 [size, rank] matrix in index order."""
    frame = factors.toPandas()
    matrix = np.zeros((size, rank), dtype="float32")
    if len(frame):
        matrix[frame["id"].to_numpy()] = np.stack(frame["features"].to_numpy())
    return matrix


def most_bought(pairs: DataFrame) -> int:
    """The most distinct products one customer has in ``pairs``: room to make when excluding."""
    row = pairs.select(*PAIR).distinct().groupBy("customer_id").count().agg(F.max("count")).first()
    return int(row[0] or 0)


def popular_products(pairs: DataFrame, n: int | None = None) -> DataFrame:
    """The ``n`` (default: all) products bought by the most customers, ties by id:
    product_id, score."""
    ranked = (
        pairs.groupBy("product_id")
        .agg(F.countDistinct("customer_id").cast("double").alias("score"))
        .orderBy(F.desc("score"), "product_id")
    )
    return ranked if n is None else ranked.limit(n)


def best_first(items: Column, item: str, score: str) -> Column:
    """An array of (``item``, ``score``) structs sorted by score, highest first, ties by item."""
    ordered = F.sort_array(
        F.transform(
            items, lambda c: F.struct(-c[score], c[item].alias(item), c[score].alias(score))
        )
    )
    return F.transform(ordered, lambda c: F.struct(c[item].alias(item), c[score].alias(score)))


def popular_list(pairs: DataFrame, n: int) -> DataFrame:
    """One row: ``candidates``, the ``n`` most popular products (product_id, score), best first."""
    products = F.collect_list(F.struct("product_id", "score"))
    return popular_products(pairs, n).agg(
        best_first(products, "product_id", "score").alias("candidates")
    )


def ranking_metrics(recommended: DataFrame, relevant: DataFrame, k: int) -> dict[str, float]:
    """precision/recall/NDCG/MAP@k of ranked recommendations against each user's relevant items,
    as Spark's ``RankingMetrics`` defines them (binary relevance), in one aggregation.

    Every user with a relevant item counts (one without recommendations scores 0). One pass
    instead of a ``RankingEvaluator`` pass per metric.
    """
    predictions = recommended.groupBy("customer_id").agg(
        F.transform(
            F.sort_array(F.collect_list(F.struct("rank", "product_id"))), lambda s: s["product_id"]
        ).alias("prediction")
    )
    labels = relevant.groupBy("customer_id").agg(F.collect_set("product_id").alias("label"))
    top = F.slice(F.coalesce("prediction", F.array().cast("array<string>")), 1, k)
    frame = labels.join(predictions, "customer_id", "left").select("label", top.alias("top"))

    def hit(product: Column) -> Column:
        return F.array_contains("label", product)

    def total(values: Column) -> Column:
        return F.aggregate(values, F.lit(0.0), lambda acc, v: acc + v)

    def gain(i: Column) -> Column:  # of a hit at 0-based position i
        return 1.0 / F.log2(i + 2)

    hits = F.size(F.filter("top", hit))
    dcg = total(F.transform("top", lambda p, i: F.when(hit(p), gain(i)).otherwise(0.0)))
    ideal = total(F.transform(F.slice("label", 1, k), lambda _, i: gain(i)))
    precision_at_hits = F.transform(  # precision of the list cut at each hit
        "top",
        lambda p, i: F.when(
            hit(p), F.size(F.filter(F.slice("top", 1, i + 1), hit)) / (i + 1)
        ).otherwise(0.0),
    )
    per_user = {  # the names of RANKING_METRICS
        "precision_at_10": hits / k,
        "recall_at_10": hits / F.size("label"),
        "ndcg_at_10": dcg / ideal,
        "map_at_10": total(precision_at_hits) / F.least(F.size("label"), F.lit(k)),
    }
    [row] = frame.agg(*(F.avg(v).alias(name) for name, v in per_user.items())).collect()
    return {name: math.nan if row[name] is None else float(row[name]) for name in RANKING_METRICS}


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
    recommended = als_top_k(model, data.users, data.seen, k)
    return ranking_metrics(recommended, data.relevant, k)


def popularity_metrics(data: HeldOut, k: int = K) -> dict[str, float]:
    """The baseline: every user gets the most popular products (not bought yet, if the policy
    excludes purchases)."""
    popular = popular_list(data.train, data.candidates)
    recommended = first_k_unseen(data.users.crossJoin(popular), data.seen, k)
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
        known = customers.select(
            "customer_id",
            F.lit(None).cast("string").alias("product_id"),
            F.lit(None).cast("float").alias("score"),
            F.lit(None).cast("int").alias("rank"),
        ).limit(0)
    else:
        known = als_top_k(model, customers, seen, k)
    known = known.withColumn("source", F.lit(ALS_SOURCE))
    cold = customers.join(known.select("customer_id").distinct(), "customer_id", "left_anti")
    popular = first_k_unseen(cold.crossJoin(popular_list(purchases, room)), seen, k)
    return known.unionByName(popular.withColumn("source", F.lit(POPULARITY_SOURCE)))


def recommender_data(
    model: PipelineModel, purchases: DataFrame, exclude_purchased: bool = True, k: int = K
) -> RecommenderData:
    """What the served recommender (``ml.recommender``) holds, from the champion and
    ``purchases`` (customer_id, product_id): the factors in index order, the indexers' labels,
    the popularity list (products x 2) and every distinct (customer, product) pair bought, as
    two integer columns through Arrow: pandas-sized by nature, with no Python object a row."""
    user_indexer, item_indexer, als_model = model.stages
    rank = als_model.rank
    pairs = purchases.where("customer_id IS NOT NULL AND product_id IS NOT NULL")
    pairs = pairs.select(*PAIR).distinct().cache()  # read twice: the popularity list, the pairs
    popular = popular_products(pairs).collect()
    positions = pairs.sparkSession.createDataFrame(
        [(row.product_id, i) for i, row in enumerate(popular)], "product_id string, _pos int"
    )
    bought = pairs.join(F.broadcast(positions), "product_id").select("customer_id", "_pos")
    bought = bought.toPandas()
    pairs.unpersist()
    return RecommenderData(
        customer_ids=np.asarray([int(label) for label in user_indexer.labels], dtype="int64"),
        user_factors=factor_matrix(als_model.userFactors, len(user_indexer.labels), rank),
        product_ids=np.asarray(item_indexer.labels, dtype=str),
        item_factors=factor_matrix(als_model.itemFactors, len(item_indexer.labels), rank),
        bought_customers=bought["customer_id"].to_numpy(dtype="int64"),
        bought_products=bought["_pos"].to_numpy(dtype="int32"),
        popular_products=np.asarray([row.product_id for row in popular], dtype=str),
        popular_scores=np.asarray([row.score for row in popular], dtype="float64"),
        exclude_purchased=exclude_purchased,
        k=k,
    )
