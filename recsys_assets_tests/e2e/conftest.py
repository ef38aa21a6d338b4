"""A real `dagster dev` (webserver and daemon) on 127.0.0.1, shared by the end-to-end tests.

The session starts ``dagster dev`` in its own process session with a temporary ``DAGSTER_HOME``
(the repo's dagster.yaml) and ``RECSYS_HOME``, drops a generated batch of CSV files into the
landing zone and waits for the run that ``csv_drop_sensor`` launches. Teardown stops everything
the session started (webserver, daemon, code server, run worker, Spark JVM), also on failure.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from recsys_assets import datagen
from recsys_assets_tests.processes import HOST, REPO, Service, free_port, wait_for
from recsys_assets_tests.support import DEPLOYMENT_ENV

STARTUP_TIMEOUT_S = 240  # webserver answering and the code location loaded
RUN_TIMEOUT_S = 15 * 60  # the sensor's two ticks (15 s apart) plus the whole refresh_job run
POLL_S = 3
# Big enough for ALS and for both classes on both sides of the churn split; small enough to be fast.
DATA = {"customers": 300, "days": 60, "seed": 7, "start_date": date(2024, 1, 1)}
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


RESTORE_SIGINT_AND_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class GraphQLError(Exception):
    pass


@dataclass
class DagsterDev:
    """A running ``dagster dev`` and its temporary homes."""

    service: Service
    url: str
    dagster_home: Path
    recsys_home: Path
    location: str = ""  # the code location and its repository
    repository: str = ""

    @property
    def landing(self) -> Path:
        return self.recsys_home / "landing"

    def graphql(self, query: str, variables: dict | None = None, timeout_s: float = 30) -> dict:
        return graphql(self.url, query, variables, timeout_s)

    def log_tail(self, lines: int = 120) -> str:
        return self.service.log_tail(lines)

    def check_alive(self) -> None:
        try:
            self.service.check_alive()
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; log tail:\n{self.log_tail()}") from exc

    def stop(self) -> None:
        """SIGTERM to dagster dev alone lets it stop its webserver and daemon in order; then
        whatever is left of its session (code server, run worker, Spark's JVM) is stopped."""
        process = self.service.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        self.service.stop()


def graphql(url: str, query: str, variables: dict | None = None, timeout_s: float = 30) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        payload = json.load(response)
    if payload.get("errors"):
        raise GraphQLError(json.dumps(payload["errors"], indent=1)[:3000])
    return payload["data"]


LOCATION_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name repositories { name } }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


def loaded_location(url: str) -> tuple[str, str] | None:
    """(location, repository) once the code location is loaded; raises on a load error."""
    try:
        data = graphql(url, LOCATION_QUERY, timeout_s=10)
    except (OSError, http.client.HTTPException, ValueError, GraphQLError):
        return None  # not answering yet
    workspace = data["workspaceOrError"]
    if workspace["__typename"] != "Workspace":
        return None
    for entry in workspace["locationEntries"]:
        location = entry["locationOrLoadError"]
        if location is None or entry["loadStatus"] != "LOADED":
            return None
        if location["__typename"] == "PythonError":
            raise RuntimeError(
                f"code location {entry['name']} failed to load:\n"
                + location["message"]
                + "".join(location["stack"])
            )
        return location["name"], location["repositories"][0]["name"]
    return None


@pytest.fixture(scope="session")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    root = tmp_path_factory.mktemp("dagster_dev")
    dagster_home = root / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    recsys_home = root / "recsys"
    recsys_home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in DEPLOYMENT_ENV}
    env |= {
        "DAGSTER_HOME": str(dagster_home),
        "RECSYS_HOME": str(recsys_home),
        "SPARK_LOCAL_IP": HOST,  # Spark's driver would bind to the host's first non-loopback IP
    }
    port = free_port()
    dagster = Path(sys.executable).parent / "dagster"
    cmd = [str(dagster), "dev", "-m", "recsys_assets.definitions", "-h", HOST, "-p", str(port)]
    # dagster dev stops on SIGTERM by treating it as SIGINT, which a shell ignores in background
    # jobs (`make test-e2e &`) and children inherit: restore SIGINT's default, then exec.
    cmd = [sys.executable, "-c", RESTORE_SIGINT_AND_EXEC, *cmd]
    url = f"http://{HOST}:{port}"
    service = Service.start(
        "dagster-dev",
        cmd,
        root,
        ready=lambda: loaded_location(url),
        env=env,
        timeout_s=STARTUP_TIMEOUT_S,
        cwd=root,  # Spark and MLflow leave nothing in the repo
    )
    dev = DagsterDev(service, url, dagster_home, recsys_home)
    try:
        dev.location, dev.repository = loaded_location(url) or ("", "")
        yield dev
    finally:
        dev.stop()


RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results { runId jobName status startTime endTime tags { key value } }
    }
    ... on PythonError { message }
  }
}
"""

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!, $ticks: Int) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      name
      sensorState {
        status
        ticks(limit: $ticks) { status timestamp runIds skipReason error { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

FAILURES_QUERY = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey error { message } }
        ... on RunFailureEvent { message }
      }
    }
  }
}
"""


RUN_EVENTS_QUERY = """
query RunEvents($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MaterializationEvent { assetKey { path } }
        ... on AssetCheckEvaluationEvent { evaluation { assetKey { path } checkName success } }
      }
    }
  }
}
"""


def run_events(dev: DagsterDev, run_id: str) -> list[dict]:
    """Every event of one run, page by page: what that run did, whatever ran after it."""
    events: list[dict] = []
    cursor = None
    while True:
        page = dev.graphql(RUN_EVENTS_QUERY, {"runId": run_id, "cursor": cursor})["logsForRun"]
        assert page["__typename"] == "EventConnection", page
        events += page["events"]
        if not page["hasMore"]:
            return events
        cursor = page["cursor"]


def runs(dev: DagsterDev, **run_filter: Any) -> list[dict]:
    data = dev.graphql(RUNS_QUERY, {"filter": run_filter})["runsOrError"]
    assert data["__typename"] == "Runs", data
    return data["results"]


def sensor(dev: DagsterDev, name: str, ticks: int = 5) -> dict:
    """The sensor's state and its latest ``ticks`` ticks, newest first."""
    selector = {
        "repositoryName": dev.repository,
        "repositoryLocationName": dev.location,
        "sensorName": name,
    }
    data = dev.graphql(SENSOR_QUERY, {"selector": selector, "ticks": ticks})["sensorOrError"]
    assert data["__typename"] == "Sensor", data
    return data


def failures(dev: DagsterDev, run_id: str) -> str:
    """The step and run failure messages of a run, for assertion messages."""
    data = dev.graphql(FAILURES_QUERY, {"runId": run_id})["logsForRun"]
    events = data.get("events", [])
    lines = []
    for e in events:
        if e["__typename"] == "ExecutionStepFailureEvent":
            lines.append(f"step {e['stepKey']} failed: {e['error']['message']}")
        elif e["__typename"] == "RunFailureEvent":
            lines.append(f"run failed: {e['message']}")
    return "\n".join(lines) or "(no failure events)"


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


@dataclass(frozen=True)
class Refresh:
    """The drop and the run of ``refresh_job`` that the sensor started for it."""

    summary: datagen.GenerationSummary
    run: dict


@pytest.fixture(scope="session")
def refresh(dagster_dev: DagsterDev) -> Refresh:
    """Drop a generated batch into the landing zone and wait for the sensor's run to end."""
    dev = dagster_dev
    assert runs(dev) == [], "a fresh instance has no runs"
    summary = datagen.generate(dev.landing, **DATA)

    def finished_run() -> dict | None:
        dev.check_alive()
        done = [r for r in runs(dev, pipelineName="refresh_job") if r["status"] in TERMINAL]
        return done[0] if done else None

    try:
        run = wait_for(finished_run, RUN_TIMEOUT_S, POLL_S, "the sensor's refresh_job run")
    except TimeoutError as exc:
        ticks = sensor(dev, "csv_drop_sensor")["sensorState"]["ticks"]
        pending = runs(dev)
        raise TimeoutError(
            f"{exc}\nlast sensor ticks: {json.dumps(ticks, indent=1)}\n"
            f"runs: {json.dumps(pending, indent=1)}\nlog tail:\n{dev.log_tail()}"
        ) from exc
    return Refresh(summary, run)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A failed end-to-end test shows the tail of the dagster dev log."""
    report = yield
    dev = getattr(item, "funcargs", {}).get("dagster_dev")
    if report.failed and isinstance(dev, DagsterDev):
        report.sections.append(("dagster dev log (tail)", dev.log_tail()))
    return report
