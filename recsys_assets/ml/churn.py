"""Churn: point-in-time customer features, labels, splits and the scikit-learn candidates.

The label: a customer churned if they placed no order in the ``horizon_days`` after the
features' cutoff ``as_of``. Features use the SCD2 customer record valid at ``as_of`` and only
orders up to it, so a training row sees nothing a prediction made at ``as_of`` could not.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

LABEL = "churned"
SPLIT = "split"
TRAIN, VALIDATION, TEST = "train", "validation", "test"
DAY = 86_400  # seconds

# Tags on a registered model version: its validation AUC and the candidate it came from.
AUC_TAG = "val_roc_auc"
CANDIDATE_TAG = "candidate"

# customer_features: (name, Spark type, description). Order counts, spend and basket features
# are 0 for a customer without orders before the cutoff; see days_since_last_order.
FEATURE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("customer_id", "bigint", "Key: one row per customer with a record valid at as_of."),
    ("as_of", "timestamp", "The cutoff: only orders at or before it are counted."),
    ("state", "string", "Customer attribute: state, from the record valid at as_of."),
    ("loyalty_segment", "int", "Customer attribute: loyalty segment, 0 (low) to 3 (high)."),
    (
        "units_purchased",
        "int",
        "Customer attribute: units purchased, from the record valid at as_of.",
    ),
    ("order_count", "bigint", "Frequency: orders before the cutoff."),
    ("orders_last_14d", "bigint", "Frequency: orders in the 14 days before the cutoff."),
    ("orders_last_30d", "bigint", "Frequency: orders in the 30 days before the cutoff."),
    ("orders_prev_30d", "bigint", "Frequency trend: orders 30 to 60 days before the cutoff."),
    (
        "days_since_last_order",
        "double",
        "Recency in days; without orders, the days from the first order in the data to the cutoff.",
    ),
    ("days_since_first_order", "double", "Tenure in the data: days since the first order."),
    ("total_spend", "double", "Monetary: sum of price * qty over the orders."),
    ("spend_last_30d", "double", "Monetary: spend in the 30 days before the cutoff."),
    ("avg_order_value", "double", "Monetary: mean order value."),
    ("avg_line_items", "double", "Basket: mean number of line items per order."),
    ("avg_units_per_order", "double", "Basket: mean quantity per order."),
    ("distinct_products", "int", "Basket: distinct products ever ordered."),
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("state",)
NUMERIC_FEATURES: tuple[str, ...] = tuple(
    name
    for name, _, _ in FEATURE_COLUMNS
    if name not in ("customer_id", "as_of", *CATEGORICAL_FEATURES)
)
ZERO_WITHOUT_ORDERS: tuple[str, ...] = (
    "order_count", "orders_last_14d", "orders_last_30d", "orders_prev_30d",
    "days_since_first_order", "total_spend", "spend_last_30d", "avg_order_value",
    "avg_line_items", "avg_units_per_order", "distinct_products",
)  # fmt: skip


TRAINING_COLUMNS = (
    *FEATURE_COLUMNS,
    (LABEL, "int", "Label: 1 if the customer placed no order in the horizon after as_of."),
    (SPLIT, "string", "train, validation or test: a later time slice, or a customer hash."),
)
PREDICTION_COLUMNS = (
    ("customer_id", "bigint", "Key: one row per current customer."),
    ("churn_probability", "double", "The champion's probability of no order in the horizon."),
    ("model_version", "bigint", "Version of the registered model churn_model that scored."),
    ("scored_at", "timestamp", "When the batch was scored (UTC)."),
)


# --------------------------------------------------------------------------- Spark features


def seconds_of_iso(value: str) -> int:
    """An ISO-8601 date or time as unix seconds; a value without a zone is UTC."""
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp())


def iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat()


def newest_order(orders: DataFrame) -> int | None:
    """Unix seconds of the newest order, or None without orders."""
    return orders.agg(F.max(F.unix_seconds("order_datetime"))).first()[0]


def order_facts(orders: DataFrame) -> DataFrame:
    """One row per order of a known customer: its time (unix seconds), value and basket."""
    products = F.col("ordered_products")
    value = F.aggregate(
        products, F.lit(0.0), lambda acc, p: acc + F.coalesce(p["price"] * p["qty"], F.lit(0.0))
    )
    units = F.aggregate(
        products,
        F.lit(0).cast("long"),
        lambda acc, p: acc + F.coalesce(p["qty"].cast("long"), F.lit(0).cast("long")),
    )
    return orders.where("customer_id IS NOT NULL AND order_datetime IS NOT NULL").select(
        "customer_id",
        F.unix_seconds("order_datetime").alias("ts"),
        F.coalesce(value, F.lit(0.0)).alias("order_value"),
        F.coalesce(units, F.lit(0).cast("long")).alias("units"),
        F.coalesce(F.array_size(products), F.lit(0)).alias("line_items"),
        products["id"].alias("product_ids"),
    )


def records_valid_at(customers: DataFrame, as_of: int) -> DataFrame:
    """SCD2: each customer's record valid at ``as_of`` (unix seconds), the newest if several:
    ``valid_from <= as_of AND (valid_to IS NULL OR valid_to > as_of)``."""
    at = F.timestamp_seconds(F.lit(as_of))
    valid = customers.where(
        (F.col("valid_from") <= at) & (F.col("valid_to").isNull() | (F.col("valid_to") > at))
    )
    return newest_record(valid)


def current_records(customers: DataFrame) -> DataFrame:
    """SCD2: each customer's open record (``valid_to IS NULL``), the newest if several."""
    return newest_record(customers.where(F.col("valid_to").isNull()))


def newest_record(customers: DataFrame) -> DataFrame:
    order = Window.partitionBy("customer_id").orderBy(F.desc("valid_from"))
    return customers.withColumn("_n", F.row_number().over(order)).where("_n = 1").drop("_n")


def customer_features_as_of(customers: DataFrame, orders: DataFrame, as_of: int) -> DataFrame:
    """One row per customer of ``customers`` (one record each: ``records_valid_at`` or
    ``current_records``): its attributes and RFM/basket features at ``as_of``.

    Only orders at or before ``as_of`` (unix seconds) count. A customer without such orders
    keeps their row, with zero counts, spend and basket features and the longest recency seen.
    """
    facts = order_facts(orders).where(F.col("ts") <= as_of)
    age = (F.lit(as_of) - F.col("ts")) / DAY  # days before the cutoff

    def within(lo: float, hi: float) -> Column:
        return (age >= lo) & (age < hi)

    per_customer = facts.groupBy("customer_id").agg(
        F.count(F.lit(1)).alias("order_count"),
        F.count(F.when(within(0, 14), 1)).alias("orders_last_14d"),
        F.count(F.when(within(0, 30), 1)).alias("orders_last_30d"),
        F.count(F.when(within(30, 60), 1)).alias("orders_prev_30d"),
        F.min(age).alias("days_since_last_order"),
        F.max(age).alias("days_since_first_order"),
        F.sum("order_value").alias("total_spend"),
        F.sum(F.when(within(0, 30), F.col("order_value")).otherwise(0.0)).alias("spend_last_30d"),
        F.avg("order_value").alias("avg_order_value"),
        F.avg("line_items").alias("avg_line_items"),
        F.avg("units").alias("avg_units_per_order"),
        F.size(F.array_distinct(F.flatten(F.collect_list("product_ids")))).alias(
            "distinct_products"
        ),
    )
    history = facts.agg(((F.lit(as_of) - F.min("ts")) / DAY).alias("_history_days"))
    joined = (
        customers.select("customer_id", "state", "loyalty_segment", "units_purchased")
        .join(per_customer, "customer_id", "left")
        .crossJoin(history)
    )
    zeros = {name: F.coalesce(F.col(name), F.lit(0)) for name in ZERO_WITHOUT_ORDERS}
    recency = F.coalesce(F.col("days_since_last_order"), F.col("_history_days"), F.lit(0.0))
    return joined.select(
        *[
            (
                F.timestamp_seconds(F.lit(as_of))
                if name == "as_of"
                else recency
                if name == "days_since_last_order"
                else zeros.get(name, F.col(name))
            )
            .cast(type_)
            .alias(name)
            for name, type_, _ in FEATURE_COLUMNS
        ]
    )


def with_churn_label(features: DataFrame, orders: DataFrame, horizon_days: int) -> DataFrame:
    """``churned`` = 1 if the customer placed no order in (as_of, as_of + horizon_days]."""
    window = features.select("customer_id", F.unix_seconds("as_of").alias("_as_of"))
    active = (
        window.join(order_facts(orders).select("customer_id", "ts"), "customer_id")
        .where(
            (F.col("ts") > F.col("_as_of")) & (F.col("ts") <= F.col("_as_of") + horizon_days * DAY)
        )
        .select("customer_id")
        .distinct()
        .withColumn("_active", F.lit(True))
    )
    return (
        features.join(active, "customer_id", "left")
        .withColumn(LABEL, F.when(F.col("_active"), 0).otherwise(1).cast("int"))
        .drop("_active")
    )


def with_split(df: DataFrame, seed: int, percents: dict[str, int]) -> DataFrame:
    """A stable split by a hash of the customer: ``percents`` (summing to 100) per split name,
    and the same customer lands on the same side every run."""
    bucket = F.pmod(F.xxhash64("customer_id", F.lit(seed)), 100)
    split, low = None, 0
    for name, share in percents.items():
        condition = bucket < low + share
        split = F.when(condition, name) if split is None else split.when(condition, name)
        low += share
    return df.withColumn(SPLIT, split)


def training_set(
    customers: DataFrame,
    orders: DataFrame,
    horizon_days: int,
    seed: int,
    validation_percent: int,
    test_percent: int,
    min_history_days: int,
) -> tuple[DataFrame, int, str]:
    """Point-in-time features and labels; returns (rows, test cutoff, how the test was chosen).

    The test set is customers as of ``newest - horizon`` (their label is the last horizon of
    the data); train and validation are customers one horizon earlier, split by a hash, if at
    least ``min_history_days`` of orders precede that cutoff ("time"). Otherwise all three are
    hash splits of the one cutoff ("hash").
    """
    bounds = order_facts(orders).agg(F.min("ts"), F.max("ts")).first()
    if bounds is None or bounds[1] is None:
        raise Unlearnable("There are no orders: nothing to label.")
    oldest, newest = bounds
    test_as_of = newest - horizon_days * DAY
    early_as_of = test_as_of - horizon_days * DAY

    def slice_at(as_of: int) -> DataFrame:
        features = customer_features_as_of(records_valid_at(customers, as_of), orders, as_of)
        return with_churn_label(features, orders, horizon_days)

    if early_as_of - oldest >= min_history_days * DAY:
        early = with_split(
            slice_at(early_as_of),
            seed,
            {VALIDATION: validation_percent, TRAIN: 100 - validation_percent},
        )
        late = slice_at(test_as_of).withColumn(SPLIT, F.lit(TEST))
        return early.unionByName(late), test_as_of, "time"
    percents = {VALIDATION: validation_percent, TEST: test_percent}
    percents[TRAIN] = 100 - validation_percent - test_percent
    return with_split(slice_at(test_as_of), seed, percents), test_as_of, "hash"


# --------------------------------------------------------------------------- scikit-learn


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns with stable dtypes: floats, and strings for categories."""
    features = frame[[*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]].copy()
    features[list(NUMERIC_FEATURES)] = features[list(NUMERIC_FEATURES)].astype("float64")
    for name in CATEGORICAL_FEATURES:
        features[name] = features[name].astype(object).where(features[name].notna(), "unknown")
        features[name] = features[name].astype(str)
    return features


def preprocessor(scale: bool) -> ColumnTransformer:
    numeric = [("impute", SimpleImputer(strategy="median"))]
    if scale:
        numeric.append(("scale", StandardScaler()))
    return ColumnTransformer(
        [
            ("numeric", Pipeline(numeric), list(NUMERIC_FEATURES)),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ]
    )


def candidate_pipelines() -> dict[str, Pipeline]:
    """The candidates: deterministic, so identical data gives identical models and AUCs."""
    return {
        "logistic_regression": Pipeline(
            [("prep", preprocessor(scale=True)), ("model", LogisticRegression(max_iter=2000))]
        ),
        # A forest, not HistGradientBoosting: its OpenMP threads crawl on small, CPU-capped
        # machines, and n_jobs=1 keeps the fit single-threaded beside the Spark JVM. Depth 12
        # (at most 4,096 leaves a tree) bounds the model: unbounded, its trees grew with the
        # rows, to gigabytes in the run process (and its pickle) at 10M orders.
        "random_forest": Pipeline(
            [
                ("prep", preprocessor(scale=False)),
                (
                    "model",
                    RandomForestClassifier(
                        n_estimators=200,
                        max_depth=12,
                        min_samples_leaf=5,
                        random_state=0,
                        n_jobs=1,
                    ),
                ),
            ]
        ),
    }


class Unlearnable(ValueError):
    """The training set cannot train or judge a classifier; the message says why."""


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame  # candidates are chosen here
    test: pd.DataFrame  # the gate judges here


def split_for_training(frame: pd.DataFrame, min_rows: int) -> Splits:
    """Train, validation and test frames, or ``Unlearnable`` naming why they cannot be used."""
    # Spark gives rows in no fixed order; sorted, identical data trains identical models.
    frame = frame.sort_values(["as_of", "customer_id"], kind="stable").reset_index(drop=True)
    n = len(frame)
    if n < min_rows:
        raise Unlearnable(
            f"churn_training_set has {n} rows: too few rows to split into train, validation "
            f"and test (at least {min_rows} are needed)."
        )
    classes = sorted(frame[LABEL].dropna().unique().tolist())
    if len(classes) < 2:
        raise Unlearnable(
            f"churn_training_set has a single class ({LABEL}={classes}) in all {n} rows: "
            "a classifier cannot be trained and ROC AUC is undefined."
        )
    parts = {}
    for name in (TRAIN, VALIDATION, TEST):
        part = frame[frame[SPLIT] == name].reset_index(drop=True)
        if part.empty:
            raise Unlearnable(
                f"churn_training_set has no {name} rows among {n}: too few rows to split."
            )
        if part[LABEL].nunique() < 2:
            raise Unlearnable(
                f"The {name} split has a single class ({LABEL}="
                f"{part[LABEL].iloc[0]}) in its {len(part)} rows: too few rows to split "
                "with both classes on each side; ROC AUC would be undefined."
            )
        parts[name] = part
    return Splits(parts[TRAIN], parts[VALIDATION], parts[TEST])


def roc_auc(model, frame: pd.DataFrame) -> float:
    """ROC AUC of a fitted classifier (a Pipeline) on a frame with the label column."""
    return float(roc_auc_score(frame[LABEL], model.predict_proba(model_input(frame))[:, 1]))


@dataclass(frozen=True)
class Candidate:
    name: str
    run_id: str
    roc_auc: float


def candidates_table(candidates: list[Candidate], best: Candidate) -> str:
    rows = [
        f"| {c.name}{' (best)' if c is best else ''} | {c.roc_auc:.4f} | `{c.run_id}` |"
        for c in sorted(candidates, key=lambda c: -c.roc_auc)
    ]
    return "\n".join(["| candidate | validation ROC AUC | MLflow run |", "|---|---|---|", *rows])
