"""The Delta tables: Spark reads and writes them; delta-rs reads their logs.

Spark (Delta Lake's connector) moves every row, on the driver's executors or a Spark Connect
server, so no table's data passes through this process. delta-rs (``deltalake``) reads only the
Delta log: versions, row counts and commit history, for asset metadata and for the bookmarks of
the incremental steps. Each commit carries the Dagster run id in its ``userMetadata``. The
scikit-learn workflow's pandas-sized tables go through dagster-deltalake (delta-rs) instead.

On an S3-compatible store (``s3a://bucket/prefix``), delta-rs gets where the store is from
``storage_options`` (:func:`delta_rs_options`) and its credentials from the environment.
"""

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from dagster_deltalake import LocalConfig, S3Config
from dagster_deltalake.config import ClientConfig
from dagster_deltalake_pandas import DeltaLakePandasIOManager
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from recsys_assets.resources.spark import SparkResource
from recsys_assets.settings import S3A, ObjectStore
from recsys_assets.tables import LAYER_KEY, table_uri

USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"
# dagster-deltalake's IO manager, for the scikit-learn workflow's pandas-sized tables.
PANDAS_IO_MANAGER = "pandas_io_manager"
SOURCES = "sources"  # commit metadata: the upstream table versions a commit has consumed
HISTORY_SEARCHED = 100  # commits searched for a bookmark (maintenance adds one or two a week)


def delta_rs_options(store: ObjectStore | None) -> dict[str, str]:
    """delta-rs's storage options for the lakehouse's store (none for a folder); credentials
    are not among them: delta-rs reads them from the environment."""
    if store is None:
        return {}
    options = {
        "AWS_ENDPOINT_URL": store.endpoint,
        "AWS_REGION": store.region,
        "AWS_ALLOW_HTTP": "true" if store.allow_http else None,
        # A commit is a PUT with If-None-Match: *, which the store refuses when another writer
        # created that version first. deltalake 1.x commits only this way (etag is its
        # default; AWS_S3_ALLOW_UNSAFE_RENAME no longer applies), so the store must support
        # conditional writes: AWS S3 does, as do moto, MinIO and R2.
        "AWS_CONDITIONAL_PUT": "etag",
    }
    return {key: value for key, value in options.items() if value}


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system and path for a lakehouse URI: pyarrow names S3 ``s3://`` where
    Spark and delta-rs read ``s3a://``; it reads the store and credentials from the
    environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ...)."""
    prefix = f"{S3A}://"
    if uri.lower().startswith(prefix):
        uri = f"s3://{uri[len(prefix) :]}"
    return pafs.FileSystem.from_uri(uri)


class MissingTable(Exception):
    """A Delta table that has no commit yet."""


def column_schema(schema: StructType) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name=f.name, type=f.dataType.simpleString()) for f in schema]
    )


def file_stats(log: DeltaTable) -> pa.Table:
    """One row per data file at the log's version: its size, rows, and per-column
    ``min.<column>``, ``max.<column>``, ``null_count.<column>`` (what Delta collected)."""
    return pa.table(log.get_add_actions(flatten=True))


def row_count(log: DeltaTable) -> int:
    """The table's rows at the log's version, from its files' statistics (no data is read)."""
    files = file_stats(log)
    return int(pc.sum(files["num_records"]).as_py() or 0) if files.num_rows else 0


def rows_written(commit: dict[str, Any]) -> int:
    """Rows a commit wrote, from its operation metrics (a write's output or a MERGE's changes)."""
    metrics = commit.get("operationMetrics") or {}
    if "numOutputRows" in metrics:
        return int(metrics["numOutputRows"])
    return int(metrics.get("numTargetRowsInserted", 0)) + int(
        metrics.get("numTargetRowsUpdated", 0)
    )


def removes_rows(commit: dict[str, Any]) -> bool:
    """Whether a commit took rows out of the table (incremental readers cannot follow it)."""
    operation = commit.get("operation", "")
    if operation in ("DELETE", "TRUNCATE", "RESTORE"):
        return True
    if operation == "MERGE":
        return int((commit.get("operationMetrics") or {}).get("numTargetRowsDeleted", 0)) > 0
    mode = (commit.get("operationParameters") or {}).get("mode")
    return operation.endswith(("WRITE", "AS SELECT")) and mode == "Overwrite"


# Delta's optimistic concurrency control: another writer committed first (the error classes of
# io.delta.exceptions, e.g. two runs creating one table, or appending where a MERGE read).
CONFLICT = re.compile(
    r"DELTA_CONCURRENT_\w+|DELTA_(METADATA|PROTOCOL)_CHANGED"
    r"|Concurrent\w*Exception|(Metadata|Protocol)ChangedException"
)
CONFLICT_RETRIES = 3


def is_write_conflict(error: Exception) -> bool:
    """Whether a write failed because another transaction committed a conflicting change."""
    return CONFLICT.search(f"{type(error).__name__}: {error}") is not None


@contextmanager
def retried_on_conflict() -> Iterator[None]:
    """A write that lost to a concurrent writer fails its step into a retry: the step starts
    again from the tables as the winner left them (its bookmarks say what is left to do)."""
    try:
        yield
    except Exception as error:
        if not is_write_conflict(error):
            raise
        raise dg.RetryRequested(max_retries=CONFLICT_RETRIES, seconds_to_wait=2) from error


def sql_literal(value: str, type_name: str = "string") -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"CAST('{escaped}' AS {type_name})"


INTEGRAL = ("tinyint", "smallint", "int", "bigint")


@dataclass(frozen=True)
class KeyRange:
    """The range of one key column over a MERGE's source rows."""

    key: str
    type_name: str  # Spark's simple type name
    low: str | None  # bounds in their text form; None when every value is null
    high: str | None
    nulls: bool  # some value is null

    @property
    def sql(self) -> str:
        """``t.key BETWEEN low AND high`` over the target ``t``: a target row outside it cannot
        match. Bounds go through their text form, so every type Spark casts from a string works
        (MERGE takes no parameters)."""
        if self.low is None or self.high is None:  # every source key is null
            within = "FALSE"
        else:
            low, high = (sql_literal(v, self.type_name) for v in (self.low, self.high))
            within = f"t.`{self.key}` BETWEEN {low} AND {high}"
        return f"({within} OR t.`{self.key}` IS NULL)" if self.nulls else f"({within})"


def key_ranges(df: DataFrame, keys: list[str]) -> list[KeyRange] | None:
    """Each key's range over ``df``, in one aggregation; None when ``df`` has no rows."""
    types = {f.name: f.dataType.simpleString() for f in df.schema}
    bounds = df.agg(
        F.count(F.lit(1)).alias("rows"),
        *(F.min(k).cast("string").alias(f"min{i}") for i, k in enumerate(keys)),
        *(F.max(k).cast("string").alias(f"max{i}") for i, k in enumerate(keys)),
        *(F.count_if(F.col(k).isNull()).alias(f"nulls{i}") for i, k in enumerate(keys)),
    ).first()
    if bounds is None or bounds["rows"] == 0:
        return None
    return [
        KeyRange(k, types[k], bounds[f"min{i}"], bounds[f"max{i}"], bounds[f"nulls{i}"] > 0)
        for i, k in enumerate(keys)
    ]


def may_match(files: pa.Table, ranges: list[KeyRange]) -> bool:
    """Whether a target file may hold a row whose keys all lie in ``ranges``, judged by the
    files' statistics (``min.<key>``, ``max.<key>`` per file, as delta-rs lists them). Only
    integer keys without nulls are judged; anything else, or a file without statistics, may."""
    if any(r.type_name not in INTEGRAL or r.nulls or None in (r.low, r.high) for r in ranges):
        return True
    overlaps = pa.array([True] * files.num_rows, pa.bool_())
    for r in ranges:
        low, high = f"min.{r.key}", f"max.{r.key}"
        if low not in files.column_names or high not in files.column_names:
            return files.num_rows > 0
        in_range = pc.and_(
            pc.less_equal(files[low], int(r.high)), pc.greater_equal(files[high], int(r.low))
        )
        overlaps = pc.and_(overlaps, pc.fill_null(in_range, True))  # no statistics: may match
    return bool(pc.any(overlaps).as_py())


class Lakehouse(dg.ConfigurableResource):
    """Every Delta table of the project, at ``<root_uri>/<layer>/<table>`` (``tables.py``)."""

    root_uri: str = Field(description="Folder or object-store URI holding <layer>/<table>.")
    spark: dg.ResourceDependency[SparkResource]
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs options for an object store's log reads."
    )

    @property
    def session(self) -> SparkSession:
        return self.spark.spark_session

    def uri(self, layer: str, table: str) -> str:
        return table_uri(self.root_uri, layer, table)

    def log(self, layer: str, table: str) -> DeltaTable | None:
        """The table's Delta log (delta-rs), or None before its first commit."""
        try:
            return DeltaTable(self.uri(layer, table), storage_options=self.storage_options or None)
        except TableNotFoundError:
            return None

    def version(self, layer: str, table: str) -> int | None:
        log = self.log(layer, table)
        return None if log is None else log.version()

    def column_max(self, layer: str, table: str, column: str) -> Any | None:
        """The largest value of ``column``, from the files' statistics (no data is read); None
        when the table is empty or a file has no statistics of it."""
        log = self.log(layer, table)
        files = None if log is None else file_stats(log)
        name = f"max.{column}"
        if files is None or name not in files.column_names or files[name].null_count:
            return None
        return pc.max(files[name]).as_py()  # None for a table without files

    def read(self, layer: str, table: str, version: int | None = None) -> DataFrame:
        if self.log(layer, table) is None:
            raise MissingTable(f"Delta table {self.uri(layer, table)} does not exist yet")
        reader = self.session.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.uri(layer, table))

    def changes(self, layer: str, table: str, after: int, upto: int) -> DataFrame:
        """The rows of versions ``after + 1`` to ``upto``, from Delta's change data feed, with
        ``_change_type`` and ``_commit_version``. ``after=-1`` reads every version."""
        return (
            self.session.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", after + 1)
            .option("endingVersion", upto)
            .load(self.uri(layer, table))
        )

    @contextmanager
    def commit_info(self, info: dict[str, Any]) -> Iterator[None]:
        """Delta's ``userMetadata`` for the commits made inside: the run id, and bookmarks."""
        conf = self.session.conf
        conf.set(USER_METADATA, json.dumps(info, sort_keys=True))
        try:
            yield
        finally:
            conf.unset(USER_METADATA)

    def write(
        self,
        df: DataFrame,
        layer: str,
        table: str,
        mode: str,
        info: dict,
        cluster_by: list[str] | None = None,
    ) -> None:
        """Append or overwrite; either way the table's schema follows the code's.

        ``cluster_by``: rows are range-partitioned by these columns, so each data file holds a
        narrow range of them and a later MERGE on them skips the files outside its range.
        """
        if cluster_by:
            df = df.repartitionByRange(*cluster_by)
        writer = df.write.format("delta").mode(mode)
        if mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        else:  # a column added by newer code (e.g. bronze's record number) joins the table
            writer = writer.option("mergeSchema", "true")
        with retried_on_conflict(), self.commit_info(info):
            writer.save(self.uri(layer, table))

    def append_once(
        self,
        df: DataFrame,
        layer: str,
        table: str,
        listed_at: int | None,
        info: dict,
        replace_where: str | None = None,
    ) -> bool:
        """Append ``df``, computed from the table as it was at version ``listed_at``, unless
        another writer has appended since that listing: Delta's idempotent writes (``txnAppId``,
        ``txnVersion``) let one append per listing commit, and refuse or skip the others.
        ``replace_where`` (SQL every row of ``df`` matches): the rows matching it are replaced
        in the same commit. Returns whether this write committed (no rows commit nothing)."""
        after = -1 if listed_at is None else listed_at
        token = uuid.uuid4().hex
        writer = (
            df.write.format("delta")
            .mode("overwrite" if replace_where else "append")
            .option("txnAppId", f"recsys_assets/{table}")
            .option("txnVersion", after + 1)
            .option("mergeSchema", "true")
        )
        if replace_where:
            writer = writer.option("replaceWhere", replace_where)
        try:
            with self.commit_info({**info, "append": token}):
                writer.save(self.uri(layer, table))
        except Exception as error:  # noqa: BLE001 - a conflict arrives as the JVM's exception
            if not is_write_conflict(error):
                raise
            return False
        log = self.log(layer, table)
        newer = [] if log is None else log.history(max(1, log.version() - after))
        return any(token in (c.get("userMetadata") or "") for c in newer)

    def merge(
        self,
        df: DataFrame,
        layer: str,
        table: str,
        keys: list[str],
        info: dict,
        update_if: str | None = None,
    ) -> None:
        """Upsert ``df`` by ``keys`` in one commit (a new table is created from it); no rows, no
        commit. ``update_if``: a condition over ``t`` (target) and ``s`` (source) for replacing
        a match.

        The range of each key in ``df`` goes into the ON condition as literals, so Delta skips
        every target file whose statistics lie outside it. When no file's statistics overlap
        it (a drop of new orders), nothing can match, and an append does what the MERGE would
        at a fraction of its cost: Delta's idempotent writes let one writer append per table
        version, and one that loses to another writer MERGEs after all.
        """
        log = self.log(layer, table)
        if log is None:
            self.write(df, layer, table, "overwrite", info)
            return
        ranges = key_ranges(df, keys)
        if ranges is None:
            return
        if not may_match(file_stats(log), ranges):
            if self.append_once(df, layer, table, log.version(), info):
                return
        view = f"merge_source_{table}"
        df.createOrReplaceTempView(view)
        on = " AND ".join([*(f"t.`{k}` <=> s.`{k}`" for k in keys), *(r.sql for r in ranges)])
        when = f" AND ({update_if})" if update_if else ""
        try:
            with retried_on_conflict(), self.commit_info(info):
                self.session.sql(
                    f"MERGE INTO delta.`{self.uri(layer, table)}` AS t USING {view} AS s ON {on} "
                    f"WHEN MATCHED{when} THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
                )
        finally:
            self.session.catalog.dropTempView(view)

    def delete(self, layer: str, table: str, where: str, info: dict) -> int:
        """DELETE the rows matching the SQL condition ``where`` in one commit; rows deleted."""
        with retried_on_conflict(), self.commit_info(info):
            self.session.sql(f"DELETE FROM delta.`{self.uri(layer, table)}` WHERE {where}")
        log = self.log(layer, table)
        assert log is not None
        [last] = log.history(1)
        return int((last.get("operationMetrics") or {}).get("numDeletedRows", 0))

    def removed_since(self, layer: str, table: str, after: int) -> list[int]:
        """The versions after ``after`` whose commits removed rows (a DELETE, an overwrite)."""
        log = self.log(layer, table)
        if log is None or after < 0 or log.version() <= after:
            return []
        newer = log.history(log.version() - after)
        return sorted(c["version"] for c in newer if c["version"] > after and removes_rows(c))

    def bookmark(self, layer: str, table: str) -> dict[str, int]:
        """The upstream versions that the newest bookmarked commit of ``table`` had consumed."""
        log = self.log(layer, table)
        if log is None:
            return {}
        for commit in log.history(HISTORY_SEARCHED):  # newest first
            try:
                info = json.loads(commit.get("userMetadata") or "{}")
            except json.JSONDecodeError:
                continue
            if SOURCES in info:
                return {name: int(v) for name, v in info[SOURCES].items()}
        return {}

    def metadata(self, layer: str, table: str, schema: StructType | None = None) -> dict:
        """Asset metadata from the Delta log: rows, version, what the last commit wrote."""
        log = self.log(layer, table)
        if log is None:
            return {"dagster/uri": self.uri(layer, table)}
        rows = row_count(log)
        [last] = log.history(1)
        metadata = {
            **self.spark.ui_metadata(),  # the step's Spark jobs, while the run lasts
            "dagster/row_count": dg.MetadataValue.int(rows),
            "dagster/uri": self.uri(layer, table),
            "delta_version": dg.MetadataValue.int(log.version()),
            "delta_operation": last.get("operation", ""),
            "rows_written": dg.MetadataValue.int(rows_written(last)),
        }
        if schema is not None:
            metadata["dagster/column_schema"] = column_schema(schema)
        return metadata

    def optimize(self, layer: str, table: str) -> dict[str, Any]:
        """OPTIMIZE (bin-packing small files); returns its metrics."""
        [row] = self.session.sql(f"OPTIMIZE delta.`{self.uri(layer, table)}`").collect()
        return row["metrics"].asDict() if row["metrics"] else {}

    def vacuum(self, layer: str, table: str, retain_hours: int) -> None:
        """VACUUM: delete files no version within ``retain_hours`` still reads."""
        self.session.sql(f"VACUUM delta.`{self.uri(layer, table)}` RETAIN {retain_hours} HOURS")


class LakehouseIOManager(dg.ConfigurableIOManager):
    """Stores ``pyspark.sql.DataFrame`` outputs as Delta tables (overwritten) and loads inputs
    back, in Spark. An asset names its layer with ``tables.in_layer``; assets that append or
    MERGE write through ``Lakehouse`` themselves."""

    lakehouse: dg.ResourceDependency[Lakehouse]

    def handle_output(self, context: dg.OutputContext, obj: DataFrame) -> None:
        layer = (context.definition_metadata or {})[LAYER_KEY]
        table = context.asset_key.path[-1]
        self.lakehouse.write(obj, layer, table, "overwrite", {"dagster_run_id": context.run_id})
        context.add_output_metadata(self.lakehouse.metadata(layer, table, obj.schema))

    def load_input(self, context: dg.InputContext) -> DataFrame:
        upstream = context.upstream_output
        assert upstream is not None
        layer = (upstream.definition_metadata or {})[LAYER_KEY]
        try:
            return self.lakehouse.read(layer, context.asset_key.path[-1])
        except MissingTable as missing:
            name = context.asset_key.to_user_string()
            raise dg.Failure(
                f"{missing}: materialise {name} first, or select '*{context.op_def.name}' to "
                "include every upstream asset."
            ) from missing


def pandas_io_manager(root_uri: str, store: ObjectStore | None) -> DeltaLakePandasIOManager:
    """dagster-deltalake (delta-rs) for pandas frames, at the same ``<root>/<layer>/<table>``:
    tables of one row per customer that scikit-learn reads or writes, with no Spark involved.
    On a store, the same place as :func:`delta_rs_options` (its conditional put is
    deltalake's default); credentials from the environment, never in the config."""
    if store is None:
        return DeltaLakePandasIOManager(root_uri=root_uri, storage_options=LocalConfig())
    return DeltaLakePandasIOManager(
        root_uri=root_uri,
        storage_options=S3Config(endpoint=store.endpoint, region=store.region),
        client_options=ClientConfig(allow_http=store.allow_http or None),
    )
