"""Delta tables: the IO manager that stores Spark DataFrames with delta-rs, and direct table access.

Tables live at ``<root_uri>/<layer>/<table>``; an asset names its layer with the ``schema``
definition metadata (the dagster-deltalake convention), so asset keys stay unprefixed.
Data passes Spark <-> Arrow, so no Delta jars are needed on the JVM side.
"""

from collections.abc import Sequence
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OutputContext,
    ResourceDependency,
    TableColumn,
    TableSchema,
)
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_deltalake import DeltalakeBaseArrowTypeHandler, DeltaLakeIOManager, LocalConfig
from dagster_deltalake.io_manager import DeltaLakeDbClient, TableConnection
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError
from pydantic import Field
from pyspark.sql import DataFrame, SparkSession

from recsys_assets.resources.spark import SparkResource


def table_schema(schema: pa.Schema) -> TableSchema:
    return TableSchema(columns=[TableColumn(name=f.name, type=str(f.type)) for f in schema])


class PySparkDeltaTypeHandler(DeltalakeBaseArrowTypeHandler[DataFrame]):
    """Stores ``pyspark.sql.DataFrame`` outputs as Delta tables and loads inputs back into Spark."""

    def __init__(self, spark: SparkResource):
        self._spark = spark

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [DataFrame]

    def to_arrow(self, obj: DataFrame) -> tuple[pa.RecordBatchReader, dict[str, Any]]:
        return obj.toArrow().to_reader(), {}

    def from_arrow(self, obj: pa.RecordBatchReader, target_type: type) -> DataFrame:
        session: SparkSession = self._spark.spark_session
        return session.createDataFrame(obj.read_all())

    def load_input(
        self, context: InputContext, table_slice: TableSlice, connection: TableConnection
    ) -> DataFrame:
        try:
            return super().load_input(context, table_slice, connection)
        except TableNotFoundError as missing:
            upstream = context.asset_key.to_user_string()
            raise dg.Failure(
                f"Delta table {connection.table_uri} does not exist yet: materialise {upstream} "
                f"first, or select '*{context.op_def.name}' to include every upstream asset."
            ) from missing

    def handle_output(
        self,
        context: OutputContext,
        table_slice: TableSlice,
        obj: DataFrame,
        connection: TableConnection,
    ) -> None:
        if table_slice.partition_dimensions:  # dagster-deltalake's partition-aware write
            super().handle_output(context, table_slice, obj, connection)
            return
        # Our own write for whole tables: the base handler's stats code does not read
        # deltalake 1.x's arro3 add actions, and we want a schema that may evolve on overwrite.
        mode = (context.definition_metadata or {}).get("mode") or "overwrite"
        data = obj.toArrow()
        table = None
        if mode == "append" and data.num_rows == 0:  # appending nothing to a table: no commit
            try:
                table = DeltaTable(connection.table_uri, storage_options=connection.storage_options)
            except TableNotFoundError:
                pass  # the first write creates the table, empty or not
        if table is None:
            write_deltalake(
                connection.table_uri,
                data,
                mode=mode,
                schema_mode="overwrite" if mode == "overwrite" else None,
                storage_options=connection.storage_options,
                commit_properties=CommitProperties(
                    custom_metadata={"dagster_run_id": context.run_id}
                ),
            )
            table = DeltaTable(connection.table_uri, storage_options=connection.storage_options)
        files = pa.table(table.get_add_actions(flatten=True))
        context.add_output_metadata(
            {
                "dagster/row_count": MetadataValue.int(
                    int(pc.sum(files["num_records"]).as_py() or 0)
                ),
                "dagster/column_schema": table_schema(data.schema),
                "dagster/uri": connection.table_uri,
                "rows_written": MetadataValue.int(data.num_rows),
                "delta_version": MetadataValue.int(table.version()),
            }
        )


class LakehouseIOManager(DeltaLakeIOManager):
    """dagster-deltalake's IO manager with a PySpark type handler (it ships none)."""

    spark: ResourceDependency[SparkResource]

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return []  # built per run in create_io_manager: the handler needs the Spark resource

    def create_io_manager(self, context) -> DbIOManager:
        return DbIOManager(
            db_client=DeltaLakeDbClient(),
            database="deltalake",
            schema=self.schema_,
            type_handlers=[PySparkDeltaTypeHandler(self.spark)],
            default_load_type=DataFrame,
            io_manager_name="LakehouseIOManager",
        )


class Lakehouse(ConfigurableResource):
    """Direct access to the Delta tables, for assets that read their own table's history."""

    root_uri: str = Field(description="Directory or object-store URI holding <layer>/<table>.")

    def table_uri(self, layer: str, table: str) -> str:
        return f"{self.root_uri.rstrip('/')}/{layer}/{table}"

    def load(self, layer: str, table: str) -> DeltaTable | None:
        """The Delta table, or None before its first commit."""
        try:
            return DeltaTable(self.table_uri(layer, table))
        except TableNotFoundError:
            return None


def lakehouse_io_manager(root_uri: str, spark: SparkResource) -> LakehouseIOManager:
    return LakehouseIOManager(root_uri=root_uri, storage_options=LocalConfig(), spark=spark)
