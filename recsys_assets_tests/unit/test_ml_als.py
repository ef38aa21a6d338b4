"""ml.als on hand-made frames with answers worked out by hand."""

import math
import random

import pytest
from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import functions as F

from recsys_assets.ml import als as ml

PAIRS = "customer_id long, product_id string"


def frame(spark, rows, schema=PAIRS):
    return spark.createDataFrame(rows, schema)


def test_first_k_unseen_skips_seen_candidates_and_keeps_the_list_order(spark):
    lists = spark.createDataFrame(
        [(1, [("A", 0.9), ("B", 0.8), ("C", 0.7), ("D", 0.1)]), (2, [("A", 0.5)]), (3, [])],
        "customer_id long, candidates array<struct<product_id: string, score: double>>",
    )
    seen = frame(spark, [(1, "A"), (1, "C"), (2, "B")])

    rows = ml.first_k_unseen(lists, seen, k=2).orderBy("customer_id", "rank").collect()

    assert [(r.customer_id, r.product_id, r.score, r["rank"]) for r in rows] == [
        (1, "B", 0.8, 1),
        (1, "D", 0.1, 2),  # A and C were seen; D moves up to second
        (2, "A", 0.5, 1),  # customer 2 saw only a product not in its list
    ]  # customer 3 had no candidates: no rows


def test_popular_list_orders_by_score_then_id(spark):
    pairs = frame(spark, [(1, "B"), (2, "B"), (1, "C"), (3, "A"), (2, "A"), (4, "D")])

    (row,) = ml.popular_list(pairs, 3).collect()

    assert [(c.product_id, c.score) for c in row.candidates] == [
        ("A", 2.0),
        ("B", 2.0),  # ties with A, after it by id
        ("C", 1.0),  # ties with D, which is beyond n
    ]


def test_ranking_metrics_on_a_known_ranking(spark):
    recommended = frame(
        spark,
        [(1, "A", 1), (1, "B", 2), (2, "C", 1), (2, "D", 2)],
        "customer_id long, product_id string, rank int",
    )
    relevant = frame(spark, [(1, "B"), (2, "E"), (3, "A")])  # user 3: no recommendations

    metrics = ml.ranking_metrics(recommended, relevant, k=2)

    # User 1: one hit at rank 2 of 2 -> precision 1/2, recall 1, NDCG 1/log2(3), AP 1/2.
    # Users 2 and 3: nothing relevant recommended -> 0. Means over the three users.
    assert metrics["precision_at_10"] == pytest.approx(0.5 / 3)
    assert metrics["recall_at_10"] == pytest.approx(1 / 3)
    assert metrics["ndcg_at_10"] == pytest.approx((1 / math.log2(3)) / 3)
    assert metrics["map_at_10"] == pytest.approx(0.5 / 3)


def test_ranking_metrics_are_spark_ranking_evaluators(spark):
    rng = random.Random(3)
    products = [f"P{i}" for i in range(12)]
    recommended, relevant = [], []
    for user in range(40):
        ranked = rng.sample(products, rng.randint(0, 6))  # some users get no list at all
        recommended += [(user, p, rank) for rank, p in enumerate(ranked, start=1)]
        relevant += [(user, p) for p in rng.sample(products, rng.randint(1, 5))]
    recs = frame(spark, recommended, "customer_id long, product_id string, rank int")
    truth = frame(spark, relevant)

    metrics = ml.ranking_metrics(recs, truth, k=4)

    key = F.xxhash64("product_id").cast("double")  # RankingEvaluator wants arrays of doubles
    lists = recs.groupBy("customer_id").agg(
        F.transform(
            F.sort_array(F.collect_list(F.struct("rank", key.alias("key")))), lambda s: s["key"]
        ).alias("prediction")
    )
    labels = truth.groupBy("customer_id").agg(F.collect_set(key).alias("label"))
    scored = labels.join(lists, "customer_id", "left").withColumn(
        "prediction", F.coalesce("prediction", F.array().cast("array<double>"))
    )
    spark_names = ["precisionAtK", "recallAtK", "ndcgAtK", "meanAveragePrecisionAtK"]
    for name, spark_name in zip(ml.RANKING_METRICS, spark_names, strict=True):
        expected = RankingEvaluator(k=4, metricName=spark_name).evaluate(scored)
        assert metrics[name] == pytest.approx(expected, rel=1e-12), name


def test_held_out_keeps_warm_users_and_samples_as_many_never_bought_pairs(spark):
    weight = "customer_id long, product_id string, interaction_weight double"
    train = frame(
        spark,
        [(1, "A", 1.0), (1, "B", 1.0), (2, "A", 1.0), (2, "C", 1.0), (2, "D", 1.0), (2, "E", 1.0)],
        weight,
    )
    test = frame(spark, [(1, "C", 1.0), (1, "D", 1.0), (2, "B", 1.0), (9, "A", 1.0)], weight)

    data = ml.held_out(train, test, k=2, seed=3)
    prefs = data.preferences.collect()

    assert sorted(r.customer_id for r in data.users.collect()) == [1, 2]  # 9: never trained
    assert sorted((r.customer_id, r.product_id) for r in data.relevant.collect()) == [
        (1, "C"),
        (1, "D"),
        (2, "B"),
    ]
    positives = {(r.customer_id, r.product_id) for r in prefs if r.preference == 1.0}
    negatives = [(r.customer_id, r.product_id) for r in prefs if r.preference == 0.0]
    assert positives == {(1, "C"), (1, "D"), (2, "B")}
    # Customer 1 bought A-D, so only E is left: one negative, not two. Customer 2 bought all
    # but nothing in train's catalogue is left: none.
    assert sorted(negatives) == [(1, "E")]
    assert data.candidates == 2 + 4  # k plus customer 2's four training products
    data.unpersist()


def test_sampled_negatives_are_never_bought_seeded_and_as_many_as_positives(spark):
    items = frame(spark, [(0, f"P{i:02d}") for i in range(40)])
    positives = frame(spark, [(1, "P00"), (1, "P01"), (1, "P02"), (2, "P05")])
    bought = positives.unionByName(frame(spark, [(1, "P03")]))

    first = ml.sampled_negatives(positives, items, bought, seed=1).collect()
    again = ml.sampled_negatives(positives.orderBy(F.desc("product_id")), items, bought, 1)
    other = ml.sampled_negatives(positives, items, bought, seed=2).collect()

    pairs = sorted((r.customer_id, r.product_id) for r in first)
    assert [c for c, _ in pairs].count(1) == 3 and [c for c, _ in pairs].count(2) == 1
    assert not set(pairs) & {(r.customer_id, r.product_id) for r in bought.collect()}
    assert pairs == sorted((r.customer_id, r.product_id) for r in again.collect())
    assert pairs != sorted((r.customer_id, r.product_id) for r in other)


def test_preference_rmse_uses_only_rows_every_model_scored(spark):
    schema = "customer_id long, product_id string, preference double, prediction double"
    a = frame(spark, [(1, "A", 1.0, 0.5), (1, "B", 0.0, 0.5), (2, "C", 1.0, 1.0)], schema)
    b = frame(spark, [(1, "A", 1.0, 1.0), (1, "B", 0.0, 0.0)], schema)  # could not score (2, C)

    rmse, rows = ml.preference_rmse({"a": a, "b": b})

    assert rows == 2
    assert rmse == {"a": pytest.approx(0.5), "b": pytest.approx(0.0)}  # (2, C) left out for a
    with pytest.raises(ml.NothingToScore):
        ml.preference_rmse({"a": a, "none": b.limit(0)})


def test_popular_products_count_distinct_customers_with_ties_by_id(spark):
    pairs = frame(spark, [(1, "B"), (1, "B"), (2, "B"), (1, "A"), (2, "C"), (3, "C"), (3, "A")])

    top = [(r.product_id, r.score) for r in ml.popular_products(pairs, 2).collect()]

    assert top == [("A", 2.0), ("B", 2.0)]  # B counted once for customer 1; C ties, loses on id


def test_popularity_baseline_metrics_on_a_known_case(spark):
    weight = "customer_id long, product_id string, interaction_weight double"
    train = frame(spark, [(1, "A", 1.0), (2, "A", 1.0), (2, "B", 1.0), (3, "C", 1.0)], weight)
    test = frame(spark, [(1, "B", 1.0), (3, "A", 1.0)], weight)

    metrics = ml.popularity_metrics(ml.held_out(train, test, k=1), k=1)

    # Popularity: A (2 customers), then B and C (1 each; B first by id). Unbought top 1:
    # customer 1 -> B (a hit), customer 3 -> A (a hit).
    assert metrics["precision_at_10"] == pytest.approx(1.0)
    assert metrics["ndcg_at_10"] == pytest.approx(1.0)


def test_without_exclusion_the_baseline_may_rank_what_was_bought(spark):
    weight = "customer_id long, product_id string, interaction_weight double"
    train = frame(spark, [(1, "A", 1.0), (2, "A", 1.0), (2, "B", 1.0), (3, "C", 1.0)], weight)
    test = frame(spark, [(1, "B", 1.0), (3, "A", 1.0)], weight)
    data = ml.held_out(train, test, k=1, exclude_purchased=False)

    metrics = ml.popularity_metrics(data, k=1)

    # Everyone's top 1 is A: customer 1 bought it in training (a miss), customer 3 did not and
    # holds it out (a hit). With exclusion both were hits (the test above).
    assert data.candidates == 1  # no room made for training purchases
    assert metrics["precision_at_10"] == pytest.approx(0.5)
    assert metrics["recall_at_10"] == pytest.approx(0.5)


def test_without_a_model_every_customer_gets_the_unbought_popular_products(spark):
    purchases = frame(spark, [(1, "A"), (2, "A"), (2, "B"), (3, "C")])
    customers = spark.createDataFrame([(1,), (2,), (4,)], "customer_id long")

    recs = ml.recommendations(None, customers, purchases, k=2).collect()

    ranked = {(r.customer_id, r.rank): (r.product_id, r.source) for r in recs}
    # Popularity: A (2 customers), then B, C (1 each, by id); each customer's purchases left out.
    assert ranked == {
        (1, 1): ("B", "popularity"),
        (1, 2): ("C", "popularity"),
        (2, 1): ("C", "popularity"),
        (4, 1): ("A", "popularity"),
        (4, 2): ("B", "popularity"),
    }


def test_als_top_k_is_the_models_best_unseen_products(spark):
    pick = random.Random(7)
    weights = [
        (customer, product, float(pick.randint(1, 5)))
        for customer in range(1, 9)
        for product in "ABCDEFGHIJ"
        if pick.random() < 0.4
    ]
    train = spark.createDataFrame(
        weights, "customer_id long, product_id string, interaction_weight double"
    )
    model = ml.als_pipeline(rank=3, max_iter=5, reg_param=0.1, alpha=1.0, seed=1, blocks=1).fit(
        train
    )
    seen = train.select(*ml.PAIR)
    users = spark.createDataFrame([(c,) for c in (*range(1, 9), 99)], "customer_id long")

    top = ml.als_top_k(model, users, seen, k=2)

    # Brute force: every product scored by the factors, the seen ones left out, best two.
    every_pair = users.crossJoin(train.select("product_id").distinct())
    scored = model.transform(every_pair).where("prediction IS NOT NULL").collect()
    bought = {(r.customer_id, r.product_id) for r in seen.collect()}
    expected: dict[int, list[str]] = {}
    for row in sorted(scored, key=lambda r: (-r.prediction, r.item_idx)):
        if (row.customer_id, row.product_id) not in bought:
            expected.setdefault(row.customer_id, []).append(row.product_id)
    got: dict[int, list[str]] = {}
    for row in top.orderBy("customer_id", "rank").collect():
        got.setdefault(row.customer_id, []).append(row.product_id)
    assert set(got) == set(range(1, 9))  # 99 is unknown to the model
    assert got == {customer: products[:2] for customer, products in expected.items()}
