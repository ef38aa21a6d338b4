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

import dagster as dg
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from recsys_assets.expectations import RESCUED_DATA
from recsys_assets.resources.lakehouse import Lakehouse
from recsys_assets.resources.landing import LandingZone
from recsys_assets.resources.spark import SparkResource
from recsys_assets.schemas import CUSTOMERS_COLUMNS, SALES_ORDERS_COLUMNS
from recsys_assets.tables import BRONZE, in_layer

SOURCE_FILE = "_source_file"
INGESTED_AT = "_ingested_at"

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


def ingested_files(lakehouse: Lakehouse, table: str, version: int | None) -> set[str]:
    """The ``_source_file`` values in a bronze table at ``version`` (a distinct file list)."""
    if version is None:
        return set()
    files = lakehouse.read(BRONZE, table, version).select(SOURCE_FILE).distinct().collect()
    return {row[SOURCE_FILE] for row in files}


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


def read_csv_drops(session: SparkSession, files: list[str], columns: tuple[str, ...]) -> DataFrame:
    """Every row of ``files`` as strings, columns matched by the header's names, with the file's
    path; each file's header must name ``columns`` in some order (see ``header_problem``)."""
    schema = raw_schema(columns)
    if not files:
        empty = StructType([*schema.fields, StructField(SOURCE_FILE, StringType())])
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
        for f in files
    ]
    return reduce(DataFrame.unionByName, reads).withColumn(INGESTED_AT, F.current_timestamp())


ATTEMPTS = 3  # listings of the table before giving up to runs that keep ingesting first


@dataclass
class Listing:
    """The landing files not in the table yet, and those left out, with the reasons."""

    new: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable names
    set_aside: dict[str, str] = field(default_factory=dict)  # moved to _rejected/: bad headers


def list_new_files(
    landing: LandingZone, source: str, columns: tuple[str, ...], done: set[str], run_id: str
) -> Listing:
    found, skipped = landing.scan(source)
    ready, changing = landing.settled([p for p in found if str(p) not in done])
    listing = Listing(skipped={**skipped, **changing})
    for path in ready:
        problem = header_problem(header(str(path)), columns)
        if problem:  # quarantined as a whole file: nothing of it can be trusted
            landing.set_aside(path, {"reason": problem, "dagster_run_id": run_id})
            listing.set_aside[path.name] = problem
        else:
            listing.new.append(str(path))
    return listing


def bronze_asset(source: str, columns: tuple[str, ...]) -> dg.AssetsDefinition:
    name = f"{source}_bronze"

    @dg.asset(
        name=name,
        group_name="bronze",
        kinds={"spark", "delta"},
        metadata=in_layer(BRONZE),
        description=f"Raw {source} CSV rows, each landing file appended exactly once.",
    )
    def _bronze(
        context: dg.AssetExecutionContext,
        spark: SparkResource,
        landing: LandingZone,
        lakehouse: Lakehouse,
    ) -> dg.MaterializeResult:
        """List the files not in the table yet and append them in one commit. Delta lets one
        append per listing of the table commit: if another run appended first, list again."""
        appended: list[str] = []
        tried: list[str] = []
        set_aside: dict[str, str] = {}
        for _ in range(ATTEMPTS):
            listed_at = lakehouse.version(BRONZE, name)
            done = ingested_files(lakehouse, name, listed_at)
            listing = list_new_files(landing, source, columns, done, context.run_id)
            set_aside.update(listing.set_aside)
            new = listing.new
            context.log.info(
                f"{len(new)} new file(s) in {landing.folder(source)}; {len(done)} done"
            )
            if not new or new == tried:  # listed again and still new: no data row in them
                break
            rows = read_csv_drops(spark.spark_session, new, columns)
            info = {"dagster_run_id": context.run_id}
            if lakehouse.append_once(rows, BRONZE, name, listed_at, info):
                appended = new
                break
            tried = new
            context.log.warning("Another run appended to the table first: listing it again.")
        else:
            raise dg.Failure(f"Other runs kept appending to {name}; {ATTEMPTS} listings gave up.")
        for file_name, reason in {**listing.skipped, **set_aside}.items():
            where = "moved to _rejected/" if file_name in set_aside else "skipped"
            context.log.warning(f"{file_name}: {where}: {reason}")
        return dg.MaterializeResult(
            metadata={
                **lakehouse.metadata(BRONZE, name),
                **({} if appended else {"rows_written": dg.MetadataValue.int(0)}),
                "new_files": len(appended),
                "files": dg.MetadataValue.json(sorted(appended)[:100]),
                "skipped_files": dg.MetadataValue.json(listing.skipped),
                "rejected_files": dg.MetadataValue.json(set_aside),
            }
        )

    return _bronze


customers_bronze = bronze_asset("customers", CUSTOMERS_COLUMNS)
sales_orders_bronze = bronze_asset("sales_orders", SALES_ORDERS_COLUMNS)
