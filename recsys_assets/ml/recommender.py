"""The served recommender: an MLflow pyfunc answering top-K products for customer ids, no Spark.

At promotion the ALS champion's factors, its id indexes (the StringIndexer labels), what each
customer bought and the popularity list are saved as numpy arrays (``RecommenderData``, one
``.npz`` file) and logged with :class:`Recommender`. ``predict`` follows the rules of
``ml.als.recommendations``, which writes ``customer_recommendations``: the ``k`` best products
by the dot product of the factors, ties by the model's product index (most bought first),
products the customer bought left out when ``exclude_purchased`` (both rank with
:func:`top_k_unseen`); customers the model does
not know (and known ones left with nothing) get the most bought products (ties by id), also
without what they bought.

MLflow's schema enforcement ignores columns a signature does not name (with a warning, in
``mlflow.models.utils._enforce_schema``), so the model declares only its output schema and
checks its input itself: a request with another column, no ``customer_id`` or a non-integer
id is refused with ``INVALID_PARAMETER_VALUE``, which the scoring server answers with 400 and
the message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from recsys_assets.ml.ranking import top_k_unseen

# Shared with ml.als (the batch table follows the same rules); here, since this module must
# load in a scoring server without Spark.
K = 10
ALS_SOURCE, POPULARITY_SOURCE = "als", "popularity"  # the ``source`` of a recommendation
ARTIFACT = "recommender"  # the key of the .npz file among the pyfunc's artifacts
CUSTOMER_ID = "customer_id"
OUTPUT_SCHEMA = Schema(
    [
        ColSpec("long", CUSTOMER_ID),
        ColSpec("integer", "rank"),
        ColSpec("string", "product_id"),
        ColSpec("double", "score"),
        ColSpec("string", "source"),
    ]
)
SIGNATURE = ModelSignature(outputs=OUTPUT_SCHEMA)
OUTPUT_COLUMNS = [spec.name for spec in OUTPUT_SCHEMA.inputs]


class BadRequest(MlflowException):
    """A request the model cannot answer: the scoring server replies 400 with the message."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


@dataclass(frozen=True)
class RecommenderData:
    """What the served recommender holds, as arrays (saved with ``np.savez``, no pickle)."""

    customer_ids: np.ndarray  # int64 [users]: the customer of each user index
    user_factors: np.ndarray  # float32 [users, rank]
    product_ids: np.ndarray  # str [items]: the product of each item index
    item_factors: np.ndarray  # float32 [items, rank]
    # What each customer bought, as (customer, product) pairs in any order; a product as its
    # position in popular_products: 12 bytes a pair (millions of pairs at 10M orders).
    bought_customers: np.ndarray  # int64 [pairs]
    bought_products: np.ndarray  # int32 [pairs]
    popular_products: np.ndarray  # str: every bought product, most customers first, ties by id
    popular_scores: np.ndarray  # float64: how many customers bought each
    exclude_purchased: bool = True
    k: int = K

    def save(self, path: Path) -> Path:
        np.savez(path, **{f.name: np.asarray(getattr(self, f.name)) for f in fields(self)})
        return path

    @classmethod
    def load(cls, path: str | Path) -> RecommenderData:
        with np.load(path, allow_pickle=False) as stored:
            values = {f.name: stored[f.name] for f in fields(cls)}
        values["exclude_purchased"] = bool(values["exclude_purchased"])
        values["k"] = int(values["k"])
        if values["bought_products"].dtype.kind == "U":  # saved before 2026-12-07: product ids
            position = {p: i for i, p in enumerate(values["popular_products"])}
            values["bought_products"] = np.asarray(
                [position[p] for p in values["bought_products"]], dtype="int32"
            )
        return cls(**values)

    @classmethod
    def build(
        cls,
        customer_ids: Sequence[int],
        user_factors: np.ndarray,
        product_ids: Sequence[str],
        item_factors: np.ndarray,
        bought: Mapping[int, Iterable[str]],
        exclude_purchased: bool = True,
        k: int = K,
    ) -> RecommenderData:
        """From factors in index order and each customer's bought products (hand-made data;
        ``ml.als.recommender_data`` builds the same arrays in Spark); the popularity list is
        derived from ``bought``, as ``ml.als.popular_products`` derives it."""
        pairs = sorted({(int(c), str(p)) for c, products in bought.items() for p in products})
        counts = Counter(product for _, product in pairs)
        popular = sorted(counts, key=lambda p: (-counts[p], p))
        position = {p: i for i, p in enumerate(popular)}
        return cls(
            customer_ids=np.asarray(customer_ids, dtype="int64"),
            user_factors=np.asarray(user_factors, dtype="float32"),
            product_ids=np.asarray(product_ids, dtype=str),
            item_factors=np.asarray(item_factors, dtype="float32"),
            bought_customers=np.asarray([c for c, _ in pairs], dtype="int64"),
            bought_products=np.asarray([position[p] for _, p in pairs], dtype="int32"),
            popular_products=np.asarray(popular, dtype=str),
            popular_scores=np.asarray([counts[p] for p in popular], dtype="float64"),
            exclude_purchased=exclude_purchased,
            k=k,
        )


def customer_ids(model_input: pd.DataFrame) -> list[int]:
    """The requested ids, in order and once each; anything but a ``customer_id`` column of
    integers is refused."""
    if not isinstance(model_input, pd.DataFrame):
        raise BadRequest(
            'Expected records with one column, customer_id: {"dataframe_records": '
            '[{"customer_id": 42}]}.'
        )
    return request_ids(model_input, allowed={CUSTOMER_ID})


def request_ids(model_input: pd.DataFrame, allowed: set[str]) -> list[int]:
    """The ``customer_id`` column as ints (in order, once each), other columns among ``allowed``."""
    unknown = [str(c) for c in model_input.columns if c not in allowed]
    if unknown:
        raise BadRequest(
            f"Unknown column(s) {unknown}: the model takes {sorted(allowed)}; "
            f'e.g. {{"dataframe_records": [{{"customer_id": 42}}]}}.'
        )
    if CUSTOMER_ID not in model_input.columns:
        raise BadRequest(f"Missing column customer_id (columns: {list(model_input.columns)}).")
    ids = []
    for value in model_input[CUSTOMER_ID]:
        integral = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            integral = True
        if not integral:
            raise BadRequest(f"customer_id must be an integer, got {value!r}.")
        ids.append(int(value))
    return list(dict.fromkeys(ids))


class Recommender(PythonModel):
    """Top-K products for each requested customer_id: customer_id, rank, product_id, score,
    source (``als`` or ``popularity``)."""

    def load_context(self, context) -> None:
        self.use(RecommenderData.load(context.artifacts[ARTIFACT]))

    def use(self, data: RecommenderData) -> Recommender:
        """Index ``data`` for lookups (also without an MLflow context, for tests)."""
        self.data = data
        self.user_index = {int(c): i for i, c in enumerate(data.customer_ids)}
        item_index = {str(p): i for i, p in enumerate(data.product_ids)}
        # Each popular product's model index; -1 for one the model does not know.
        self.item_of_popular = np.asarray(
            [item_index.get(str(p), -1) for p in data.popular_products], dtype="int64"
        )
        keep = len(data.bought_customers) if data.exclude_purchased else 0
        order = np.argsort(data.bought_customers[:keep], kind="stable")  # by customer: bisect
        self.bought_customers = data.bought_customers[:keep][order]
        self.bought_products = data.bought_products[:keep][order]
        return self

    def bought(self, customer: int) -> np.ndarray:
        """What ``customer`` bought, as positions in popular_products (none without exclusion)."""
        start = np.searchsorted(self.bought_customers, customer, "left")
        end = np.searchsorted(self.bought_customers, customer, "right")
        return self.bought_products[start:end]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frames = [self.recommend(c) for c in customer_ids(model_input)]
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in OUTPUT_DTYPES.items()})
        return pd.concat(frames, ignore_index=True).astype(OUTPUT_DTYPES)

    def recommend(self, customer: int) -> pd.DataFrame:
        found = self.from_factors(customer)
        return found if len(found) else self.popular(customer)

    def from_factors(self, customer: int) -> pd.DataFrame:
        """The model's best ``k`` products not bought, ties by product index; none if unknown."""
        row = self.user_index.get(customer)
        if row is None:
            return answer(customer, [], [], ALS_SOURCE)
        data = self.data
        seen = self.item_of_popular[self.bought(customer)]
        seen = seen[seen >= 0]
        _, best, scores, _ = top_k_unseen(
            data.user_factors[[row]], data.item_factors, [seen], data.k
        )
        return answer(customer, data.product_ids[best], scores, ALS_SOURCE)

    def popular(self, customer: int) -> pd.DataFrame:
        """The most bought products the customer has not bought."""
        data = self.data
        unbought = np.ones(len(data.popular_products), dtype=bool)
        unbought[self.bought(customer)] = False
        keep = np.flatnonzero(unbought)[: data.k]
        return answer(
            customer, data.popular_products[keep], data.popular_scores[keep], POPULARITY_SOURCE
        )


OUTPUT_DTYPES = {
    CUSTOMER_ID: "int64",
    "rank": "int32",
    "product_id": "object",
    "score": "float64",
    "source": "object",
}


def answer(customer: int, products, scores, source: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            CUSTOMER_ID: customer,
            "rank": np.arange(1, len(products) + 1, dtype="int32"),
            "product_id": [str(p) for p in products],
            "score": np.asarray(scores, dtype="float64"),
            "source": source,
        },
        columns=OUTPUT_COLUMNS,
    )
