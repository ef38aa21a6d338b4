"""Sensors: a run for each batch of new, completely written CSV files; the runs whose process
died marked failed, so the queue goes on; and (off by default) a retrain when features drift."""

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from recsys_assets.assets.monitoring import FEATURE_DRIFT_KEY
from recsys_assets.jobs import refresh_job
from recsys_assets.resources.landing import LandingZone, signature
from recsys_assets.settings import LANDING_TABLES, Settings


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


DRIFT_RETRAIN_TAG = "recsys/drift_retrain"  # on the runs drift_retrain_sensor launches
RETRAINED_ASSET = dg.AssetKey("churn_model")


def retrained_since(instance: dg.DagsterInstance, run_id: str, timestamp: float) -> bool:
    """Whether churn_model was materialised in run ``run_id`` or after ``timestamp``."""
    latest = instance.get_latest_materialization_event(RETRAINED_ASSET)
    return latest is not None and (latest.run_id == run_id or latest.timestamp > timestamp)


@dg.sensor(
    job=refresh_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Starts refresh_job (which retrains) when customer_features_drift saw a max PSI "
    "above RECSYS_DRIFT_RETRAIN_PSI (default 0.2) in a run that did not retrain churn_model.",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """One run per drifted evaluation of the feature drift check (its storage id is the run key
    and the cursor). An evaluation is not acted on when churn_model was trained in its run or
    since (a retrain now would see the data it saw), nor when its run is one this sensor
    launched, so a drift that retraining does not cure cannot start run after run."""
    threshold = Settings.from_env().drift_retrain_psi
    records = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [FEATURE_DRIFT_KEY]
    )
    record = records.get(FEATURE_DRIFT_KEY)
    evaluation = record.event.asset_check_evaluation if record and record.event else None
    if record is None or evaluation is None:
        return dg.SensorResult(skip_reason=f"{FEATURE_DRIFT_KEY.name} has not been evaluated.")
    if context.cursor and record.id <= int(context.cursor):
        return dg.SensorResult(skip_reason=f"Evaluation {record.id} was already looked at.")
    cursor = str(record.id)

    def skip(reason: str) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=f"Evaluation {record.id}: {reason}", cursor=cursor)

    max_psi = evaluation.metadata.get("max_psi")
    if max_psi is None:
        return skip("no PSI (the check skipped: nothing to compare with).")
    value = float(max_psi.value)  # type: ignore[arg-type]
    if value <= threshold:
        return skip(f"max PSI {value:.3f} is not above {threshold}.")
    run = context.instance.get_run_by_id(record.run_id)
    if run is not None and DRIFT_RETRAIN_TAG in run.tags:
        return skip(f"max PSI {value:.3f}, but run {record.run_id} was a drift retrain already.")
    if retrained_since(context.instance, record.run_id, record.event.timestamp):
        return skip(f"max PSI {value:.3f}, but churn_model was retrained in or since that run.")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"drift-{record.id}",
                tags={DRIFT_RETRAIN_TAG: record.run_id, "recsys/max_psi": f"{value:.4f}"},
            )
        ],
        cursor=cursor,
    )
