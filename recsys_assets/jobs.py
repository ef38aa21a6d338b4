"""Jobs (in-process, the code location's executor: Spark steps share one session)."""

from collections.abc import Mapping

import dagster as dg

from recsys_assets.assets import als, churn, materialize
from recsys_assets.resources.mlflow import MlflowResource

# Everything downstream of the landing zone, including models added to the graph later.
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.groups("bronze").downstream(),
    description="Ingest new CSV drops and rebuild every table and model downstream of them.",
)


def champion_job(champion: str):
    """One model's whole chain, from the landing files to its champion alias."""
    return dg.define_asset_job(
        f"{champion}_job",
        selection=dg.AssetSelection.assets(champion).upstream(),
        description=f"Ingest, rebuild, retrain and gate everything {champion} needs, then "
        "promote the challenger if it passed (no batch scoring).",
    )


als_champion_job = champion_job("als_champion")
churn_champion_job = champion_job("churn_champion")

# The batch table each registered model scores.
SCORED_BY = {als.MODEL_NAME: "customer_recommendations", churn.MODEL_NAME: "churn_predictions"}
# Each model's registry, with the serving model whose champion follows it.
REGISTRY_OF = {als.MODEL_NAME: als.registry, churn.MODEL_NAME: churn.registry}


class RollbackConfig(dg.Config):
    model: str = als.MODEL_NAME  # or churn.MODEL_NAME


def rollback_job(resources: Mapping[str, object]) -> dg.JobDefinition:
    """The rollback job; ``resources`` are the code location's, for the re-scoring run."""

    @dg.op
    def rollback_model_champion(
        context: dg.OpExecutionContext, config: RollbackConfig, mlflow: MlflowResource
    ) -> None:
        """Give the champion alias back to the version it replaced, then re-score its table."""
        if config.model not in SCORED_BY:
            raise dg.Failure(f"Unknown model {config.model!r}: one of {sorted(SCORED_BY)}.")
        models = REGISTRY_OF[config.model](mlflow)
        replaced, restored = models.rollback(context.run_id)
        context.log.info(
            f"{config.model}: champion moved back from v{replaced} to v{restored}; "
            f"v{replaced} is marked ROLLED_BACK and will not be promoted again"
        )
        serving, served = models.serving_model().name, models.served_from(restored)
        if served:
            context.log.info(f"{serving}@champion moved to v{served}, built from v{restored}")
        else:
            context.log.warning(
                f"No {serving} version was built from {config.model} v{restored}: "
                f"{serving}@champion is removed until a champion is promoted again"
            )
        rescore(context, SCORED_BY[config.model], resources)

    @dg.job(
        name="rollback_champion",
        description="Restore a model's previous champion and re-score its batch table.",
    )
    def rollback_champion():
        rollback_model_champion()

    return rollback_champion


def rescore(context: dg.OpExecutionContext, table: str, resources: Mapping[str, object]) -> None:
    """Materialise ``table`` again (a run of its own, in this instance) from the champion."""
    result = materialize(
        [table],
        resources,
        instance=context.instance,
        tags={"rollback_run_id": context.run_id},
        raise_on_error=False,
    )
    if not result.success:
        raise dg.Failure(
            f"The champion was rolled back, but re-scoring {table} failed in run "
            f"{result.run_id}; materialise {table} again."
        )
    context.log.info(f"{table} re-scored from the restored champion in run {result.run_id}")
