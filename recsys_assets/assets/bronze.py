"""Bronze: CSV drops ingested as they are, exactly once per file, like Databricks Auto Loader.

Every column is read as a string (Auto Loader's default), so no value is lost to a bad cast;
lines the CSV reader cannot parse keep their text in ``_rescued_data``. The set of files already
ingested is read from the table itself, so a failed run is healed by the next one: the append
is one Delta commit, and a file is either in it or read again.
"""

import csv
import re
from dataclasses import dataclass, field
from functools import reduce
from pathlib import Path

import dagster as dg
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from recsys_assets.expectations import RESCUED_DATA
from recsys_assets.resources.lakehouse import Lakehouse, sql_literal
from recsys_assets.resources.landing import LandingZone, Signature, signature
from recsys_assets.resources.spark import SparkResource
from recsys_assets.schemas import CUSTOMERS_COLUMNS, SALES_ORDERS_COLUMNS
from recsys_assets.tables import BRONZE, in_layer

SOURCE_FILE = "_source_file"
# The file's size and modification time when it was read: a rewrite after ingestion shows.
SOURCE_SIZE, SOURCE_MODIFIED_NS = "_source_size", "_source_modified_ns"
SOURCE_RECORD = "_source_record"  # 1-based number of the record (a multi-line row counts once)
INGESTED_AT = "_ingested_at"
# A file is read as one partition (multi-line CSV cannot be split), so the low 33 bits of Spark's
# monotonically increasing id count its records from 0, in file order.
RECORD_BITS = (1 << 33) - 1

# The Databricks retail notebook reads sales_orders as quoted, multi-line CSV.
CSV_OPTIONS = {
    "header": "true",
    "multiLine": "true",
    "quote": '"',
    "escape": '"',
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": RESCUED_DATA,
}


GLOB_CHARACTERS = re.compile(r"([\[\]*?{}\\])")  # Hadoop glob syntax, escaped by a backslash


def raw_schema(columns: tuple[str, ...]) -> StructType:
    return StructType([StructField(c, StringType()) for c in (*columns, RESCUED_DATA)])


def ingested_files(
    lakehouse: Lakehouse, table: str, version: int | None
) -> dict[str, Signature | None]:
    """The files in a bronze table at ``version``, each with its signature when it was read
    (None for rows ingested before signatures were kept)."""
    if version is None:
        return {}
    bronze = lakehouse.read(BRONZE, table, version)
    if SOURCE_SIZE not in bronze.columns:
        return dict.fromkeys(r[0] for r in bronze.select(SOURCE_FILE).distinct().collect())
    files = bronze.groupBy(SOURCE_FILE).agg(F.max(SOURCE_SIZE), F.max(SOURCE_MODIFIED_NS))
    return {
        path: None if size is None else (size, modified)
        for path, size, modified in files.collect()  # one row per file
    }


def header(path: str) -> list[str]:
    """The column names on a CSV file's first line (a byte-order mark dropped)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        return [name.strip() for name in next(csv.reader(f), [])]


def header_problem(found: list[str], columns: tuple[str, ...]) -> str | None:
    """Why a header cannot be read as ``columns`` (by name, in any order); None if it can."""
    if sorted(found) == sorted(columns):
        return None
    missing = [c for c in columns if c not in found]
    unknown = [c for c in found if c not in columns]
    return f"header does not match the schema: missing {missing}, unknown {unknown}"


def literal_path(path: str) -> str:
    """``path`` with Hadoop's glob characters escaped, so Spark reads that one file."""
    return GLOB_CHARACTERS.sub(r"\\\1", path)


def read_csv_drops(
    session: SparkSession,
    files: list[str],
    columns: tuple[str, ...],
    signatures: dict[str, Signature] | None = None,
) -> DataFrame:
    """Every row of ``files`` as strings, columns matched by the header's names, with the file's
    path, record number and signature (as listed, or read now); each file's header must name
    ``columns`` in some order (see ``header_problem``)."""
    schema = raw_schema(columns)
    signatures = signatures or {f: signature(Path(f)) for f in files}
    if not files:
        empty = StructType(
            [
                *schema.fields,
                StructField(SOURCE_FILE, StringType()),
                StructField(SOURCE_RECORD, LongType()),
                StructField(SOURCE_SIZE, LongType()),
                StructField(SOURCE_MODIFIED_NS, LongType()),
            ]
        )
        return session.createDataFrame([], empty).withColumn(INGESTED_AT, F.current_timestamp())
    # One scan per file, tagged with the path exactly as listed (Spark's own _metadata.file_path
    # is a URI-encoded form). Multi-line CSV is not splittable, so this costs no parallelism.
    # The schema is given in the file's own column order, so a permuted header maps by name.
    reads = [
        session.read.options(**CSV_OPTIONS)
        .schema(raw_schema(tuple(header(f))))
        .csv(literal_path(f))
        .select(*schema.fieldNames())
        .withColumn(SOURCE_FILE, F.lit(f))
        .withColumn(SOURCE_RECORD, F.monotonically_increasing_id().bitwiseAND(RECORD_BITS) + 1)
        .withColumn(SOURCE_SIZE, F.lit(signatures[f][0]).cast("long"))
        .withColumn(SOURCE_MODIFIED_NS, F.lit(signatures[f][1]).cast("long"))
        for f in files
    ]
    return reduce(DataFrame.unionByName, reads).withColumn(INGESTED_AT, F.current_timestamp())


ATTEMPTS = 3  # listings of the table before giving up to runs that keep ingesting first
UNCHANGED = "landing_files_unchanged"
IGNORED = (
    "its rows in bronze are those read before (set RECSYS_REINGEST_CHANGED=1 to read rewritten "
    "files again, or reject and re-drop it)"
)


@dataclass
class Listing:
    """The landing files to read (not in the table yet, or rewritten since and to be read
    again), and those left out, with the reasons."""

    new: dict[str, Signature] = field(default_factory=dict)  # to read, with their signatures
    replaced: list[str] = field(default_factory=list)  # of those, files whose old rows go
    changed: dict[str, str] = field(default_factory=dict)  # rewritten after ingestion: how
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable names
    set_aside: dict[str, str] = field(default_factory=dict)  # moved to _rejected/: bad headers


def rewritten(before: Signature, now: Signature) -> str:
    return f"rewritten after ingestion: size {before[0]} -> {now[0]} bytes, modified later"


def list_new_files(
    landing: LandingZone,
    source: str,
    columns: tuple[str, ...],
    done: dict[str, Signature | None],
    run_id: str,
) -> Listing:
    found, skipped = landing.scan(source)

    def to_read(path: Path) -> bool:  # new, or rewritten since it was read
        if str(path) not in done:
            return True
        before = done[str(path)]
        return before is not None and before != signature(path)

    ready, changing = landing.settled([p for p in found if to_read(p)])
    listing = Listing(skipped={**skipped, **changing})
    for path, now in ready.items():
        before = done.get(str(path))
        if before == now:
            continue  # ingested as it is
        if before is not None:  # ingested, then rewritten
            listing.changed[path.name] = rewritten(before, now)
            if not landing.reingest_changed:
                continue
            listing.replaced.append(str(path))
        problem = header_problem(header(str(path)), columns)
        if problem:  # quarantined as a whole file: nothing of it can be trusted
            landing.set_aside(path, {"reason": problem, "dagster_run_id": run_id})
            listing.set_aside[path.name] = problem
        else:
            listing.new[str(path)] = now
    listing.replaced = [p for p in listing.replaced if p in listing.new]
    return listing


def bronze_asset(source: str, columns: tuple[str, ...]) -> dg.AssetsDefinition:
    name = f"{source}_bronze"

    @dg.asset(
        name=name,
        group_name="bronze",
        kinds={"spark", "delta"},
        metadata=in_layer(BRONZE),
        description=f"Raw {source} CSV rows, each landing file appended exactly once.",
        check_specs=[
            dg.AssetCheckSpec(
                UNCHANGED,
                asset=name,
                description="No landing file was rewritten after it was ingested (with "
                "reingest_changed, such a file is read again and replaces its rows).",
            )
        ],
    )
    def _bronze(
        context: dg.AssetExecutionContext,
        spark: SparkResource,
        landing: LandingZone,
        lakehouse: Lakehouse,
    ) -> dg.MaterializeResult:
        """List the files not in the table yet and append them in one commit. Delta lets one
        append per listing of the table commit: if another run appended first, list again.
        Files rewritten since they were read (``reingest_changed``) replace their rows in it."""
        appended: list[str] = []
        tried: list[str] = []
        set_aside: dict[str, str] = {}
        for _ in range(ATTEMPTS):
            listed_at = lakehouse.version(BRONZE, name)
            done = ingested_files(lakehouse, name, listed_at)
            listing = list_new_files(landing, source, columns, done, context.run_id)
            set_aside.update(listing.set_aside)
            new = sorted(listing.new)
            context.log.info(
                f"{len(new)} file(s) to read in {landing.folder(source)} "
                f"({len(listing.replaced)} rewritten); {len(done)} done"
            )
            if not new or new == tried:  # listed again and still new: no data row in them
                break
            rows = read_csv_drops(spark.spark_session, new, columns, listing.new)
            info = {"dagster_run_id": context.run_id}
            # The files' old rows (if rewritten) go in the same commit as their new ones.
            replace = f"{SOURCE_FILE} IN ({', '.join(map(sql_literal, new))})"
            if lakehouse.append_once(
                rows, BRONZE, name, listed_at, info, replace if listing.replaced else None
            ):
                appended = new
                break
            tried = new
            context.log.warning("Another run appended to the table first: listing it again.")
        else:
            raise dg.Failure(f"Other runs kept appending to {name}; {ATTEMPTS} listings gave up.")
        for file_name, reason in {**listing.skipped, **set_aside}.items():
            where = "moved to _rejected/" if file_name in set_aside else "skipped"
            context.log.warning(f"{file_name}: {where}: {reason}")
        replaced = [Path(p).name for p in listing.replaced if p in appended]
        for file_name, how in listing.changed.items():
            done_with = "read again" if file_name in replaced else IGNORED
            context.log.warning(f"{file_name}: {how}; {done_with}")
        selected = {key.name for key in context.selected_asset_check_keys}
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    check_name=UNCHANGED,
                    passed=not listing.changed,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "changed_files": dg.MetadataValue.json(listing.changed),
                        "read_again": dg.MetadataValue.json(replaced),
                    },
                )
            ]
            if UNCHANGED in selected
            else [],
            metadata={
                **lakehouse.metadata(BRONZE, name),
                **({} if appended else {"rows_written": dg.MetadataValue.int(0)}),
                "new_files": len(appended),
                "files": dg.MetadataValue.json(sorted(appended)[:100]),
                "skipped_files": dg.MetadataValue.json(listing.skipped),
                "rejected_files": dg.MetadataValue.json(set_aside),
                "changed_files": dg.MetadataValue.json(listing.changed),
            },
        )

    return _bronze


customers_bronze = bronze_asset("customers", CUSTOMERS_COLUMNS)
sales_orders_bronze = bronze_asset("sales_orders", SALES_ORDERS_COLUMNS)
