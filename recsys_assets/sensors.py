"""The file-drop sensor: a run for each batch of new, completely written CSV files."""

import hashlib
import json
from collections.abc import Iterator

import dagster as dg

from recsys_assets.jobs import refresh_job
from recsys_assets.resources.landing import LandingZone
from recsys_assets.settings import LANDING_TABLES


def file_signatures(landing: LandingZone) -> dict[str, list[int]]:
    signatures = {}
    for table in LANDING_TABLES:
        for path in landing.files(table):
            stat = path.stat()
            signatures[str(path)] = [stat.st_size, stat.st_mtime_ns]
    return signatures


@dg.sensor(
    job=refresh_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts refresh_job when new CSV files have landed and stopped changing.",
)
def csv_drop_sensor(
    context: dg.SensorEvaluationContext, landing: LandingZone
) -> Iterator[dg.RunRequest | dg.SkipReason]:
    """A file is ready once two ticks in a row see the same size and mtime (its writer is done).

    The cursor keeps the files already launched and the files still settling.
    """
    cursor = json.loads(context.cursor) if context.cursor else {}
    launched: set[str] = set(cursor.get("launched", []))
    settling: dict[str, list[int]] = cursor.get("settling", {})

    current = {p: sig for p, sig in file_signatures(landing).items() if p not in launched}
    ready = sorted(p for p, sig in current.items() if settling.get(p) == sig)
    still_settling = {p: sig for p, sig in current.items() if p not in ready}

    if ready:
        run_key = hashlib.sha256("\n".join(ready).encode()).hexdigest()[:16]
        yield dg.RunRequest(run_key=run_key, tags={"recsys/new_files": str(len(ready))})
    else:
        waiting = f"; {len(still_settling)} file(s) still being written" if still_settling else ""
        yield dg.SkipReason(f"No new complete CSV files{waiting}.")
    context.update_cursor(
        json.dumps({"launched": sorted(launched | set(ready)), "settling": still_settling})
    )
