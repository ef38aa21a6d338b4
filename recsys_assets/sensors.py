"""Sensors: a run for each batch of new, completely written CSV files; and the runs whose
process died marked failed, so the queue goes on."""

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from recsys_assets.jobs import refresh_job
from recsys_assets.resources.landing import LandingZone, signature
from recsys_assets.settings import LANDING_TABLES


def file_signatures(landing: LandingZone) -> dict[str, list[int]]:
    return {
        str(path): list(signature(path))
        for table in LANDING_TABLES
        for path in landing.files(table)
    }


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

    The cursor keeps the files already launched (with their signatures: with
    ``reingest_changed``, a file rewritten since is launched again) and the files settling.
    """
    cursor = json.loads(context.cursor) if context.cursor else {}
    launched: dict[str, list[int] | None] = cursor.get("launched", {})
    if isinstance(launched, list):  # a cursor from before signatures were kept
        launched = dict.fromkeys(launched)
    settling: dict[str, list[int]] = cursor.get("settling", {})

    def is_new(path: str, sig: list[int]) -> bool:
        if path not in launched:
            return True
        return landing.reingest_changed and launched[path] not in (None, sig)

    current = {p: sig for p, sig in file_signatures(landing).items() if is_new(p, sig)}
    ready = sorted(p for p, sig in current.items() if settling.get(p) == sig)
    still_settling = {p: sig for p, sig in current.items() if p not in ready}

    if ready:
        key = "\n".join(f"{p} {current[p]}" for p in ready)
        run_key = hashlib.sha256(key.encode()).hexdigest()[:16]
        yield dg.RunRequest(run_key=run_key, tags={"recsys/new_files": str(len(ready))})
    else:
        waiting = f"; {len(still_settling)} file(s) still being written" if still_settling else ""
        yield dg.SkipReason(f"No new complete CSV files{waiting}.")
    launched.update({p: current[p] for p in ready})
    context.update_cursor(json.dumps({"launched": launched, "settling": still_settling}))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, killed but not reaped, is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state = stat.rsplit(")", 1)[1].split()[0]  # the field after the (command name)
    return state not in ("Z", "X")


def dead_runs(instance: dg.DagsterInstance) -> dict[str, int]:
    """STARTED runs whose run worker is gone: run id -> the pid that started the run (the
    process that orchestrates it to the end, whatever its executor)."""
    dead = {}
    for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        run_id = record.dagster_run.run_id
        started = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.RUN_START, limit=1, ascending=False
        ).records
        event = started[0].event_log_entry.dagster_event if started else None
        pid = event.pid if event else None
        if pid is not None and not process_alive(pid):
            dead[run_id] = pid
    return dead


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks runs whose process died (kill -9, a crash, a closed terminal) as failed, "
    "so queued runs go on.",
)
def dead_run_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    """Dagster's run monitoring fails a dead run only through run launchers that can check
    their workers (Kubernetes, ECS, Docker); under the default launcher, and for CLI runs, a
    killed run stays STARTED and holds the one run slot for ever. Runs execute on this machine
    here, so the pid that started a run says whether it is still running."""
    instance = context.instance
    if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return dg.SkipReason("Runs are launched elsewhere: their launcher checks their health.")
    dead = dead_runs(instance)
    for run_id, pid in dead.items():
        run = instance.get_run_by_id(run_id)
        if run is None or run.status != dg.DagsterRunStatus.STARTED:
            continue
        instance.report_run_failed(
            run,
            f"The process running this run (pid {pid}) is gone: killed or crashed. Every Delta "
            "table is readable at its last commit; the next run picks up what this one had not "
            "committed.",
        )
    return dg.SkipReason(f"Marked failed: {sorted(dead)}." if dead else "No dead run.")
