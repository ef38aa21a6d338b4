"""Silver: typed, validated, de-duplicated tables, each with a quarantine table for dropped rows.

Both are rebuilt from the whole bronze table on every run, so a rerun is safe and a re-dropped
file never double counts. A violated ``expect_or_fail`` rule fails the step before anything is
written: the silver table stays at its previous Delta version.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from recsys_assets import expectations
from recsys_assets.assets.bronze import INGESTED_AT, SOURCE_FILE
from recsys_assets.expectations import RAW, Expectation

PRODUCT_FIELDS = ("curr", "id", "name", "price", "promotion_info", "qty", "unit")
# Parsed as strings first, so a non-numeric qty is caught by an expectation, not nulled silently.
ORDERED_PRODUCTS_JSON = ArrayType(
    StructType([StructField(f, StringType()) for f in PRODUCT_FIELDS])
)


def unix_seconds(column: str) -> Column:
    return F.timestamp_seconds(F.col(column).try_cast("bigint"))


def with_raw(bronze: DataFrame, typed: list[Column]) -> DataFrame:
    """The typed columns beside ``_raw``, the bronze row as it was read."""
    return bronze.select(F.struct(*bronze.columns).alias(RAW), *typed)


def customers_typed(bronze: DataFrame) -> DataFrame:
    text = ["tax_id", "tax_code", "customer_name", "state", "city", "postcode", "street", "number"]
    text += ["unit", "region", "district", "ship_to_address"]
    return with_raw(
        bronze,
        [
            F.col("customer_id").try_cast("bigint").alias("customer_id"),
            *[F.col(c) for c in text],
            F.col("lon").try_cast("double").alias("lon"),
            F.col("lat").try_cast("double").alias("lat"),
            unix_seconds("valid_from").alias("valid_from"),
            unix_seconds("valid_to").alias("valid_to"),
            F.col("units_purchased").try_cast("int").alias("units_purchased"),
            F.col("loyalty_segment").try_cast("int").alias("loyalty_segment"),
            F.col(SOURCE_FILE),
            F.col(INGESTED_AT),
        ],
    )


def ordered_products(column: str) -> Column:
    parsed = F.from_json(F.col(column), ORDERED_PRODUCTS_JSON)
    return F.transform(
        parsed,
        lambda p: F.struct(
            p["curr"].alias("curr"),
            p["id"].alias("id"),
            p["name"].alias("name"),
            p["price"].try_cast("double").alias("price"),
            p["promotion_info"].alias("promotion_info"),
            p["qty"].try_cast("int").alias("qty"),
            p["unit"].alias("unit"),
        ),
    )


def sales_orders_typed(bronze: DataFrame) -> DataFrame:
    return with_raw(
        bronze,
        [
            F.col("order_number").try_cast("bigint").alias("order_number"),
            F.col("customer_id").try_cast("bigint").alias("customer_id"),
            F.col("customer_name"),
            F.col("number_of_line_items").try_cast("int").alias("number_of_line_items"),
            unix_seconds("order_datetime").alias("order_datetime"),
            F.to_date(unix_seconds("order_datetime")).alias("order_date"),
            ordered_products("ordered_products").alias("ordered_products"),
            F.col("clicked_items"),
            F.col("promo_info"),
            F.col(SOURCE_FILE),
            F.col(INGESTED_AT),
        ],
    )


def latest_per_key(df: DataFrame, key: str, *order: Column) -> DataFrame:
    """One row per ``key``: the first by ``order``, then by the newest ingestion."""
    window = Window.partitionBy(key).orderBy(*order, F.desc(INGESTED_AT), F.desc(SOURCE_FILE))
    return (
        df.withColumn("_rank", F.row_number().over(window))
        .where("_rank = 1")
        .drop("_rank", SOURCE_FILE, INGESTED_AT)
    )


def current_customers(valid: DataFrame) -> DataFrame:
    """SCD2: the open record (no valid_to) of each customer, the newest if several."""
    return latest_per_key(valid.where("valid_to IS NULL"), "customer_id", F.desc("valid_from"))


def unique_orders(valid: DataFrame) -> DataFrame:
    return latest_per_key(valid, "order_number")


@dataclass(frozen=True)
class SilverSpec:
    """How one bronze table becomes its silver and quarantine tables."""

    source: str
    typed: Callable[[DataFrame], DataFrame]
    rules: tuple[Expectation, ...]
    keys: list[str]  # the bronze columns shown for a row that fails an expect_or_fail rule
    conform: Callable[[DataFrame], DataFrame]
    description: str

    def typed_rows(self, bronze: DataFrame) -> DataFrame:
        """The typed rows, persisted: the rule counts, the silver write and the quarantine write
        all read them (JSON parsing included). On disk, not in the driver's heap, which also
        holds the input and the collected output (benchmarks/README.md); unpersist when done."""
        return self.typed(bronze).persist(StorageLevel.DISK_ONLY)


def silver_tables(spec: SilverSpec) -> dg.AssetsDefinition:
    """The ``<source>_silver`` and ``<source>_quarantine`` assets, one check per rule."""
    source, rules = spec.source, spec.rules
    bronze, silver, quarantine = f"{source}_bronze", f"{source}_silver", f"{source}_quarantine"
    all_rules = (expectations.WELL_FORMED, *rules)

    @dg.multi_asset(
        name=f"{source}_silver_tables",
        group_name="silver",
        ins={"bronze": dg.AssetIn(bronze)},
        outs={
            silver: dg.AssetOut(
                is_required=False,
                kinds={"spark", "delta"},
                metadata={"schema": "silver"},
                description=spec.description,
            ),
            quarantine: dg.AssetOut(
                is_required=False,
                kinds={"spark", "delta"},
                metadata={"schema": "silver"},
                description=f"{source} rows dropped by an expectation, with the rules they broke.",
            ),
        },
        can_subset=True,  # so `--select +als_champion` works; see the quarantine note below
        check_specs=[
            dg.AssetCheckSpec(
                r.name, asset=silver, description=f"expect_or_{r.action}: {r.predicate}"
            )
            for r in all_rules
        ],
    )
    def _silver(context: dg.AssetExecutionContext, bronze: DataFrame) -> Iterator:
        rows = spec.typed_rows(bronze)  # each Output is stored before we resume
        try:
            yield from _evaluate_and_write(context, rows)
        finally:
            rows.unpersist()

    def _evaluate_and_write(context: dg.AssetExecutionContext, rows: DataFrame) -> Iterator:
        try:
            applied = expectations.apply(rows, rules, spec.keys)
        except expectations.ExpectationFailed as failure:
            raise dg.Failure(description=str(failure)) from failure
        selected_checks = {key.name for key in context.selected_asset_check_keys}
        for o in applied.outcomes:
            if o.expectation.name not in selected_checks:
                continue
            fails_run = o.expectation.action == "fail"
            yield dg.AssetCheckResult(
                asset_key=silver,
                check_name=o.expectation.name,
                passed=o.violations == 0,
                severity=dg.AssetCheckSeverity.ERROR if fails_run else dg.AssetCheckSeverity.WARN,
                metadata={
                    "action": o.expectation.action,
                    "rows": o.rows,
                    "violations": o.violations,
                    "passed_rows": o.rows - o.violations,
                },
            )
        summary = ", ".join(f"{o.expectation.name}: {o.violations}" for o in applied.outcomes)
        context.log.info(f"violations per rule: {summary}")
        selected = {key.to_user_string() for key in context.selected_asset_keys}
        if silver in selected:
            yield dg.Output(spec.conform(applied.passing), silver)
        if quarantine in selected:
            yield dg.Output(applied.quarantine, quarantine)
        else:  # it is rebuilt from bronze on its next materialisation, so nothing is lost
            context.log.warning(f"{quarantine} is not selected in this run: not rewritten")

    return _silver


CUSTOMERS = SilverSpec(
    "customers",
    customers_typed,
    expectations.CUSTOMERS,
    ["customer_id", "customer_name", "_source_file"],
    current_customers,
    "Current customers (SCD2 open record), typed and validated.",
)
SALES_ORDERS = SilverSpec(
    "sales_orders",
    sales_orders_typed,
    expectations.SALES_ORDERS,
    ["order_number", "customer_id", "_source_file"],
    unique_orders,
    "Orders, one row per order_number, typed, with ordered_products parsed.",
)
customers_silver = silver_tables(CUSTOMERS)
sales_orders_silver = silver_tables(SALES_ORDERS)


@dg.asset(
    group_name="silver",
    kinds={"spark", "delta"},
    metadata={"schema": "silver"},
)
def sales_orders_customer_join_min(
    sales_orders_silver: DataFrame, customers_silver: DataFrame
) -> DataFrame:
    """Orders left-joined to their customer's current record, as in the DLT retail notebook."""
    return join_customers(sales_orders_silver, customers_silver)


def join_customers(sales_orders_silver: DataFrame, customers_silver: DataFrame) -> DataFrame:
    customers = customers_silver.select(
        "customer_id", "state", "city", "lon", "lat", "units_purchased", "loyalty_segment"
    )
    return sales_orders_silver.select(
        "order_number",
        "customer_id",
        "customer_name",
        "order_datetime",
        "order_date",
        "number_of_line_items",
        "ordered_products",
    ).join(customers, "customer_id", "left")
