"""MLflow: the connection, tracking runs and model IO (aliases and verdicts: registry.py).

By default a SQLite store under RECSYS_HOME holds runs and the registry (aliases need a
database-backed store) and artifacts go to local disk; ``MLFLOW_TRACKING_URI`` points both at
a tracking server instead. Every MLflow run is tagged with the Dagster run id (the tag
dagster-mlflow uses), and its URL goes into the asset's metadata, so each side links to the other.
The Delta tables a run trains or evaluates on are its MLflow dataset inputs (``log_table``).
"""

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from pydantic import Field
from pyspark.ml import PipelineModel

from recsys_assets.registry import DAGSTER_RUN_TAG  # dagster-mlflow's tag for the same link
from recsys_assets.resources import mlflow_spark
from recsys_assets.resources.lakehouse import Lakehouse, MissingTable, row_count

LOCAL_UI = "http://127.0.0.1:5000"  # `make mlflow`


class DeltaTableSource(DeltaDatasetSource):
    """MLflow's Delta table source (path and version). MLflow 3.17's ``to_dict`` leaves out
    version 0 (``if version:``), the version of every table written once; this keeps it."""

    def to_dict(self) -> dict[Any, Any]:
        info = super().to_dict()
        if self.delta_table_version is not None:
            info["delta_table_version"] = self.delta_table_version
        return info


class DeltaTableDataset(MetaDataset):
    """One version of a Delta table as an MLflow dataset, described from its Delta log alone.

    ``mlflow.data.from_spark`` would profile the table with a Spark job through ``df.rdd``
    (driver-only: not on Spark Connect) and accepts a Delta version only for a local path;
    ``load_delta`` reads the table again. The digest is the table's id and version, which
    identify its rows; the profile its row count from the log's file statistics.
    """

    def __init__(self, path: str, version: int, table_id: str, rows: int, name: str):
        self._rows = rows
        digest = hashlib.md5(f"{table_id}@{version}".encode()).hexdigest()[:8]
        super().__init__(DeltaTableSource(path=path, delta_table_version=version), name, digest)

    @property
    def profile(self) -> dict[str, int]:
        return {"num_rows": self._rows}

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self.profile)}

    @property
    def path(self) -> str:
        return self.source.path  # type: ignore[attr-defined]

    @property
    def version(self) -> int:
        return self.source.delta_table_version  # type: ignore[attr-defined]

    def metadata(self) -> dict[str, Any]:
        """For the Dagster asset: the dataset's name, digest, Delta path and version."""
        return {
            f"{self.name}_digest": self.digest,
            f"{self.name}_uri": dg.MetadataValue.path(self.path),
            f"{self.name}_delta_version": dg.MetadataValue.int(self.version),
        }


def table_dataset(lakehouse: Lakehouse, layer: str, table: str) -> DeltaTableDataset:
    """The table at its current version, read from the Delta log (delta-rs): no row is read."""
    log = lakehouse.log(layer, table)
    if log is None:
        raise MissingTable(f"Delta table {lakehouse.uri(layer, table)} does not exist yet")
    return DeltaTableDataset(
        lakehouse.uri(layer, table), log.version(), log.metadata().id, row_count(log), table
    )


def create_sqlite_store(path: Path, artifact_root: str | None) -> None:
    """A new SQLite tracking store at ``path``, whole or not at all.

    MLflow builds a new store's schema through a few dozen migrations, some of which copy a
    table through ``_alembic_tmp_*``: a run killed among them leaves a database that every
    later run fails to open ("table _alembic_tmp_experiments already exists"). So the schema is
    built in a file of its own and hard-linked into place, which fails if another process was
    first (its store is then used); the partial file goes either way.
    """
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        store = SqlAlchemyStore(f"sqlite:///{partial}", artifact_root or "./mlruns")
        store.engine.dispose()
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
    finally:
        partial.unlink(missing_ok=True)


class MlflowResource(dg.ConfigurableResource):
    """Where runs and models live; ``client`` for registry.Registry."""

    tracking_uri: str = Field(description="sqlite:///path/mlflow.db, or http://host:port.")
    registry_uri: str | None = Field(default=None, description="Defaults to the tracking URI.")
    artifact_root: str | None = Field(
        default=None, description="Artifact location of new experiments on a local store."
    )
    spark_staging_uri: str = Field(
        description="Folder that Spark (also a cluster or Connect server) and this process share, "
        "where Spark ML models are staged on their way to and from MLflow over Spark Connect."
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.tracking_uri.startswith("sqlite:///"):
            create_sqlite_store(
                Path(self.tracking_uri.removeprefix("sqlite:///")), self.artifact_root
            )
        # Fail in seconds, not minutes, when a tracking server is down.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri, self.registry_uri or self.tracking_uri)

    @property
    def ui(self) -> str:
        """Where the links point: the tracking server (never its credentials), or for a local
        store the UI `make mlflow` starts."""
        server = urlsplit(self.tracking_uri)
        if server.scheme in ("http", "https") and server.hostname:
            netloc = server.hostname + (f":{server.port}" if server.port else "")
            return urlunsplit((server.scheme, netloc, server.path.rstrip("/"), "", ""))
        return LOCAL_UI

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created (with our artifact root) if it does not exist yet."""
        try:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None:
                return experiment.experiment_id
            location = f"{self.artifact_root.rstrip('/')}/{name}" if self.artifact_root else None
            return self.client.create_experiment(name, artifact_location=location)
        except (MlflowException, OSError) as error:
            raise dg.Failure(
                f"MLflow tracking store at {self.tracking_uri} is unreachable: {error}"
            ) from error

    @contextmanager
    def start_run(
        self,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        run_name: str,
        experiment: str,
        nested: bool = False,
    ) -> Iterator[Run]:
        """An MLflow run tagged with the Dagster run id and step."""
        tags = {DAGSTER_RUN_TAG: context.run_id, "dagster_step": context.op_handle.name}
        with mlflow.start_run(
            experiment_id=self.experiment_id(experiment),
            run_name=run_name,
            tags=tags,
            nested=nested,
        ) as run:
            yield run

    def log_table(
        self, lakehouse: Lakehouse, layer: str, table: str, context: str
    ) -> DeltaTableDataset:
        """Log the table's current version as a dataset input of the active run, in ``context``
        (``training``, ``evaluation``); returns it, for the asset's metadata."""
        dataset = table_dataset(lakehouse, layer, table)
        mlflow.log_input(dataset, context=context)
        return dataset

    def log_spark_model(self, model: PipelineModel, name: str, **kwargs: Any) -> ModelInfo:
        """``mlflow.spark.log_model``, also over Spark Connect."""
        return mlflow_spark.log_model(model, self.spark_staging_uri, name, **kwargs)

    def load_spark_model(self, model_uri: str) -> PipelineModel:
        """``mlflow.spark.load_model``, also over Spark Connect."""
        return mlflow_spark.load_model(model_uri, self.spark_staging_uri)

    def log_pyfunc(
        self,
        python_model: mlflow.pyfunc.PythonModel,
        registered_model_name: str,
        artifacts: dict[str, str],
        **kwargs: Any,
    ) -> str:
        """Log a ``PythonModel`` to the active run (``name="model"``) and register it as a new
        version of ``registered_model_name``; returns the version."""
        logged = mlflow.pyfunc.log_model(
            name="model",
            python_model=python_model,
            artifacts=artifacts,
            registered_model_name=registered_model_name,
            **kwargs,
        )
        return str(logged.registered_model_version)

    def run_url(self, run: Run) -> dg.MetadataValue:
        info = run.info
        return dg.MetadataValue.url(
            f"{self.ui}/#/experiments/{info.experiment_id}/runs/{info.run_id}"
        )

    def model_version_url(self, name: str, version: str) -> dg.MetadataValue:
        return dg.MetadataValue.url(f"{self.ui}/#/models/{name}/versions/{version}")
