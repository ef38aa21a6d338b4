"""Silver: typed, validated, de-duplicated tables, each with a quarantine table for dropped rows.

Incremental, like DLT streaming tables: each run reads only the bronze rows committed since the
bronze version its last commit consumed (Delta's change data feed), appends the rows a rule drops
to the quarantine table and MERGEs the rest by key into silver. Each commit records the bronze
version it consumed (its bookmark), the quarantine first, so a run killed between the two
commits is finished by the next without a duplicate. A violated ``expect_or_fail`` rule fails
the step, and its check, before anything is written. ``full_refresh`` rebuilds from bronze.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType

from recsys_assets import expectations
from recsys_assets.assets.bronze import INGESTED_AT, SOURCE_FILE, SOURCE_RECORD
from recsys_assets.expectations import RAW, Expectation, UniqueKey
from recsys_assets.resources.lakehouse import SOURCES, Lakehouse
from recsys_assets.tables import BRONZE, SILVER, in_layer

BRONZE_VERSION = "_bronze_version"  # the bronze commit a row came from


class RefreshConfig(dg.Config):
    full_refresh: bool = False  # rebuild from all of upstream, as DLT's full refresh does


class SilverConfig(RefreshConfig):
    """The silver tables' run config: full refresh, and the order dates that are plausible."""

    earliest_order: str = "2000-01-01"  # orders dated before are dropped (order_datetime_in_range)
    max_days_ahead: int = 1  # orders dated later than the run's time plus this are dropped


PRODUCT_FIELDS = ("curr", "id", "name", "price", "promotion_info", "qty", "unit")
# Parsed as strings first, so a non-numeric qty is caught by an expectation, not nulled silently.
ORDERED_PRODUCTS_JSON = ArrayType(
    StructType([StructField(f, StringType()) for f in PRODUCT_FIELDS])
)


# Seconds since 1970 that make a timestamp (years 1 to 9999); others would overflow the cast.
EPOCH_SECONDS = (-62_135_596_800, 253_402_300_799)


def timestamp_from_epoch(column: str) -> Column:
    """The text of ``column`` as epoch seconds to a timestamp; NULL if it is not such a number
    (an expectation then drops the row, with a reason)."""
    seconds = F.col(column).try_cast("bigint")
    return F.when(seconds.between(*EPOCH_SECONDS), F.timestamp_seconds(seconds))


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
            timestamp_from_epoch("valid_from").alias("valid_from"),
            timestamp_from_epoch("valid_to").alias("valid_to"),
            F.col("units_purchased").try_cast("int").alias("units_purchased"),
            F.col("loyalty_segment").try_cast("int").alias("loyalty_segment"),
            F.col(SOURCE_FILE),
            F.col(INGESTED_AT),
            F.col(BRONZE_VERSION),
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
            timestamp_from_epoch("order_datetime").alias("order_datetime"),
            F.to_date(timestamp_from_epoch("order_datetime")).alias("order_date"),
            ordered_products("ordered_products").alias("ordered_products"),
            F.col("clicked_items"),
            F.col("promo_info"),
            F.col(SOURCE_FILE),
            F.col(INGESTED_AT),
            F.col(BRONZE_VERSION),
        ],
    )


def latest_per_key(df: DataFrame, keys: list[str], *order: Column) -> DataFrame:
    """One row per ``keys``: the first by ``order``, then by the newest ingestion."""
    window = Window.partitionBy(*keys).orderBy(*order, F.desc(INGESTED_AT), F.desc(SOURCE_FILE))
    return df.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").drop("_rank")


def current_customers(customers: DataFrame) -> DataFrame:
    """SCD2: the open record (no valid_to) of each customer, the newest if several."""
    return latest_per_key(
        customers.where("valid_to IS NULL"), ["customer_id"], F.desc("valid_from")
    ).drop(SOURCE_FILE, INGESTED_AT)


@dataclass(frozen=True)
class SilverSpec:
    """How one bronze table becomes its silver and quarantine tables."""

    source: str
    typed: Callable[[DataFrame], DataFrame]
    rules: tuple[Expectation, ...]
    keys: list[str]  # silver's key: one row per key, MERGEd
    shown: list[str]  # the bronze columns shown for a row that fails an expect_or_fail rule
    description: str

    @property
    def names(self) -> tuple[str, str, str]:
        return f"{self.source}_bronze", f"{self.source}_silver", f"{self.source}_quarantine"

    def rules_for(self, config: SilverConfig) -> tuple[Expectation, ...]:
        """The rules, with the configured range of order dates."""
        return expectations.bind(
            self.rules, earliest_order=config.earliest_order, max_days_ahead=config.max_days_ahead
        )

    @property
    def unique(self) -> UniqueKey:
        """Duplicates of a key: the latest ingested wins, then the file named last, then the
        last record in the file; the others are quarantined under ``unique_key``."""
        return UniqueKey(tuple(self.keys), (INGESTED_AT, SOURCE_FILE, f"{RAW}.{SOURCE_RECORD}"))


def new_bronze_rows(lakehouse: Lakehouse, bronze: str, after: int, upto: int) -> DataFrame:
    """Bronze rows committed in versions ``after + 1`` to ``upto``, with their version.

    From scratch (``after`` -1: a first run or a full refresh) the snapshot at ``upto`` is read,
    not the change feed, so rows deleted from bronze since (a rejected file) stay out.
    """
    if after < 0:
        snapshot = lakehouse.read(BRONZE, bronze, upto)
        rows = snapshot.withColumn(BRONZE_VERSION, F.lit(upto).cast("long"))
    elif after >= upto:  # nothing new: the same columns, no rows
        empty = lakehouse.read(BRONZE, bronze, upto).limit(0)
        rows = empty.withColumn(BRONZE_VERSION, F.lit(0).cast("long"))
    else:
        rows = (
            lakehouse.changes(BRONZE, bronze, after, upto)
            .where("_change_type = 'insert'")  # removals make silver rebuild (removed_since)
            .drop("_change_type", "_commit_timestamp")
            .withColumnRenamed("_commit_version", BRONZE_VERSION)
        )
    if SOURCE_RECORD not in rows.columns:  # a bronze table from before records were numbered
        rows = rows.withColumn(SOURCE_RECORD, F.lit(None).cast("long"))
    return rows


def silver_tables(spec: SilverSpec) -> dg.AssetsDefinition:
    """The ``<source>_silver`` and ``<source>_quarantine`` assets, one check per rule.

    Written together, always: the multi-asset is not subsettable.
    """
    rules = spec.rules
    bronze, silver, quarantine = spec.names
    all_rules = (expectations.WELL_FORMED, *rules)
    described = {r.name: r.description for r in all_rules} | {
        spec.unique.name: spec.unique.description
    }

    @dg.multi_asset(
        name=f"{spec.source}_silver_tables",
        group_name="silver",
        specs=[
            dg.AssetSpec(  # after its quarantine, so selecting silver selects both
                silver,
                deps=[bronze, quarantine],
                kinds={"spark", "delta"},
                metadata=in_layer(SILVER),
                description=spec.description,
            ),
            dg.AssetSpec(
                quarantine,
                deps=[bronze],
                kinds={"spark", "delta"},
                metadata=in_layer(SILVER),
                description=f"{spec.source} rows dropped by an expectation, with the rules "
                "they broke.",
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(name, asset=silver, description=description)
            for name, description in described.items()
        ],
    )
    def _silver(
        context: dg.AssetExecutionContext, config: SilverConfig, lakehouse: Lakehouse
    ) -> Iterator:
        upto = lakehouse.version(BRONZE, bronze)
        if upto is None:
            raise dg.Failure(
                f"{bronze} has no Delta table yet: select '*{silver}' to ingest first."
            )
        marks = {
            table: -1 if config.full_refresh else lakehouse.bookmark(SILVER, table).get(bronze, -1)
            for table in (silver, quarantine)
        }
        removed = lakehouse.removed_since(BRONZE, bronze, min(marks.values()))
        if removed:  # a rejected file: what silver took from it must go too, as in a full refresh
            context.log.warning(
                f"{bronze} versions {removed} removed rows: rebuilding from its snapshot."
            )
            marks = dict.fromkeys(marks, -1)
        # The quarantine is written first, and not at all when a run drops no row: what silver
        # has consumed, its quarantine has too.
        marks[quarantine] = max(marks.values())
        context.log.info(f"{bronze} v{upto}; consumed so far: {marks}")
        if min(marks.values()) >= upto:
            context.log.info(f"No {bronze} commit since the last run: nothing to do.")
            yield from check_results(context, silver, no_rows(all_rules, spec.unique))
            for table in (quarantine, silver):
                yield dg.MaterializeResult(
                    asset_key=table, metadata=lakehouse.metadata(SILVER, table)
                )
            return
        rows = spec.typed(new_bronze_rows(lakehouse, bronze, min(marks.values()), upto))
        # Flagged once and persisted on disk: the rule counts and both writes read them.
        applied = expectations.evaluate(rows, spec.rules_for(config), spec.shown, spec.unique)
        try:
            yield from check_results(context, silver, applied.outcomes)
            if applied.failure:
                raise dg.Failure(
                    description=f"{applied.failure}. {silver} stays at its last version. "
                    + how_to_reject(spec.source, applied.offending)
                )
            info = {"dagster_run_id": context.run_id, SOURCES: {bronze: upto}}
            new_quarantined = applied.quarantine.where(F.col(BRONZE_VERSION) > marks[quarantine])
            if marks[quarantine] < 0:  # from scratch: a first run or a full refresh
                lakehouse.write(new_quarantined, SILVER, quarantine, "overwrite", info)
            elif applied.dropped:
                lakehouse.write(new_quarantined, SILVER, quarantine, "append", info)
            yield dg.MaterializeResult(
                asset_key=quarantine,
                metadata=lakehouse.metadata(SILVER, quarantine, new_quarantined.schema),
            )
            passing = applied.passing.where(F.col(BRONZE_VERSION) > marks[silver])
            conformed = passing.drop(BRONZE_VERSION)  # one row per key: spec.unique
            if marks[silver] < 0:  # from scratch
                lakehouse.write(conformed, SILVER, silver, "overwrite", info, spec.keys)
            else:  # a row ingested later (a re-dropped file) replaces the one it repeats
                context.log.info(f"Upsert of {bronze} v{marks[silver] + 1}..{upto} into {silver}")
                update_if = f"s.{INGESTED_AT} >= t.{INGESTED_AT}"
                lakehouse.merge(conformed, SILVER, silver, spec.keys, info, update_if)
            yield dg.MaterializeResult(
                asset_key=silver,
                metadata={
                    **lakehouse.metadata(SILVER, silver, conformed.schema),
                    "bronze_version": dg.MetadataValue.int(upto),
                },
            )
        finally:
            applied.release()

    return _silver


def how_to_reject(source: str, offending: list[dict]) -> str:
    """How to take the files of the offending rows out of bronze: reject_landing_file's config."""
    files = sorted({row[SOURCE_FILE] for row in offending})
    configs = [
        f"ops: {{reject_file: {{config: {{table: {source}, file_name: '{Path(f).name}'}}}}}}"
        for f in files
    ]
    return (
        f"Files with such rows: {files}. Fix or remove the rows at the source and reject each "
        "file (it moves to _rejected/, its rows leave bronze, a corrected file of the same name "
        "is read again): launch the job reject_landing_file with the run config "
        + " / ".join(configs)
        + " (UI launchpad, or `dagster job execute -m recsys_assets.definitions "
        "-j reject_landing_file -c <that config in a YAML file>`)."
    )


def no_rows(rules: tuple[Expectation, ...], unique: UniqueKey) -> list[expectations.RuleOutcome]:
    named = [(r.name, r.action) for r in rules] + [(unique.name, "drop")]
    return [expectations.RuleOutcome(name, action, 0, 0) for name, action in named]


def check_results(
    context: dg.AssetExecutionContext, silver: str, outcomes: list[expectations.RuleOutcome]
) -> Iterator[dg.AssetCheckResult]:
    """Each rule's counts over this run's new rows, as an asset check (fail rules: ERROR)."""
    selected = {key.name for key in context.selected_asset_check_keys}
    for o in outcomes:
        if o.name not in selected:
            continue
        fails_run = o.action == "fail"
        yield dg.AssetCheckResult(
            asset_key=silver,
            check_name=o.name,
            passed=o.violations == 0,
            severity=dg.AssetCheckSeverity.ERROR if fails_run else dg.AssetCheckSeverity.WARN,
            metadata={
                "action": o.action,
                "rows": o.rows,
                "violations": o.violations,
                "passed_rows": o.rows - o.violations,
            },
        )
    summary = ", ".join(f"{o.name}: {o.violations}" for o in outcomes)
    context.log.info(f"violations per rule: {summary}")


CUSTOMERS = SilverSpec(
    "customers",
    customers_typed,
    expectations.CUSTOMERS,
    ["customer_id", "valid_from"],
    ["customer_id", "customer_name", "_source_file"],
    "Customer records (SCD2: every version, the open one has no valid_to), typed, validated.",
)
SALES_ORDERS = SilverSpec(
    "sales_orders",
    sales_orders_typed,
    expectations.SALES_ORDERS,
    ["order_number"],
    ["order_number", "customer_id", "_source_file"],
    "Orders, one row per order_number, typed, with ordered_products parsed.",
)
customers_silver = silver_tables(CUSTOMERS)
sales_orders_silver = silver_tables(SALES_ORDERS)


ORDERS, CUSTOMERS_SILVER = "sales_orders_silver", "customers_silver"
JOIN_KEY = "order_number"
CHANGED = "_change_type IN ('insert', 'update_postimage')"


@dg.asset(
    group_name="silver",
    deps=[ORDERS, CUSTOMERS_SILVER],
    kinds={"spark", "delta"},
    metadata=in_layer(SILVER),
)
def sales_orders_customer_join_min(
    context: dg.AssetExecutionContext, config: RefreshConfig, lakehouse: Lakehouse
) -> dg.MaterializeResult:
    """Orders left-joined to their customer's current record, as in the DLT retail notebook."""
    name = context.asset_key.path[-1]
    versions = {t: lakehouse.version(SILVER, t) for t in (ORDERS, CUSTOMERS_SILVER)}
    if None in versions.values():
        raise dg.Failure(f"Silver tables missing ({versions}): select '*{name}'.")
    marks = {} if config.full_refresh else lakehouse.bookmark(SILVER, name)
    if any(lakehouse.removed_since(SILVER, t, v) for t, v in marks.items()):
        context.log.warning("Rows were removed from a silver table: joining all orders again.")
        marks = {}
    orders = lakehouse.read(SILVER, ORDERS, versions[ORDERS])
    customers = current_customers(
        lakehouse.read(SILVER, CUSTOMERS_SILVER, versions[CUSTOMERS_SILVER])
    )
    info = {"dagster_run_id": context.run_id, SOURCES: versions}
    if set(marks) != set(versions):  # first run, or a full refresh
        joined = join_customers(orders, customers)
        lakehouse.write(joined, SILVER, name, "overwrite", info, [JOIN_KEY])
    elif marks != versions:  # the orders that changed, and the orders of customers that did
        context.log.info(f"Upsert of the orders changed since {marks} into {name}")
        changed = changed_orders(lakehouse, orders, marks, versions)
        # Read twice (the MERGE's key range, then the MERGE): computed once.
        rejoined = join_customers(changed, customers).persist(StorageLevel.DISK_ONLY)
        try:
            lakehouse.merge(rejoined, SILVER, name, [JOIN_KEY], info)
        finally:
            rejoined.unpersist()
    else:
        context.log.info("No silver commit since the last run: nothing to join.")
    return dg.MaterializeResult(metadata=lakehouse.metadata(SILVER, name))


def changed_orders(
    lakehouse: Lakehouse, orders: DataFrame, marks: dict[str, int], versions: dict[str, int]
) -> DataFrame:
    """Orders whose row, or whose customer's record, changed between the two sets of versions."""
    changed = orders.limit(0)
    if versions[ORDERS] > marks[ORDERS]:
        feed = lakehouse.changes(SILVER, ORDERS, marks[ORDERS], versions[ORDERS]).where(CHANGED)
        newest = Window.partitionBy(JOIN_KEY).orderBy(F.desc("_commit_version"))
        changed = (
            feed.withColumn("_rank", F.row_number().over(newest))
            .where("_rank = 1")
            .select(orders.columns)
        )
    if versions[CUSTOMERS_SILVER] > marks[CUSTOMERS_SILVER]:
        feed = lakehouse.changes(
            SILVER, CUSTOMERS_SILVER, marks[CUSTOMERS_SILVER], versions[CUSTOMERS_SILVER]
        )
        customer_ids = feed.select("customer_id").distinct()
        changed = changed.unionByName(orders.join(customer_ids, "customer_id", "left_semi"))
    return changed.dropDuplicates([JOIN_KEY])


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
