"""The served recommender (``ml.recommender``) on hand-made factors with known answers; no Spark.

Also through MLflow: saved as a pyfunc, loaded back, and behind MLflow's own scoring server app
(``mlflow.pyfunc.scoring_server.init``), which answers the same as ``mlflow models serve``.
"""

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import pyfunc
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server

from recsys_assets.ml import ranking, recommender
from recsys_assets.ml.recommender import BadRequest, Recommender, RecommenderData

# Items by model index: "c" (index 1) and "b" (index 2) score the same for every user, so ties
# follow the index (c before b), not the id.
PRODUCTS = ["d", "c", "b", "a"]
ITEMS = [[3.0, 0.0], [2.0, 1.0], [2.0, 1.0], [1.0, 5.0]]
USERS = {10: [1.0, 0.0], 20: [0.0, 1.0], 30: [1.0, 1.0]}  # scores 10: d3 c2 b2 a1; 20: a5 c1 b1 d0
BOUGHT = {
    10: ["d"],
    30: ["a", "b", "c", "d"],  # every product the model knows
    40: ["e", "d"],  # unknown to the model; "e" is not in the model either
    50: ["e"],
}
# Customers who bought each product: d 3, e 2, a 1, b 1, c 1 (ties by id).


def data(exclude_purchased: bool = True, k: int = 3) -> RecommenderData:
    return RecommenderData.build(
        customer_ids=list(USERS),
        user_factors=np.array(list(USERS.values())),
        product_ids=PRODUCTS,
        item_factors=np.array(ITEMS),
        bought=BOUGHT,
        exclude_purchased=exclude_purchased,
        k=k,
    )


def answers(model, ids) -> dict[int, list[tuple[str, float, str]]]:
    frame = model.predict(None, pd.DataFrame({"customer_id": ids}))
    assert list(frame.columns) == ["customer_id", "rank", "product_id", "score", "source"]
    found: dict[int, list[tuple[str, float, str]]] = {}
    for customer, rows in frame.groupby("customer_id", sort=False):
        assert list(rows["rank"]) == list(range(1, len(rows) + 1))
        found[int(customer)] = list(zip(rows.product_id, rows.score, rows.source, strict=True))
    return found


def test_the_popularity_list_counts_customers_and_breaks_ties_by_id():
    built = data()
    assert list(built.popular_products) == ["d", "e", "a", "b", "c"]
    assert list(built.popular_scores) == [3.0, 2.0, 1.0, 1.0, 1.0]


def ranked(users, seen, k) -> dict[int, list[tuple[int, float]]]:
    """top_k_unseen's answer on ITEMS as {user row: [(item index, score), ...]}."""
    row, item, score, rank = ranking.top_k_unseen(
        np.array(users, dtype="float32"),
        np.array(ITEMS, dtype="float32"),
        [np.array(s, dtype="int64") for s in seen],
        k,
    )
    found: dict[int, list[tuple[int, float]]] = {}
    for r, i, s, n in zip(row, item, score, rank, strict=True):
        found.setdefault(int(r), []).append((int(i), float(s)))
        assert n == len(found[int(r)])  # 1-based, in order
    return found


def test_top_k_unseen_breaks_ties_at_the_cut_by_item_index():
    # Scores of [1, 0]: d3 c2 b2 a1 (indices 0-3). With d seen, the one best is c (index 1),
    # tied with b (index 2); of [0, 1]: a5, then c and b tied at 1.
    assert ranked([[1, 0], [0, 1]], [[0], []], k=1) == {0: [(1, 2.0)], 1: [(3, 5.0)]}
    assert ranked([[1, 0], [0, 1]], [[0], []], k=2) == {
        0: [(1, 2.0), (2, 2.0)],
        1: [(3, 5.0), (1, 1.0)],
    }


def test_top_k_unseen_gives_fewer_when_fewer_are_unseen():
    found = ranked([[1, 0], [1, 1], [0, 1]], [[0, 1, 2], [0, 1, 2, 3], []], k=3)
    assert found == {0: [(3, 1.0)], 2: [(3, 5.0), (1, 1.0), (2, 1.0)]}  # row 1 saw everything
    assert ranked([[0, 1]], [[]], k=10) == {0: [(3, 5.0), (1, 1.0), (2, 1.0), (0, 0.0)]}


def test_top_k_unseen_is_a_full_sort_of_the_unseen_items():
    # Small integer factors: many exact ties, the case a partial sort gets wrong.
    rng = np.random.default_rng(3)
    users = rng.integers(-2, 3, size=(200, 3)).astype("float32")
    items = rng.integers(-2, 3, size=(40, 3)).astype("float32")
    seen = [rng.choice(40, size=rng.integers(0, 38), replace=False) for _ in users]
    row, item, score, rank = ranking.top_k_unseen(users, items, seen, 7)
    for r in range(len(users)):
        scores = (users[r].astype(float) @ items.T.astype(float)).tolist()
        unseen = [i for i in range(40) if i not in set(seen[r])]
        expected = sorted(unseen, key=lambda i: (-scores[i], i))[:7]
        assert item[row == r].tolist() == expected
        assert score[row == r].tolist() == [scores[i] for i in expected]
        assert rank[row == r].tolist() == list(range(1, len(expected) + 1))


def test_known_customers_get_their_best_unbought_products_ties_by_model_index():
    found = answers(Recommender().use(data()), [10, 20])
    assert found[10] == [("c", 2.0, "als"), ("b", 2.0, "als"), ("a", 1.0, "als")]  # d bought
    assert found[20] == [("a", 5.0, "als"), ("c", 1.0, "als"), ("b", 1.0, "als")]


def test_without_exclusion_bought_products_are_recommended_too():
    found = answers(Recommender().use(data(exclude_purchased=False)), [10, 40])
    assert found[10] == [("d", 3.0, "als"), ("c", 2.0, "als"), ("b", 2.0, "als")]
    assert found[40] == [
        ("d", 3.0, "popularity"),
        ("e", 2.0, "popularity"),
        ("a", 1.0, "popularity"),
    ]


def test_unknown_customers_get_the_most_bought_products_they_have_not_bought():
    found = answers(Recommender().use(data()), [99, 40])
    assert found[99] == [
        ("d", 3.0, "popularity"),
        ("e", 2.0, "popularity"),
        ("a", 1.0, "popularity"),
    ]
    assert found[40] == [
        ("a", 1.0, "popularity"),
        ("b", 1.0, "popularity"),
        ("c", 1.0, "popularity"),
    ]


def test_a_known_customer_left_with_nothing_gets_the_popularity_list():
    assert answers(Recommender().use(data()), [30]) == {30: [("e", 2.0, "popularity")]}


def test_ids_are_answered_once_each_in_request_order_and_k_caps_the_list():
    model = Recommender().use(data(k=2))
    frame = model.predict(None, pd.DataFrame({"customer_id": [20, 99, 20]}))
    assert list(frame.customer_id) == [20, 20, 99, 99]
    assert list(frame.product_id) == ["a", "c", "d", "e"]
    assert frame.dtypes.to_dict() == {
        "customer_id": np.dtype("int64"),
        "rank": np.dtype("int32"),
        "product_id": np.dtype("O"),
        "score": np.dtype("float64"),
        "source": np.dtype("O"),
    }
    empty = model.predict(None, pd.DataFrame({"customer_id": pd.Series([], dtype="int64")}))
    assert len(empty) == 0 and list(empty.columns) == recommender.OUTPUT_COLUMNS


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"customer_id": [10], "user": [1]}), r"Unknown column\(s\) \['user'\]"),
        (pd.DataFrame({"customer": [10]}), r"Unknown column\(s\) \['customer'\]"),
        (pd.DataFrame({"customer_id": ["ten"]}), "customer_id must be an integer, got 'ten'"),
        (pd.DataFrame({"customer_id": [10.5]}), "customer_id must be an integer, got 10.5"),
        (pd.DataFrame({"customer_id": [10, None]}), "customer_id must be an integer, got nan"),
        (pd.DataFrame({"customer_id": [True]}), "customer_id must be an integer, got True"),
    ],
)
def test_anything_but_integer_customer_ids_is_a_bad_request(frame, message):
    with pytest.raises(BadRequest, match=message) as raised:
        Recommender().use(data()).predict(None, frame)
    assert raised.value.get_http_status_code() == 400


def test_the_data_survives_a_save_and_the_model_a_round_trip_through_mlflow(tmp_path):
    saved = data(k=3).save(tmp_path / "recommender.npz")
    assert RecommenderData.load(saved).k == 3
    pyfunc.save_model(
        tmp_path / "model",
        python_model=Recommender(),
        artifacts={recommender.ARTIFACT: str(saved)},
        signature=recommender.SIGNATURE,
    )
    loaded = pyfunc.load_model(str(tmp_path / "model"))
    assert loaded.metadata.get_input_schema() is None  # checked by predict: see the module doc
    frame = loaded.predict(pd.DataFrame({"customer_id": [10, 99]}))
    expected = Recommender().use(data(k=3)).predict(None, pd.DataFrame({"customer_id": [10, 99]}))
    pd.testing.assert_frame_equal(frame, expected)
    with pytest.raises(MlflowException, match=r"Unknown column\(s\) \['x'\]"):
        loaded.predict(pd.DataFrame({"customer_id": [10], "x": [1]}))

    client = TestClient(scoring_server.init(loaded))
    ok = client.post("/invocations", json={"dataframe_records": [{"customer_id": 10}]})
    assert ok.status_code == 200, ok.text
    assert [(r["rank"], r["product_id"]) for r in ok.json()["predictions"]] == [
        (1, "c"),
        (2, "b"),
        (3, "a"),
    ]
    for body, message in [
        ({"dataframe_records": [{"customer_id": 10, "x": 1}]}, "Unknown column"),
        ({"dataframe_records": [{"customer_id": "ten"}]}, "must be an integer"),
        ({"records": [{"customer_id": 10}]}, "dataframe_records"),
    ]:
        refused = client.post("/invocations", json=body)
        assert refused.status_code == 400, (body, refused.text)
        assert message in refused.json()["message"]
    broken = client.post(
        "/invocations",
        content=b'{"dataframe_records": [',
        headers={"Content-Type": "application/json"},
    )
    assert broken.status_code == 400 and "message" in json.loads(broken.text)


def test_an_artifact_that_stored_product_ids_per_pair_loads_and_answers_the_same(tmp_path):
    # Served versions built before purchases were stored as positions; a rollback serves them.
    built = data()
    old = {f: getattr(built, f) for f in built.__dataclass_fields__}
    old["bought_products"] = built.popular_products[built.bought_products]  # ids, as then
    np.savez(tmp_path / "old.npz", **{name: np.asarray(value) for name, value in old.items()})

    loaded = RecommenderData.load(tmp_path / "old.npz")

    assert loaded.bought_products.tolist() == built.bought_products.tolist()
    ids = [10, 20, 30, 40, 99]
    assert answers(Recommender().use(loaded), ids) == answers(Recommender().use(built), ids)
