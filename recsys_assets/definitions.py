"""The code location: every asset, check, job, sensor and resource of recsys_assets."""

import dagster as dg

from recsys_assets.assets import ASSET_CHECKS, ASSETS, als
from recsys_assets.jobs import als_champion_job, churn_champion_job, refresh_job, rollback_job
from recsys_assets.maintenance import maintain_tables
from recsys_assets.reject import reject_landing_file
from recsys_assets.resources.lakehouse import (
    PANDAS_IO_MANAGER,
    Lakehouse,
    LakehouseIOManager,
    delta_rs_options,
    pandas_io_manager,
)
from recsys_assets.resources.landing import LandingZone
from recsys_assets.resources.mlflow import MlflowResource
from recsys_assets.resources.spark import SparkResource, s3_session
from recsys_assets.schedules import daily_refresh, weekly_maintenance
from recsys_assets.sensors import csv_drop_sensor, dead_run_sensor, drift_retrain_sensor
from recsys_assets.settings import Settings


def from_env(settings: Settings, name: str, value: str | None) -> str | None:
    """``dg.EnvVar(name)`` if ``value`` came from that environment variable, else ``value``:
    Dagster resolves it at run time and the UI shows only the variable's name."""
    return dg.EnvVar(name) if name in settings.from_process_env else value


def build_resources(settings: Settings) -> dict[str, object]:
    store = settings.object_store  # the S3-compatible store of an s3a:// lakehouse, or None
    spark = SparkResource(
        master=settings.spark_master,
        remote=from_env(settings, "SPARK_REMOTE", settings.spark_remote),
        spark_config=settings.spark_conf,
        driver_config=s3_session(store) if store else {},
    )
    lakehouse = Lakehouse(
        root_uri=settings.lakehouse_uri, spark=spark, storage_options=delta_rs_options(store)
    )
    return {
        "spark": spark,
        "io_manager": LakehouseIOManager(lakehouse=lakehouse),
        PANDAS_IO_MANAGER: pandas_io_manager(settings.lakehouse_uri, store),
        "lakehouse": lakehouse,
        "landing": LandingZone(
            root=str(settings.landing_dir),
            settle_seconds=settings.landing_settle_seconds,
            reingest_changed=settings.landing_reingest_changed,
        ),
        "recommendation_policy": als.RecommendationPolicy(),
        "mlflow": MlflowResource(
            tracking_uri=from_env(settings, "MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri),
            registry_uri=from_env(settings, "MLFLOW_REGISTRY_URI", settings.mlflow_registry_uri),
            artifact_root=settings.mlflow_artifact_root,
            spark_staging_uri=settings.spark_staging_uri,
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    resources = build_resources(settings)
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[
            refresh_job,
            als_champion_job,
            churn_champion_job,
            rollback_job(resources),
            maintain_tables,
            reject_landing_file,
        ],
        schedules=[daily_refresh, weekly_maintenance],
        sensors=[csv_drop_sensor, dead_run_sensor, drift_retrain_sensor],
        resources=resources,
        # Spark steps share one session: every job runs in the run's process (one JVM a run).
        executor=dg.in_process_executor,
    )


defs = build_definitions(Settings.from_env())
