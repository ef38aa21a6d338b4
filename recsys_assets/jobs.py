"""Jobs. Spark steps share one session, so every job runs in-process (one JVM per run)."""

import dagster as dg

# Everything downstream of the landing zone, including models added to the graph later.
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.groups("bronze").downstream(),
    executor_def=dg.in_process_executor,
    description="Ingest new CSV drops and rebuild every table and model downstream of them.",
)
