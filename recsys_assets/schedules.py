"""Schedules: the daily refresh, and the weekly table maintenance (both off by default)."""

import dagster as dg

from recsys_assets.jobs import refresh_job
from recsys_assets.maintenance import maintain_tables

daily_refresh = dg.ScheduleDefinition(
    name="daily_refresh",
    job=refresh_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Ingest whatever landed, rebuild the tables, retrain and let the gates decide.",
)


weekly_maintenance = dg.ScheduleDefinition(
    name="weekly_maintenance",
    job=maintain_tables,
    cron_schedule="0 4 * * 0",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="OPTIMIZE and VACUUM every table, Sundays at 04:00 UTC (off by default).",
)
