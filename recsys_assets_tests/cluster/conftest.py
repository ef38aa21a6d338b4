"""The engines a team already runs, started for real on free loopback ports, stopped on exit.

PostgreSQL (Debian's server, in a temporary folder) holds the MLflow tracking server's store and
the Dagster instance; a Spark standalone cluster (a master and two workers, from the installed
pyspark) runs executors; a Spark Connect server runs its driver on that cluster; moto's server
mode is an S3-compatible store. Every process is started in a session of its own and stopped with
it, also when a test fails.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pyspark
import pytest

from recsys_assets.resources.spark import DELTA_SESSION
from recsys_assets_tests.processes import HOST, Service, free_port, listening

SPARK_HOME = Path(pyspark.__file__).parent
# Every Spark process (master, workers, executors, drivers) binds to and advertises loopback.
# PYSPARK_PYTHON: the Connect server's Python workers (ALS scoring) need this venv's packages.
SPARK_ENV = {
    "SPARK_HOME": str(SPARK_HOME),
    "SPARK_LOCAL_IP": HOST,
    "SPARK_NO_DAEMONIZE": "1",
    "PYSPARK_PYTHON": sys.executable,
}
WORKERS = 2
# Two slots per worker, and two cores per application by default: the Connect server's
# application and a classic driver can run at once, each with one executor on every worker.
WORKER_CORES, APP_CORES = 2, 2


@contextmanager
def serving(service: Service, servers: list[Service]) -> Iterator[Service]:
    """``service`` among the session's servers while a fixture uses it, stopped after."""
    servers.append(service)
    try:
        yield service
    finally:
        service.stop()


def http_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except (OSError, ValueError):
        return None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every server's log, kept for a failing test's report."""
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def servers() -> list[Service]:
    """Every server this session started, for tests about all of them."""
    return []


# ---------------------------------------------------------------- PostgreSQL


@dataclass(frozen=True)
class Postgres:
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@{HOST}:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        return psycopg2.connect(
            host=HOST, port=self.port, user="postgres", dbname=database, connect_timeout=2
        )

    def answers(self) -> bool:
        try:
            self.connect().close()
            return True
        except psycopg2.OperationalError:
            return False


def postgres_bin() -> Path:
    """Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<version>/bin."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    on_path = shutil.which("initdb")
    initdb = found[-1] if found else Path(on_path) if on_path else None
    if initdb is None:
        pytest.fail("No PostgreSQL server: `make test-cluster` installs Debian's postgresql.")
    return initdb.parent


@pytest.fixture(scope="session")
def postgres(logs: Path, servers: list[Service]) -> Iterator[Postgres]:
    """A throwaway PostgreSQL with databases ``dagster`` and ``mlflow``, trusted on loopback."""
    bindir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as Debian's postgres user
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    subprocess.run(
        [*as_owner, bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"],
        check=True,
        capture_output=True,
    )
    server = Postgres(free_port())
    service = Service.start(
        "postgres",
        [
            *as_owner,
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(root),
            *f"-p {server.port} -c listen_addresses={HOST} -c fsync=off".split(),
        ],
        logs,
        ready=server.answers,
    )
    try:
        with serving(service, servers):
            connection = server.connect()
            connection.autocommit = True
            with connection.cursor() as cursor:
                for database in ("dagster", "mlflow"):
                    cursor.execute(f"CREATE DATABASE {database}")
            connection.close()
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- MLflow


@pytest.fixture(scope="session")
def mlflow_server(
    postgres: Postgres, logs: Path, servers: list[Service], tmp_path_factory
) -> Iterator[str]:
    """``mlflow server`` on PostgreSQL, serving artifacts from a local folder; its URI."""
    port = free_port()
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    uri = f"http://{HOST}:{port}"
    service = Service.start(
        "mlflow",
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            *f"--host {HOST} --port {port} --workers 1 --serve-artifacts".split(),
            "--backend-store-uri",
            postgres.url("mlflow"),
            "--artifacts-destination",
            artifacts.as_uri(),
        ],
        logs,
        ready=lambda: http_ok(f"{uri}/health"),
    )
    with serving(service, servers):
        yield uri


# ---------------------------------------------------------------- S3


@dataclass(frozen=True)
class S3Server:
    """An S3-compatible server on loopback, and the standard AWS variables that reach it."""

    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "recsys-test-key",  # any: moto checks no signature
            "AWS_SECRET_ACCESS_KEY": "recsys-test-secret",
        }

    def client(self):
        import boto3  # moto's dependency

        env = self.env
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )


@pytest.fixture(scope="session")
def s3_server(logs: Path, servers: list[Service]) -> Iterator[S3Server]:
    """moto's server mode (``moto[server]`` from PyPI): S3 in memory, for this session."""
    port = free_port()
    server = S3Server(f"http://{HOST}:{port}")
    service = Service.start(
        "moto-s3",
        [sys.executable, "-m", "moto.server", "--host", HOST, "--port", str(port)],
        logs,
        ready=lambda: http_ok(f"{server.endpoint}/moto-api/"),
    )
    with serving(service, servers):
        yield server


# ---------------------------------------------------------------- Spark


@dataclass(frozen=True)
class SparkCluster:
    url: str
    web_url: str
    work_dirs: tuple[Path, ...]

    def state(self) -> dict:
        return http_json(f"{self.web_url}/json/") or {}


@pytest.fixture(scope="session")
def spark_cluster(logs: Path, servers: list[Service], tmp_path_factory) -> Iterator[SparkCluster]:
    """A standalone master and two workers, started with the installed pyspark's spark-class."""
    port, web_port = free_port(), free_port()
    cluster = SparkCluster(
        f"spark://{HOST}:{port}",
        f"http://{HOST}:{web_port}",
        tuple(tmp_path_factory.mktemp(f"spark-worker-{i}") for i in range(WORKERS)),
    )
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    services = []
    try:
        master_env = {
            **os.environ,
            **SPARK_ENV,
            "SPARK_MASTER_OPTS": f"-Dspark.deploy.defaultCores={APP_CORES}",
        }
        services.append(
            Service.start(
                "spark-master",
                [
                    spark_class,
                    "org.apache.spark.deploy.master.Master",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    "--webui-port",
                    str(web_port),
                ],
                logs,
                ready=lambda: cluster.state().get("status") == "ALIVE",
                env=master_env,
            )
        )
        for i, work_dir in enumerate(cluster.work_dirs):
            services.append(
                Service.start(
                    f"spark-worker-{i}",
                    [
                        spark_class,
                        "org.apache.spark.deploy.worker.Worker",
                        cluster.url,
                        "--host",
                        HOST,
                        "--webui-port",
                        str(free_port()),
                        "--cores",
                        str(WORKER_CORES),
                        "--memory",
                        "3g",
                        "--work-dir",
                        str(work_dir),
                    ],
                    logs,
                    ready=lambda i=i: cluster.state().get("aliveworkers", 0) > i,
                    env={**os.environ, **SPARK_ENV},
                )
            )
        servers.extend(services)
        yield cluster
    finally:
        for service in reversed(services):
            service.stop()


@pytest.fixture(scope="session")
def spark_connect(spark_cluster: SparkCluster, logs: Path, servers: list[Service]) -> Iterator[str]:
    """A Spark Connect server whose driver uses the cluster, in the foreground: what
    sbin/start-connect-server.sh starts (the pip package of pyspark 4.2 does not ship it)."""
    port = free_port()
    env = {**os.environ, **SPARK_ENV}
    service = Service.start(
        "spark-connect",
        [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--class",
            "org.apache.spark.sql.connect.service.SparkConnectServer",
            "--name",
            "Spark Connect server",
            "--master",
            spark_cluster.url,
            "--conf",
            f"spark.connect.grpc.binding.address={HOST}",
            "--conf",
            f"spark.connect.grpc.binding.port={port}",
            "--conf",
            "spark.ui.enabled=false",
            *[arg for key, value in DELTA_SESSION.items() for arg in ("--conf", f"{key}={value}")],
        ],
        logs,
        ready=lambda: listening(port),
        env=env,
        timeout_s=180,
    )
    with serving(service, servers):
        yield f"sc://{HOST}:{port}"
