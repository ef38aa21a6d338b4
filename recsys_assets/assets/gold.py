"""Gold: the tables the models train on and score: ALS's interactions, churn's features."""

from datetime import timezone

import dagster as dg
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_assets.ml import churn
from recsys_assets.ml.churn import FEATURE_COLUMNS
from recsys_assets.resources.lakehouse import Lakehouse
from recsys_assets.tables import GOLD, SILVER, column_schema, in_layer


class InteractionsConfig(dg.Config):
    window_days: int = 30  # counted back from the newest order in the data, not from today


def interactions(orders: DataFrame, window_days: int, newest: int | None = None) -> DataFrame:
    """Quantity bought per (customer, product) in the last ``window_days`` of the data.

    The window ends at ``newest``, the newest order's time in seconds since 1970 (read from
    ``orders`` when not given). Its start is a literal in the filter, so Delta skips every file
    whose orders are all older (file statistics): the cost follows the window, not the history.
    """
    if newest is None:
        newest = orders.agg(F.unix_seconds(F.max("order_datetime"))).first()[0]
    if newest is None:
        return orders.sparkSession.createDataFrame(
            [], "customer_id bigint, product_id string, total_qty bigint, interaction_weight double"
        )
    recent = orders.where(
        F.col("order_datetime") > F.timestamp_seconds(F.lit(newest - window_days * 86_400))
    )
    lines = recent.select("customer_id", F.explode("ordered_products").alias("p")).select(
        "customer_id", F.col("p.id").alias("product_id"), F.col("p.qty").cast("long").alias("qty")
    )
    return (
        lines.where("qty > 0 AND customer_id IS NOT NULL")
        .groupBy("customer_id", "product_id")
        .agg(F.sum("qty").alias("total_qty"))
        .withColumn("interaction_weight", F.log1p("total_qty"))
    )


@dg.asset(group_name="gold", kinds={"spark", "delta"}, metadata=in_layer(GOLD))
def als_interactions_30d(
    config: InteractionsConfig, lakehouse: Lakehouse, sales_orders_customer_join_min: DataFrame
) -> DataFrame:
    """Implicit feedback for ALS: quantity and its log1p weight per customer and product."""
    # The newest order from the join's file statistics (a Delta timestamp is UTC): no scan.
    newest = lakehouse.column_max(SILVER, "sales_orders_customer_join_min", "order_datetime")
    if newest is not None and newest.tzinfo is None:
        newest = newest.replace(tzinfo=timezone.utc)
    seconds = None if newest is None else int(newest.timestamp())
    return interactions(sales_orders_customer_join_min, config.window_days, seconds)


class CustomerFeaturesConfig(dg.Config):
    as_of: str | None = None  # ISO-8601 date or time (UTC if no zone); default: the newest order


@dg.asset(
    group_name="gold",
    kinds={"spark", "delta"},
    metadata={**in_layer(GOLD), "dagster/column_schema": column_schema(FEATURE_COLUMNS)},
)
def customer_features(
    context: dg.AssetExecutionContext,
    config: CustomerFeaturesConfig,
    customers_silver: DataFrame,
    sales_orders_customer_join_min: DataFrame,
) -> DataFrame:
    """Churn features per current customer as of the newest order: what churn_predictions scores."""
    if config.as_of:
        as_of = churn.seconds_of_iso(config.as_of)
    else:
        as_of = churn.newest_order(sales_orders_customer_join_min)
        if as_of is None:
            raise dg.Failure("sales_orders_customer_join_min has no orders: no cutoff to use.")
    context.add_output_metadata({"as_of": churn.iso(as_of)})
    return churn.customer_features_as_of(
        churn.current_records(customers_silver), sales_orders_customer_join_min, as_of
    )
