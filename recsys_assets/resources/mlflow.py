"""MLflow: the connection, tracking runs and model IO (aliases and verdicts: registry.py).

By default a SQLite store under RECSYS_HOME holds runs and the registry (aliases need a
database-backed store) and artifacts go to local disk; ``MLFLOW_TRACKING_URI`` points both at
a tracking server instead. Every MLflow run is tagged with the Dagster run id (the tag
dagster-mlflow uses), and its URL goes into the asset's metadata, so each side links to the other.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from pydantic import Field
from pyspark.ml import PipelineModel

from recsys_assets.resources import mlflow_spark

DAGSTER_RUN_TAG = "dagster_run_id"  # dagster-mlflow's tag, so its run lookup finds ours too


class MlflowResource(dg.ConfigurableResource):
    """Where runs and models live; ``client`` for registry.Registry."""

    tracking_uri: str = Field(description="sqlite:///path/mlflow.db, or http://host:port.")
    registry_uri: str | None = Field(default=None, description="Defaults to the tracking URI.")
    artifact_root: str | None = Field(
        default=None, description="Artifact location of new experiments on a local store."
    )
    experiment_name: str = Field(default="recsys/als_recommendation")
    ui_url: str = Field(default="http://127.0.0.1:5000", description="The MLflow UI, for links.")
    spark_staging_uri: str = Field(
        description="Folder that Spark (also a cluster or Connect server) and this process share, "
        "where Spark ML models are staged on their way to and from MLflow over Spark Connect."
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        # Fail in seconds, not minutes, when a tracking server is down.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.registry_uri or self.tracking_uri)

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri, self.registry_uri or self.tracking_uri)

    def experiment_id(self, name: str | None = None) -> str:
        """The experiment's id, created (with our artifact root) if it does not exist yet."""
        name = name or self.experiment_name
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
        experiment: str | None = None,
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

    def log_spark_model(self, model: PipelineModel, **kwargs: Any) -> ModelInfo:
        """``mlflow.spark.log_model``, also over Spark Connect."""
        return mlflow_spark.log_model(model, self.spark_staging_uri, **kwargs)

    def load_spark_model(self, model_uri: str) -> PipelineModel:
        """``mlflow.spark.load_model``, also over Spark Connect."""
        return mlflow_spark.load_model(model_uri, self.spark_staging_uri)

    def run_url(self, run: Run) -> dg.MetadataValue:
        info = run.info
        return dg.MetadataValue.url(
            f"{self.ui_url}/#/experiments/{info.experiment_id}/runs/{info.run_id}"
        )
