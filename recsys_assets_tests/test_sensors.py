"""The CSV drop sensor, evaluated tick by tick with build_sensor_context on a real folder."""

import json
from pathlib import Path

import dagster as dg
import pytest

from recsys_assets.resources.landing import LandingZone
from recsys_assets.sensors import csv_drop_sensor


class Ticks:
    """Evaluates the sensor like the daemon does: each tick gets the previous tick's cursor."""

    def __init__(self, root: Path):
        self.root = root
        self.cursor: str | None = None

    def tick(self) -> list[dg.RunRequest]:
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(
                instance=instance,
                cursor=self.cursor,
                resources={"landing": LandingZone(root=str(self.root))},
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
    assert json.loads(ticks.cursor) == {"launched": [], "settling": {}}
