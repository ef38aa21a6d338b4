"""Jobs. Spark steps share one session, so every job runs in-process (one JVM per run)."""

import dagster as dg

from recsys_assets.assets.als import MODEL_NAME as ALS_MODEL
from recsys_assets.resources.mlflow import MlflowResource

# Everything downstream of the landing zone, including models added to the graph later.
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.groups("bronze").downstream(),
    executor_def=dg.in_process_executor,
    description="Ingest new CSV drops and rebuild every table and model downstream of them.",
)


class RollbackConfig(dg.Config):
    model: str = ALS_MODEL  # or "churn_model"


@dg.op
def rollback_model_champion(
    context: dg.OpExecutionContext, config: RollbackConfig, mlflow: MlflowResource
) -> None:
    """Give the champion alias back to the version the current champion replaced."""
    replaced, restored = mlflow.rollback(config.model)
    context.log.info(f"{config.model}: champion moved back from v{replaced} to v{restored}")


@dg.job(description="Restore a model's previous champion in one step (ALS unless configured).")
def rollback_champion():
    rollback_model_champion()
