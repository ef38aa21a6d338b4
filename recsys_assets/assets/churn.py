"""Churn: customer features, autologged scikit-learn candidates, the registry, batch inference.

Spark builds one row of features per current customer as of a cutoff; ``toPandas()`` hands
them to scikit-learn ``Pipeline`` candidates, each fitted in its own MLflow run (autologged)
nested under one parent run. The best by validation ROC AUC becomes a new version of the
registered model ``churn_model`` with alias ``challenger``. ``churn_gate`` (a blocking check)
scores challenger and champion on the same validation customers; ``churn_champion`` moves the
``champion`` alias only after the gate passed in the same run; ``churn_predictions`` scores
every current customer with the champion.

The label: a customer churned if they placed no order in the ``horizon_days`` after the cutoff.
The cutoff defaults to the newest order minus ``horizon_days``, so the label window is the
last ``horizon_days`` of the data; predictions use features as of the newest order.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
from mlflow import get_run, log_metric, log_params, register_model, set_tag, start_run
from mlflow import sklearn as mlflow_sklearn
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from recsys_assets.assets.silver import current_customers
from recsys_assets.promotion import decide
from recsys_assets.resources.mlflow import (
    CHALLENGER,
    CHAMPION,
    DAGSTER_RUN_TAG,
    NO_CHAMPION,
    MlflowResource,
)
from recsys_assets.resources.spark import SparkResource
from recsys_assets.tables import GOLD, ML, in_layer

GROUP = "churn_model"
MODEL_NAME = "churn_model"
EXPERIMENT = "recsys/churn_model"
METRIC = "roc_auc"
LABEL = "churned"
SPLIT = "split"
TRAIN, VALIDATION = "train", "validation"
DAY = 86_400  # seconds

# Tags on a registered model version: its validation AUC, and what churn_gate decided about it.
AUC_TAG = "val_roc_auc"
CANDIDATE_TAG = "candidate"
GATE_AUC_TAG = "churn_gate.challenger_roc_auc"

# customer_features: (name, Spark type, description). Order counts, spend and basket features
# are 0 for a customer without orders before the cutoff; see days_since_last_order.
FEATURE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("customer_id", "bigint", "Key: one row per current customer (customers_silver)."),
    ("as_of", "timestamp", "The cutoff: only orders at or before it are counted."),
    ("state", "string", "Customer attribute: state of the current address."),
    ("loyalty_segment", "int", "Customer attribute: loyalty segment, 0 (low) to 3 (high)."),
    ("units_purchased", "int", "Customer attribute: units purchased to date (customer record)."),
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


def column_schema(columns: tuple[tuple[str, str, str], ...]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_, description) for name, type_, description in columns]
    )


TRAINING_COLUMNS = (
    *FEATURE_COLUMNS,
    (LABEL, "int", "Label: 1 if the customer placed no order in the horizon after as_of."),
    (SPLIT, "string", "train or validation, from a hash of customer_id (stable across runs)."),
)
PREDICTION_COLUMNS = (
    ("customer_id", "bigint", "Key: one row per current customer."),
    ("churn_probability", "double", "The champion's probability of no order in the horizon."),
    ("model_version", "bigint", "Version of the registered model churn_model that scored."),
    ("scored_at", "timestamp", "When the batch was scored (UTC)."),
)


# --------------------------------------------------------------------------- Spark features


def unix_seconds(value: str) -> int:
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


def customer_features_as_of(customers: DataFrame, orders: DataFrame, as_of: int) -> DataFrame:
    """One row per customer of ``customers``: attributes and RFM/basket features at ``as_of``.

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


def with_split(df: DataFrame, seed: int, train_percent: int) -> DataFrame:
    """A stable train/validation split: the same customer lands on the same side every run."""
    in_train = F.pmod(F.xxhash64("customer_id", F.lit(seed)), 100) < train_percent
    return df.withColumn(SPLIT, F.when(in_train, TRAIN).otherwise(VALIDATION))


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
        # machines, and n_jobs=1 keeps the fit single-threaded beside the Spark JVM.
        "random_forest": Pipeline(
            [
                ("prep", preprocessor(scale=False)),
                (
                    "model",
                    RandomForestClassifier(
                        n_estimators=200, min_samples_leaf=5, random_state=0, n_jobs=1
                    ),
                ),
            ]
        ),
    }


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame


def split_for_training(frame: pd.DataFrame, min_rows: int) -> Splits:
    """Train and validation frames, or a ``dg.Failure`` naming why the set cannot be learnt."""
    # Spark gives rows in no fixed order; sorted, identical data trains identical models.
    frame = frame.sort_values("customer_id", kind="stable").reset_index(drop=True)
    n = len(frame)
    if n < min_rows:
        raise dg.Failure(
            f"churn_training_set has {n} rows: too few rows to split into train and "
            f"validation (at least {min_rows} are needed)."
        )
    classes = sorted(frame[LABEL].dropna().unique().tolist())
    if len(classes) < 2:
        raise dg.Failure(
            f"churn_training_set has a single class ({LABEL}={classes}) in all {n} rows: "
            "a classifier cannot be trained and ROC AUC is undefined."
        )
    parts = {}
    for name in (TRAIN, VALIDATION):
        part = frame[frame[SPLIT] == name].reset_index(drop=True)
        if part.empty:
            raise dg.Failure(
                f"churn_training_set has no {name} rows among {n}: too few rows to split."
            )
        if part[LABEL].nunique() < 2:
            raise dg.Failure(
                f"The {name} split has a single class ({LABEL}="
                f"{part[LABEL].iloc[0]}) in its {len(part)} rows: too few rows to split "
                "with both classes on each side; ROC AUC would be undefined."
            )
        parts[name] = part
    return Splits(parts[TRAIN], parts[VALIDATION])


def roc_auc(model, frame: pd.DataFrame) -> float:
    """ROC AUC of a fitted classifier (a Pipeline) on a frame with the label column."""
    return float(roc_auc_score(frame[LABEL], model.predict_proba(model_input(frame))[:, 1]))


@dataclass(frozen=True)
class Candidate:
    name: str
    run_id: str
    model_uri: str
    roc_auc: float


def logged_model_uri(run_id: str) -> str:
    """The URI of the model autolog logged in a run (MLflow 3: ``models:/m-<id>``)."""
    outputs = get_run(run_id).outputs
    model_ids = [o.model_id for o in (outputs.model_outputs if outputs else [])]
    if not model_ids:
        raise dg.Failure(f"MLflow autolog logged no model in run {run_id}.")
    return f"models:/{model_ids[-1]}"


def train_candidates(splits: Splits, experiment_id: str, tags: dict[str, str]) -> list[Candidate]:
    """Fit every candidate in its own nested, autologged MLflow run; score it on validation."""
    x_train, y_train = model_input(splits.train), splits.train[LABEL]
    results = []
    mlflow_sklearn.autolog(log_models=True, silent=True)
    try:
        for name, pipeline in candidate_pipelines().items():
            with start_run(
                experiment_id=experiment_id,
                run_name=name,
                nested=True,
                tags={**tags, CANDIDATE_TAG: name},
            ) as run:
                pipeline.fit(x_train, y_train)
                auc = roc_auc(pipeline, splits.validation)
                log_metric(AUC_TAG, auc)
            results.append(Candidate(name, run.info.run_id, logged_model_uri(run.info.run_id), auc))
    finally:
        mlflow_sklearn.autolog(disable=True)
    return results


def candidates_table(candidates: list[Candidate], best: Candidate) -> str:
    rows = [
        f"| {c.name}{' (best)' if c is best else ''} | {c.roc_auc:.4f} | `{c.run_id}` |"
        for c in sorted(candidates, key=lambda c: -c.roc_auc)
    ]
    return "\n".join(["| candidate | validation ROC AUC | MLflow run |", "|---|---|---|", *rows])


def load_version(version: str):
    return mlflow_sklearn.load_model(f"models:/{MODEL_NAME}/{version}")


# --------------------------------------------------------------------------- assets


class CustomerFeaturesConfig(dg.Config):
    horizon_days: int = 30  # the default cutoff is the newest order minus this many days
    cutoff: str | None = None  # ISO-8601 date or time (UTC if no zone); overrides the default


@dg.asset(
    group_name=GROUP,
    kinds={"spark", "delta"},
    metadata={**in_layer(GOLD), "dagster/column_schema": column_schema(FEATURE_COLUMNS)},
)
def customer_features(
    context: dg.AssetExecutionContext,
    config: CustomerFeaturesConfig,
    customers_silver: DataFrame,
    sales_orders_customer_join_min: DataFrame,
) -> DataFrame:
    """Churn features per current customer: recency, frequency, spend, basket, attributes."""
    if config.cutoff:
        as_of = unix_seconds(config.cutoff)
    else:
        newest = newest_order(sales_orders_customer_join_min)
        if newest is None:
            raise dg.Failure("sales_orders_customer_join_min has no orders: no cutoff to use.")
        as_of = newest - config.horizon_days * DAY
    context.log.info(f"customer features as of {iso(as_of)}")
    context.add_output_metadata({"as_of": iso(as_of)})
    return customer_features_as_of(
        current_customers(customers_silver), sales_orders_customer_join_min, as_of
    )


class ChurnTrainingSetConfig(dg.Config):
    horizon_days: int = 30  # the label window after the features' cutoff
    split_seed: int = 42
    train_percent: int = 80


@dg.asset(
    group_name=GROUP,
    kinds={"spark", "delta"},
    metadata={**in_layer(ML), "dagster/column_schema": column_schema(TRAINING_COLUMNS)},
)
def churn_training_set(
    context: dg.AssetExecutionContext,
    config: ChurnTrainingSetConfig,
    customer_features: DataFrame,
    sales_orders_customer_join_min: DataFrame,
) -> DataFrame:
    """Features as of the cutoff, the churn label after it, and a stable train/validation split."""
    as_of = customer_features.agg(F.max(F.unix_seconds("as_of"))).first()[0]
    newest = newest_order(sales_orders_customer_join_min)
    if as_of is None or newest is None:
        raise dg.Failure("customer_features or the orders are empty: nothing to label.")
    label_end = as_of + config.horizon_days * DAY
    if label_end > newest:
        raise dg.Failure(
            f"The label window ({iso(as_of)} + {config.horizon_days} days = {iso(label_end)}) "
            f"ends after the newest order ({iso(newest)}): customers would be labelled churned "
            "without a full horizon to order in. Use an earlier cutoff or a shorter horizon."
        )
    labelled = with_churn_label(
        customer_features, sales_orders_customer_join_min, config.horizon_days
    )
    training_set = with_split(labelled, config.split_seed, config.train_percent)
    counts = {
        r[SPLIT]: (r["rows"], r["churned"])
        for r in training_set.groupBy(SPLIT)
        .agg(F.count(F.lit(1)).alias("rows"), F.sum(LABEL).alias("churned"))
        .collect()
    }
    rows = sum(n for n, _ in counts.values())
    churned = sum(c or 0 for _, c in counts.values())
    context.add_output_metadata(
        {
            "as_of": iso(as_of),
            "train_rows": counts.get(TRAIN, (0, 0))[0],
            "validation_rows": counts.get(VALIDATION, (0, 0))[0],
            "churn_rate": churned / rows if rows else 0.0,
        }
    )
    return training_set


class ChurnModelConfig(dg.Config):
    min_rows: int = 20  # fewer rows than this cannot be split into train and validation


@dg.asset(group_name=GROUP, kinds={"sklearn", "mlflow"})
def churn_model(
    context: dg.AssetExecutionContext,
    config: ChurnModelConfig,
    mlflow: MlflowResource,
    churn_training_set: DataFrame,
) -> dg.MaterializeResult:
    """Autologged scikit-learn candidates; the best by validation AUC registered as challenger."""
    splits = split_for_training(churn_training_set.toPandas(), config.min_rows)
    return register_best_candidate(context, mlflow, splits)


def register_best_candidate(
    context: dg.AssetExecutionContext, tracking: MlflowResource, splits: Splits
) -> dg.MaterializeResult:
    tags = {DAGSTER_RUN_TAG: context.run_id}
    with tracking.start_run(context, run_name="churn_candidates", experiment=EXPERIMENT) as parent:
        log_params(
            {
                "train_rows": len(splits.train),
                "validation_rows": len(splits.validation),
                "features_as_of": str(splits.train["as_of"].iloc[0]),
                "candidates": ",".join(candidate_pipelines()),
            }
        )
        candidates = train_candidates(splits, parent.info.experiment_id, tags)
        best = max(candidates, key=lambda c: c.roc_auc)
        log_metric(AUC_TAG, best.roc_auc)
        set_tag("best_candidate", best.name)
        version = register_model(
            best.model_uri,
            MODEL_NAME,
            tags={AUC_TAG: repr(best.roc_auc), CANDIDATE_TAG: best.name, **tags},
        ).version
        set_tag("registered_version", version)
    tracking.set_alias(MODEL_NAME, CHALLENGER, version)
    context.log.info(f"{MODEL_NAME} v{version} ({best.name}, AUC {best.roc_auc:.4f}) is challenger")
    return dg.MaterializeResult(
        metadata={
            "candidates": dg.MetadataValue.md(candidates_table(candidates, best)),
            "mlflow_run": tracking.run_url(parent),
            "model_version": dg.MetadataValue.int(int(version)),
            "best_candidate": best.name,
            AUC_TAG: dg.MetadataValue.float(best.roc_auc),
            **{f"{AUC_TAG}/{c.name}": dg.MetadataValue.float(c.roc_auc) for c in candidates},
            "train_rows": len(splits.train),
            "validation_rows": len(splits.validation),
        }
    )


@dg.asset_check(
    asset=churn_model,
    blocking=True,
    additional_ins={"churn_training_set": dg.AssetIn("churn_training_set")},
    description="The challenger must beat the champion's ROC AUC on the same validation split.",
)
def churn_gate(
    context: dg.AssetCheckExecutionContext, mlflow: MlflowResource, churn_training_set: DataFrame
) -> dg.AssetCheckResult:
    validation = churn_training_set.where(F.col(SPLIT) == VALIDATION).toPandas()
    return evaluate_gate(context.run.run_id, mlflow, validation)


def evaluate_gate(
    run_id: str, tracking: MlflowResource, validation: pd.DataFrame
) -> dg.AssetCheckResult:
    """Score challenger and champion on ``validation``; record the decision on the challenger."""
    if validation.empty or validation[LABEL].nunique() < 2:
        raise dg.Failure("The validation split needs both classes to compare ROC AUC.")
    challenger = tracking.version_with_alias(MODEL_NAME, CHALLENGER)
    if challenger is None:
        raise dg.Failure(f"{MODEL_NAME} has no {CHALLENGER} version to evaluate.")
    challenger_auc = roc_auc(load_version(challenger.version), validation)
    champion = tracking.version_with_alias(MODEL_NAME, CHAMPION)
    champion_auc = roc_auc(load_version(champion.version), validation) if champion else None
    decision = decide(METRIC, challenger_auc, champion_auc, higher_is_better=True)
    tracking.record_validation(
        MODEL_NAME,
        str(challenger.version),
        decision,
        run_id,
        str(champion.version) if champion else None,
        **{GATE_AUC_TAG: repr(challenger_auc)},
    )
    return decision.check_result(
        challenger_version=int(challenger.version),
        champion_version=int(champion.version) if champion else NO_CHAMPION,
        validation_rows=len(validation),
    )


@dg.asset(group_name=GROUP, kinds={"mlflow"}, deps=[churn_model])
def churn_champion(
    context: dg.AssetExecutionContext, mlflow: MlflowResource
) -> dg.MaterializeResult:
    """The champion alias, moved to the challenger once churn_gate passed it in this run."""
    return promote_gated_challenger(context.run_id, mlflow)


def promote_gated_challenger(run_id: str, tracking: MlflowResource) -> dg.MaterializeResult:
    """Move ``champion`` to the challenger that churn_gate passed in this run."""
    version, previous = tracking.promote_validated(MODEL_NAME, run_id)
    auc = tracking.client.get_model_version(MODEL_NAME, version).tags.get(GATE_AUC_TAG)
    return dg.MaterializeResult(
        metadata={
            "model_version": dg.MetadataValue.int(int(version)),
            "previous_champion_version": previous or NO_CHAMPION,
            AUC_TAG: dg.MetadataValue.float(float(auc)) if auc else "unknown",
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"spark", "delta"},
    metadata={**in_layer(GOLD), "dagster/column_schema": column_schema(PREDICTION_COLUMNS)},
    deps=[churn_champion],
)
def churn_predictions(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    mlflow: MlflowResource,
    customers_silver: DataFrame,
    sales_orders_customer_join_min: DataFrame,
) -> DataFrame:
    """The champion's churn probability for every current customer, from the newest data."""
    as_of = newest_order(sales_orders_customer_join_min)
    if as_of is None:
        raise dg.Failure("sales_orders_customer_join_min has no orders: nothing to score.")
    features = customer_features_as_of(
        current_customers(customers_silver), sales_orders_customer_join_min, as_of
    )
    scored = score_customers(mlflow, features.toPandas())
    context.add_output_metadata(
        {
            "features_as_of": iso(as_of),
            "model_version": dg.MetadataValue.int(int(scored["model_version"].iloc[0]))
            if len(scored)
            else 0,
            "mean_churn_probability": float(scored["churn_probability"].mean())
            if len(scored)
            else 0.0,
        }
    )
    return spark.spark_session.createDataFrame(scored)


def score_customers(tracking: MlflowResource, features: pd.DataFrame) -> pd.DataFrame:
    """customer_id, churn_probability, model_version, scored_at, scored by the champion."""
    champion = tracking.version_with_alias(MODEL_NAME, CHAMPION)
    if champion is None:
        raise dg.Failure(f"{MODEL_NAME} has no {CHAMPION}: nothing to score with.")
    model = load_version(champion.version)
    probability = model.predict_proba(model_input(features))[:, 1] if len(features) else []
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].astype("int64"),
            "churn_probability": pd.Series(probability, dtype="float64"),
            "model_version": int(champion.version),
            "scored_at": pd.Timestamp.now(tz="UTC"),
        }
    )
