"""Data-quality expectations, declared as data, applied the way Delta Live Tables applies them.

``fail`` is DLT's ``expect_or_fail``: one violating row fails the run and nothing is written.
``drop`` is ``expect_all_or_drop``: violating rows leave the table and go to its quarantine
table with the names of every rule they broke. A predicate that evaluates to NULL is a violation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

FAILED_RULES = "_failed_rules"
RAW = "_raw"
RESCUED_DATA = "_rescued_data"


@dataclass(frozen=True)
class Expectation:
    name: str
    predicate: str  # Spark SQL over the typed silver columns; {placeholders} bound at run time
    action: Literal["fail", "drop"]

    @property
    def holds(self) -> Column:
        return F.coalesce(F.expr(self.predicate), F.lit(False))

    @property
    def description(self) -> str:
        return f"expect_or_{self.action}: {self.predicate}"

    def bind(self, **values: object) -> Expectation:
        """This rule with its ``{placeholders}`` filled in (a configured range)."""
        return replace(self, predicate=self.predicate.format(**values))


def bind(rules: tuple[Expectation, ...], **values: object) -> tuple[Expectation, ...]:
    return tuple(rule.bind(**values) for rule in rules)


def present(column: str) -> str:
    """The retail notebook's "present" rule: the raw text is not null and not blank."""
    return f"nullif(trim({RAW}.{column}), '') IS NOT NULL"


# A byte that is not UTF-8 is read as U+FFFD: such a row (a latin-1 file, say) is dropped, not
# stored as mojibake.
TEXT_IS_UTF8 = f"instr(to_json({RAW}), '\ufffd') = 0"

# The Databricks DLT retail notebook's rules, by name, then ours (on the typed columns).
CUSTOMERS: tuple[Expectation, ...] = (
    Expectation("pk_must_exist", present("customer_id"), "fail"),
    Expectation("state_present", present("state"), "drop"),
    Expectation("city_present", present("city"), "drop"),
    Expectation("units_present", present("units_purchased"), "drop"),
    Expectation("loyalty_present", present("loyalty_segment"), "drop"),
    Expectation("text_is_utf8", TEXT_IS_UTF8, "drop"),
    Expectation("valid_customer_id", "customer_id IS NOT NULL", "drop"),  # a number
    Expectation("valid_customer_name", "customer_name IS NOT NULL AND customer_name <> ''", "drop"),
    Expectation("valid_valid_from", "valid_from IS NOT NULL", "drop"),
    Expectation(  # a blank valid_to is an open record; an unreadable one is not
        "valid_valid_to",
        f"valid_to IS NOT NULL OR nullif(trim({RAW}.valid_to), '') IS NULL",
        "drop",
    ),
    Expectation("valid_loyalty_segment", "loyalty_segment IS NOT NULL", "drop"),
)

SALES_ORDERS: tuple[Expectation, ...] = (
    Expectation("pk_must_exist", present("order_number"), "fail"),
    Expectation("clicked_items_present", present("clicked_items"), "drop"),
    Expectation("customer_id_present", present("customer_id"), "drop"),
    Expectation("number_of_line_items_present", present("number_of_line_items"), "drop"),
    Expectation("order_datetime_present", present("order_datetime"), "drop"),
    Expectation("ordered_products_present", present("ordered_products"), "drop"),
    Expectation("promo_info_present", present("promo_info"), "drop"),
    Expectation("text_is_utf8", TEXT_IS_UTF8, "drop"),
    Expectation("valid_order_number", "order_number IS NOT NULL", "drop"),  # a number
    Expectation("valid_customer_id", "customer_id IS NOT NULL", "drop"),
    Expectation("valid_order_datetime", "order_datetime IS NOT NULL", "drop"),
    Expectation(  # a date outside it would move the models' window (SilverConfig sets it)
        "order_datetime_in_range",
        "order_datetime >= TIMESTAMP '{earliest_order}' "
        "AND order_datetime <= current_timestamp() + make_interval(0, 0, 0, {max_days_ahead})",
        "drop",
    ),
    Expectation(
        "valid_ordered_products",
        "size(ordered_products) > 0 AND forall(ordered_products, p -> p.id IS NOT NULL)",
        "drop",
    ),
    Expectation(
        "valid_quantities",
        "forall(ordered_products, p -> p.qty IS NOT NULL AND p.qty > 0)",
        "drop",
    ),
)


class ExpectationFailed(Exception):
    """An ``expect_or_fail`` rule was violated; the message names the rule, count and examples."""


@dataclass(frozen=True)
class RuleOutcome:
    name: str
    action: Literal["fail", "drop"]
    violations: int
    rows: int


@dataclass(frozen=True)
class UniqueKey:
    """One row per ``keys`` among the rows that pass every drop rule: the first by
    ``newest_first`` (each column descending) stays, the others are dropped under ``name``, so
    the rows a duplicate replaced are on record in the quarantine, not lost without a word."""

    keys: tuple[str, ...]
    newest_first: tuple[str, ...]
    name: str = "unique_key"

    @property
    def description(self) -> str:
        return (
            f"one row per ({', '.join(self.keys)}): among duplicates, the newest by "
            f"{', '.join(self.newest_first)} stays and the others are dropped"
        )


# Rows the CSV reader could not parse are not records yet: they are quarantined before any rule,
# so a garbled line never fails the run as a "missing primary key".
WELL_FORMED = Expectation("well_formed_row", f"{RAW}.{RESCUED_DATA} IS NULL", "drop")


@dataclass(frozen=True)
class Applied:
    passing: DataFrame  # typed columns only
    quarantine: DataFrame  # the raw row as read, plus _failed_rules
    outcomes: list[RuleOutcome]
    dropped: int  # rows that go to the quarantine
    failure: str | None  # why an expect_or_fail rule failed the batch, if one did
    offending: list[dict]  # up to five rows (their key_columns) that failed it
    flagged: DataFrame  # every row with its _failed_rules, persisted: release() when written

    def release(self) -> None:
        self.flagged.unpersist()


def flag(
    df: DataFrame, expectations: tuple[Expectation, ...], unique: UniqueKey | None = None
) -> DataFrame:
    """``df`` with ``_failed_rules``: the names of the drop rules each row broke (and
    ``unique.name`` for a passing row that a newer one of the same key replaces)."""
    drop_rules = [e for e in (WELL_FORMED, *expectations) if e.action == "drop"]
    failed = F.filter(
        F.array(*[F.when(~e.holds, F.lit(e.name)) for e in drop_rules]), lambda r: r.isNotNull()
    )
    flagged = df.withColumn(FAILED_RULES, failed)
    if unique is None:
        return flagged
    passes = F.size(FAILED_RULES) == 0
    newest = Window.partitionBy(passes, *unique.keys).orderBy(
        *[F.desc_nulls_last(c) for c in unique.newest_first]
    )
    replaced = passes & (F.row_number().over(newest) > 1)
    return flagged.withColumn(
        FAILED_RULES,
        F.when(replaced, F.array(F.lit(unique.name))).otherwise(F.col(FAILED_RULES)),
    )


def evaluate(
    df: DataFrame,
    expectations: tuple[Expectation, ...],
    key_columns: list[str],
    unique: UniqueKey | None = None,
) -> Applied:
    """Apply ``expectations`` (and ``unique``) to ``df``: typed columns plus ``_raw``, the
    bronze row as read.

    Counts every rule in one pass, describes the first violated ``fail`` rule (with up to five
    offending rows' ``key_columns``), and splits the rows into passing and quarantined. The
    flagged rows are persisted on disk (every later read of them starts there): ``release()``.
    """
    readable = WELL_FORMED.holds
    flagged = flag(df, expectations, unique).persist(StorageLevel.DISK_ONLY)
    broke = F.size(FAILED_RULES) > 0
    counts = flagged.agg(
        F.count(F.lit(1)).alias("_rows"),
        F.count_if(broke).alias("_dropped"),
        F.count_if(~readable).alias(WELL_FORMED.name),
        *[F.count_if(readable & ~e.holds).alias(e.name) for e in expectations],
        *([F.count_if(F.array_contains(FAILED_RULES, unique.name)).alias(unique.name)]
          if unique else []),
    ).first()  # fmt: skip
    assert counts is not None
    outcomes = [
        RuleOutcome(e.name, e.action, int(counts[e.name]), int(counts["_rows"]))
        for e in (WELL_FORMED, *expectations)
    ]
    if unique:
        outcomes.append(
            RuleOutcome(unique.name, "drop", int(counts[unique.name]), int(counts["_rows"]))
        )
    failure, sample = None, []
    for rule in expectations:
        violations = next(o.violations for o in outcomes if o.name == rule.name)
        if rule.action == "fail" and violations:
            offending = flagged.where(readable & ~rule.holds).select(f"{RAW}.*").take(5)
            sample = [{k: row[k] for k in key_columns} for row in offending]
            failure = (
                f"expect_or_fail '{rule.name}' ({rule.predicate}) violated by "
                f"{violations} of {int(counts['_rows'])} rows; first offending rows: {sample}"
            )
            break

    typed_columns = [c for c in df.columns if c != RAW]
    return Applied(
        passing=flagged.where(~broke).select(typed_columns),
        quarantine=flagged.where(broke).select(f"{RAW}.*", FAILED_RULES),
        outcomes=outcomes,
        dropped=int(counts["_dropped"]),
        failure=failure,
        offending=sample,
        flagged=flagged,
    )


def apply(
    df: DataFrame,
    expectations: tuple[Expectation, ...],
    key_columns: list[str],
    unique: UniqueKey | None = None,
) -> Applied:
    """:func:`evaluate`, raising :class:`ExpectationFailed` on a violated ``fail`` rule."""
    applied = evaluate(df, expectations, key_columns, unique)
    if applied.failure:
        applied.release()
        raise ExpectationFailed(applied.failure)
    return applied
