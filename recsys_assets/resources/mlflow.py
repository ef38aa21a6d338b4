"""MLflow tracking and the model registry, with the champion/challenger alias conventions.

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
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from pydantic import Field
from pyspark.ml import PipelineModel

from recsys_assets.promotion import GateDecision
from recsys_assets.resources import mlflow_spark

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION_TAG = "previous_champion_version"
# What a gate decided about a model version (as mlops-stacks' model_validation_status), in which
# Dagster run, and against which champion: promotion re-checks all three.
VALIDATION_STATUS_TAG = "validation_status"
VALIDATION_REASON_TAG = "validation_reason"
VALIDATION_RUN_TAG = "validation_dagster_run_id"
VALIDATION_CHAMPION_TAG = "validation_champion_version"
NO_CHAMPION = "none"
DAGSTER_RUN_TAG = "dagster_run_id"  # dagster-mlflow's tag, so its run lookup finds ours too


class MlflowResource(dg.ConfigurableResource):
    """Where runs, models and aliases live, and the few registry moves the pipeline makes."""

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

    def version_with_alias(self, model: str, alias: str) -> ModelVersion | None:
        try:
            return self.client.get_model_version_by_alias(model, alias)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def set_alias(self, model: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(model, alias, version)

    def record_validation(
        self,
        model: str,
        version: str,
        decision: GateDecision,
        dagster_run_id: str,
        champion_version: str | None,
        **extra_tags: str,
    ) -> None:
        """Write a gate's verdict on the model version it judged, for promotion and for humans."""
        tags = {
            VALIDATION_STATUS_TAG: "PASSED" if decision.passed else "FAILED",
            VALIDATION_REASON_TAG: decision.reason,
            VALIDATION_RUN_TAG: dagster_run_id,
            VALIDATION_CHAMPION_TAG: champion_version or NO_CHAMPION,
            **extra_tags,
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(model, version, key, value)

    def promote_validated(self, model: str, dagster_run_id: str) -> tuple[str, str | None]:
        """Move ``champion`` to the challenger if this run's gate passed it against the current
        champion; returns (promoted version, replaced version). Anything else raises and moves
        nothing, so a stale verdict or a champion moved meanwhile never promotes."""
        challenger = self.version_with_alias(model, CHALLENGER)
        if challenger is None:
            raise dg.Failure(f"{model} has no '{CHALLENGER}' version to promote.")
        version, tags = str(challenger.version), challenger.tags
        if tags.get(VALIDATION_RUN_TAG) != dagster_run_id:
            raise dg.Failure(
                f"No gate judged {model} v{version} in this run: materialise the evaluation "
                "and its gate in the same run as the champion; champion unchanged."
            )
        if tags.get(VALIDATION_STATUS_TAG) != "PASSED":
            raise dg.Failure(
                f"{model} v{version} failed its gate ({tags.get(VALIDATION_REASON_TAG)}); "
                "champion unchanged."
            )
        current = self.version_with_alias(model, CHAMPION)
        now = str(current.version) if current else NO_CHAMPION
        if now != tags.get(VALIDATION_CHAMPION_TAG):
            raise dg.Failure(
                f"The champion moved to {now} after the gate compared against "
                f"{tags.get(VALIDATION_CHAMPION_TAG)}: nothing promoted."
            )
        if now != NO_CHAMPION:  # kept on the new champion, for the rollback job
            self.client.set_model_version_tag(model, version, PREVIOUS_CHAMPION_TAG, now)
        self.set_alias(model, CHAMPION, version)
        return version, None if now == NO_CHAMPION else now

    def rollback(self, model: str) -> tuple[str, str]:
        """Give ``champion`` back to the version it replaced; returns (from, to)."""
        current = self.version_with_alias(model, CHAMPION)
        if current is None:
            raise dg.Failure(f"{model} has no champion to roll back.")
        previous = current.tags.get(PREVIOUS_CHAMPION_TAG)
        if not previous:
            raise dg.Failure(f"{model} v{current.version} replaced no earlier champion.")
        self.set_alias(model, CHAMPION, previous)
        return str(current.version), previous
