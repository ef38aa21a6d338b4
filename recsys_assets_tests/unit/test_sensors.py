"""The CSV drop sensor, evaluated tick by tick with build_sensor_context on a real folder."""

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from recsys_assets.resources.landing import LandingZone
from recsys_assets.sensors import csv_drop_sensor, dead_run_sensor


class Ticks:
    """Evaluates the sensor like the daemon does: each tick gets the previous tick's cursor."""

    def __init__(self, root: Path):
        self.root = root
        self.cursor: str | None = None

    def tick(self, reingest_changed: bool = False) -> list[dg.RunRequest]:
        landing = LandingZone(root=str(self.root), reingest_changed=reingest_changed)
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(
                instance=instance, cursor=self.cursor, resources={"landing": landing}
            )
            data = csv_drop_sensor.evaluate_tick(context)
        self.cursor = data.cursor
        return list(data.run_requests or [])


def drop(root: Path, table: str, name: str, text: str = "a,b\n1,2\n") -> Path:
    path = root / table / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def ticks(tmp_path: Path) -> Ticks:
    return Ticks(tmp_path)


def test_new_files_launch_one_run_once_they_stop_changing(ticks):
    drop(ticks.root, "sales_orders", "a.csv")
    drop(ticks.root, "customers", "customers.csv")

    assert ticks.tick() == []  # first sight: the writer may still be at work
    [run] = ticks.tick()
    assert run.tags["recsys/new_files"] == "2"
    assert ticks.tick() == []  # never launched twice for the same files
    assert sorted(Path(p).name for p in json.loads(ticks.cursor)["launched"]) == [
        "a.csv",
        "customers.csv",
    ]


def test_a_second_drop_gets_its_own_run_with_its_own_run_key(ticks):
    drop(ticks.root, "sales_orders", "a.csv")
    ticks.tick()
    [first] = ticks.tick()
    drop(ticks.root, "sales_orders", "b.csv")
    ticks.tick()
    [second] = ticks.tick()

    assert second.tags["recsys/new_files"] == "1"
    assert first.run_key != second.run_key


def test_files_still_being_written_are_ignored(ticks):
    growing = drop(ticks.root, "sales_orders", "big.csv", "a,b\n")
    drop(ticks.root, "sales_orders", "next.csv.tmp")
    drop(ticks.root, "sales_orders", ".hidden.csv")

    assert ticks.tick() == []
    growing.write_text("a,b\n1,2\n3,4\n")  # size changed between ticks: not complete yet
    assert ticks.tick() == []
    [run] = ticks.tick()
    assert run.tags["recsys/new_files"] == "1"
    assert [Path(p).name for p in json.loads(ticks.cursor)["launched"]] == ["big.csv"]


def test_an_empty_landing_zone_skips(ticks):
    assert ticks.tick() == []
    assert json.loads(ticks.cursor) == {"launched": {}, "settling": {}}


def test_a_rewritten_file_is_launched_again_only_with_reingest_changed(tmp_path: Path):
    for reingest, expected in ((False, 0), (True, 1)):
        root = tmp_path / str(reingest)
        ticks = Ticks(root)
        path = drop(root, "sales_orders", "a.csv")
        ticks.tick()  # seen
        ticks.tick()  # settled: launched
        drop(root, "sales_orders", "a.csv", "a,b\n1,2\n3,4\n")  # rewritten
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))

        launched = [ticks.tick(reingest) for _ in range(2)]

        assert sum(len(requests) for requests in launched) == expected


@dg.op
def work() -> None:
    pass


@dg.job
def some_job() -> None:
    work()


def started_run(instance: dg.DagsterInstance, pid: int, *later_pids: int) -> str:
    """A run left STARTED by process ``pid``, then events from ``later_pids`` (step processes)."""
    run = instance.create_run_for_job(some_job)
    events = [(dg.DagsterEventType.RUN_START, pid)]
    events += [(dg.DagsterEventType.STEP_START, later) for later in later_pids]
    for event_type, writer in events:
        instance.handle_new_event(
            dg.EventLogEntry(
                error_info=None,
                level=logging.DEBUG,
                user_message="",
                run_id=run.run_id,
                timestamp=time.time(),
                dagster_event=dg.DagsterEvent(
                    event_type_value=event_type.value, job_name=some_job.name, pid=writer
                ),
            )
        )
    return run.run_id


def test_dead_run_sensor_fails_only_runs_whose_process_is_gone():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # noqa: S603
    gone.wait()  # exited and reaped: its pid runs nothing now
    with dg.instance_for_test() as instance:
        dead = started_run(instance, gone.pid)
        alive = started_run(instance, os.getpid(), gone.pid)  # a step process that ended

        dead_run_sensor(dg.build_sensor_context(instance=instance))

        assert instance.get_run_by_id(dead).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive).status == dg.DagsterRunStatus.STARTED
