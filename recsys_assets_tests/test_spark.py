"""Starting Spark: clear errors before PySpark's own when Spark cannot start."""

import socket

import pytest

from recsys_assets.resources.spark import SparkUnavailable, build_session


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
