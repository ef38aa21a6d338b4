"""Periodic retraining: the whole graph, bronze to recommendations, once a day."""

import dagster as dg

from recsys_assets.jobs import refresh_job

daily_refresh = dg.ScheduleDefinition(
    name="daily_refresh",
    job=refresh_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Ingest whatever landed, rebuild the tables, retrain and let the gates decide.",
)
