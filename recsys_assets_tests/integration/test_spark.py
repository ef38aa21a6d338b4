"""Starting Spark: clear errors before PySpark's own when Spark cannot start."""

import json
import os
import socket
import sys

import pytest

from recsys_assets.resources.spark import SparkUnavailable, build_session
from recsys_assets_tests import processes


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("kind", ["master", "remote"])
def test_a_cluster_that_does_not_answer_is_named(kind):
    port = closed_port()
    url = f"spark://127.0.0.1:{port}" if kind == "master" else f"sc://127.0.0.1:{port}"
    arguments = {"master": url} if kind == "master" else {"remote": url}

    with pytest.raises(SparkUnavailable, match=f"Spark at {url} does not answer"):
        build_session(**arguments)


def test_missing_java_is_said_before_spark_starts(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(SparkUnavailable, match="Java 17 or newer is required"):
        build_session("local[1]")


UI_PROBE = """
import json, os, sys, urllib.request
from recsys_assets.resources.spark import SparkResource
from recsys_assets_tests.processes import listening_addresses, session_members

spark = SparkResource(master="local[1]", spark_config={"spark.log.level": "ERROR"})
spark.spark_session.range(1).count()
url = spark.ui_url
with urllib.request.urlopen(f"{url}/api/v1/applications", timeout=60) as response:
    applications = json.load(response)
addresses = sorted(listening_addresses(session_members(os.getsid(0))))  # this process and its JVM
print(json.dumps({"url": url, "apps": len(applications), "addresses": addresses}))
"""


def test_a_local_session_serves_its_ui_on_loopback_at_the_url_it_reports():
    # A process of its own: this one's session, with the UI off, is the only one it may have.
    env = {**os.environ, "PYTHONPATH": str(processes.REPO)}
    env.pop("SPARK_LOCAL_IP", None)
    done = processes.run([sys.executable, "-c", UI_PROBE], timeout_s=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["url"].startswith("http://127.0.0.1:") and found["apps"] == 1
    assert found["addresses"] == ["127.0.0.1"]  # the UI, and the driver's own ports
