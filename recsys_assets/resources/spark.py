"""The Spark session: created lazily, once per run process, local or on a cluster, with Delta Lake.

Delta Lake's Spark connector comes from Maven Central the way Spark users get it: its coordinate
goes into ``spark.jars.packages`` and Spark's Ivy fetches it (and its dependencies) on the first
start, caching them in ``~/.ivy2.5.2`` (it looks in ``~/.m2`` first). ``python -m
recsys_assets.resources.spark`` starts one session to do that ahead of time (``make setup``).
Hadoop's S3A connector, for a lakehouse on an S3-compatible store, comes the same way, and only
for such a lakehouse (``s3_session``; ``python -m recsys_assets.resources.spark --s3``).
"""

import os
import shutil
import socket
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dagster as dg
import pyspark
import pyspark.ml.util as ml_util
from dagster_pyspark import LazyPySparkResource
from pydantic import Field, PrivateAttr
from pyspark.sql import SparkSession
from pyspark.sql.utils import is_remote

from recsys_assets.settings import ObjectStore


def delta_package() -> str:
    """The Maven coordinate of the Delta jars matching the installed delta-spark and pyspark
    (the rule of delta-spark's own ``configure_spark_with_delta_pip``)."""
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    return f"io.delta:delta-spark_{spark_minor}_2.13:{version('delta-spark')}"


# Static settings of a session that runs Delta: for a driver started here, and for the
# Spark Connect server (`make test-cluster` passes the same to start-connect-server.sh).
DELTA_SESSION: dict[str, str] = {
    "spark.jars.packages": delta_package(),
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def hadoop_version() -> str:
    """The Hadoop that pyspark bundles (``jars/hadoop-client-api-<version>.jar``)."""
    [api] = (Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar")
    return api.name.removeprefix("hadoop-client-api-").removesuffix(".jar")


# The AWS SDK v2 that each hadoop-aws release is built against (its POM), to fetch the S3
# modules on their own: hadoop-aws itself asks for the SDK's `bundle`, 686 MB of every AWS
# service, where S3A needs the S3 client and its transfer manager (13 MB with what they need).
AWS_SDK_OF_HADOOP = {"3.5.0": "2.35.4"}
# Left out of the S3 modules' dependencies: the bundle, and what Spark ships itself (netty,
# Apache HttpClient, SLF4J), so one copy of each is on the classpath.
S3_EXCLUDES = (
    "software.amazon.awssdk:bundle",
    "io.netty:*",
    "org.apache.httpcomponents:httpclient",
    "org.apache.httpcomponents:httpcore",
    "org.slf4j:slf4j-api",
)


S3A_CLASS = "org.apache.hadoop.fs.s3a.S3AFileSystem"


def s3_packages() -> list[str]:
    """Maven coordinates of Hadoop's S3A connector for the Hadoop that pyspark bundles."""
    hadoop = hadoop_version()
    sdk = AWS_SDK_OF_HADOOP.get(hadoop)
    if sdk is None:
        raise RuntimeError(
            f"pyspark bundles Hadoop {hadoop}: add the AWS SDK version its hadoop-aws is built "
            "against (its POM) to AWS_SDK_OF_HADOOP in recsys_assets/resources/spark.py."
        )
    return [
        f"org.apache.hadoop:hadoop-aws:{hadoop}",
        f"software.amazon.awssdk:s3:{sdk}",
        f"software.amazon.awssdk:s3-transfer-manager:{sdk}",
    ]


def s3_session(store: ObjectStore) -> dict[str, str]:
    """Static settings of a driver whose tables are on an S3-compatible store: the S3A jars
    beside Delta's, and where the store is. No credentials: S3A's default chain reads
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from the environment of each JVM."""
    hadoop = {
        "fs.s3a.endpoint": store.endpoint,
        # An S3-compatible server serves bucket/key paths (delta-rs's default too); AWS also
        # serves virtual hosts, S3A's default there.
        "fs.s3a.path.style.access": "true" if store.endpoint else None,
        "fs.s3a.endpoint.region": store.region,
    }
    return {
        "spark.jars.packages": ",".join([delta_package(), *s3_packages()]),
        "spark.jars.excludes": ",".join(S3_EXCLUDES),
        **{f"spark.hadoop.{key}": value for key, value in hadoop.items() if value},
    }


# Tuned for a laptop: small data, two to eight cores. Runtime SQL settings also apply on a cluster.
SQL_DEFAULTS: dict[str, str] = {
    # Room for 10M orders (a window sort or ALS top-k in 4 partitions runs out of memory there);
    # adaptive execution coalesces them to a few on small data.
    "spark.sql.shuffle.partitions": "64",
    # Including inside persisted frames (silver's flagged rows): else they keep all 64, and so
    # does every write from them (64 tiny files per table, runs 40% slower on small data).
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Every table records its changes, so each incremental step reads only what is new upstream.
    "spark.databricks.delta.properties.defaults.enableChangeDataFeed": "true",
    # VACUUM lists a table's files in this many tasks: Spark's 10,000 made a VACUUM of a tiny
    # table take 45 s on 2 cores (6 s with 64). Tables here are unpartitioned: one directory.
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "64",
    # The Delta log is small here: a few partitions rebuild a snapshot faster than 50.
    "spark.databricks.delta.snapshotPartitions": "4",
}
# netlib's Java BLAS beats a native one on ALS's tiny per-rating kernels below rank ~50
# (benchmarks/README.md); keep it even where a system libblas.so.3 exists.
JAVA_BLAS = (
    "-Ddev.ludovic.netlib.blas.allowNative=false -Ddev.ludovic.netlib.lapack.allowNative=false"
)
# For a driver started by this process (local[*] or a spark:// master).
LOCAL_DEFAULTS: dict[str, str] = {
    **DELTA_SESSION,
    "spark.ui.enabled": "false",
    "spark.driver.memory": "4g",
    # Progress bars are redrawn on stderr, which Dagster captures into each run's compute logs
    # (make dev): the Spark UI and the steps' log lines show progress instead.
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.extraJavaOptions": JAVA_BLAS,
    "spark.executor.extraJavaOptions": JAVA_BLAS,  # executors of a spark:// master
}

# A local[*] driver otherwise binds to the host's first network address; nothing needs to reach
# it from outside. Not for spark:// masters, whose executors connect back to the driver.
LOOPBACK: dict[str, str] = {
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
}
# The Spark UI of a local driver: a free port (0: chosen at start, so runs side by side never
# collide), on loopback. Spark binds its UI to SPARK_LOCAL_IP, else to every interface
# (WebUI.bind; spark.driver.bindAddress is not read there), hence the variable.
LOCAL_UI: dict[str, str] = {"spark.ui.enabled": "true", "spark.ui.port": "0"}


class SparkResource(LazyPySparkResource):
    """A SparkSession created on first use, so steps that never touch Spark never start a JVM.

    ``master`` runs Spark in this process (``local[*]``) or against a cluster (``spark://...``);
    ``remote`` (a Spark Connect URL such as ``sc://host:15002``, or ``local[2]`` for a local
    Connect server) takes precedence. Asset code uses DataFrame APIs only, so both work.
    """

    spark_config: dict[str, Any] = Field(default_factory=dict)
    driver_config: dict[str, str] = Field(
        default_factory=dict,
        description="Static settings of a driver started here (a Spark Connect server takes its "
        "own at its start): the S3A connector of an s3a:// lakehouse.",
    )
    master: str = Field(default="local[*]", description="Spark master URL.")
    remote: str | None = Field(default=None, description="Spark Connect URL; overrides master.")
    ui: bool = Field(
        default=True, description="Serve the Spark UI of a local[*] driver on a loopback port."
    )
    _ui_url: str | None = PrivateAttr(default=None)

    @classmethod
    def _is_dagster_maintained(cls) -> bool:
        return False

    def _init_session(self) -> None:
        if self._spark_session is None:
            self._spark_session = build_session(
                self.master, self.remote, self.spark_config, ui=self.ui, driver=self.driver_config
            )
            self._ui_url = ui_url(self._spark_session)
            if self._ui_url:
                dg.get_dagster_logger().info(f"Spark UI, while this run lasts: {self._ui_url}")

    @property
    def ui_url(self) -> str | None:
        """The driver's Spark UI, once a session has started here with it on."""
        return self._ui_url

    def ui_metadata(self) -> dict[str, dg.MetadataValue]:
        """The Spark UI link for a Spark step's metadata (none when the UI is off)."""
        return {"spark_ui": dg.MetadataValue.url(self._ui_url)} if self._ui_url else {}


def ui_url(session: SparkSession) -> str | None:
    """The Spark UI's address, from the driver; a Spark Connect client has no driver here."""
    return None if is_remote() else session.sparkContext.uiWebUrl


def keep_remote_models_until_session_end() -> None:
    """pyspark 4.2's Spark ML on Connect frees a server-side model from ``__del__`` with a
    blocking RPC; when garbage collection runs that inside another RPC, the client waits for
    ever (seen in als_evaluation on a standalone cluster). The server drops a session's
    cached models when the session ends, so the eager delete is skipped."""
    ml_util.del_remote_cache = lambda ref_id: None


class SparkUnavailable(RuntimeError):
    """Spark cannot start here: no Java, or the cluster does not answer."""


REACH_TIMEOUT = 15.0  # seconds to wait for a master or Connect server to accept a connection


def check_reachable(url: str, timeout: float = REACH_TIMEOUT) -> None:
    """Fail fast, and say so, when a ``spark://`` master or ``sc://`` server does not answer."""
    parsed = urlparse(url)
    default_port = 7077 if parsed.scheme == "spark" else 15002
    host, port = parsed.hostname or "localhost", parsed.port or default_port
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise SparkUnavailable(
            f"Spark at {url} does not answer ({error}): start it, or unset "
            "SPARK_MASTER / SPARK_REMOTE to run Spark in this process."
        ) from error


def check_java() -> None:
    """A driver started here needs Java: say so before PySpark's JAVA_GATEWAY_EXITED."""
    java_home = os.environ.get("JAVA_HOME")
    if shutil.which("java") or (java_home and os.path.exists(f"{java_home}/bin/java")):
        return
    raise SparkUnavailable(
        "Java 17 or newer is required by Spark and none was found (no `java` on PATH, no "
        "JAVA_HOME): install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)."
    )


def build_session(
    master: str = "local[*]",
    remote: str | None = None,
    extra: dict[str, Any] | None = None,
    ui: bool = False,
    driver: dict[str, str] | None = None,
) -> SparkSession:
    """A session on ``master`` or ``remote``; ``ui``: the Spark UI of a local master's driver on
    a free loopback port (``SparkResource.ui_url``); ``driver``: static settings over the
    project's own for a driver started here, not sent to a Spark Connect server."""
    target = remote or master
    if target.startswith(("spark://", "sc://")):
        check_reachable(target)
    if not target.startswith("sc://"):
        check_java()  # the driver (or a local Connect server) runs in this process
        # Python workers (mapInPandas) run this interpreter, not whatever ``python3`` is on
        # PATH: they import numpy, pandas and this package. Spark's own variable wins if set.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("recsys_assets")
    if remote:
        keep_remote_models_until_session_end()
        builder = builder.remote(remote)
    else:
        builder = builder.master(master)
    local = remote is None or not remote.startswith("sc://")
    in_process = (remote or master).startswith("local")
    local_ui = ui and remote is None and in_process
    if local_ui:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # read by the JVM started next
    settings = {
        **SQL_DEFAULTS,
        **(LOCAL_DEFAULTS if local else {}),
        **((driver or {}) if local else {}),
        **(LOOPBACK if in_process else {}),
        **(LOCAL_UI if local_ui else {}),
        **(extra or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


if __name__ == "__main__":  # make setup: fetch the Delta jars once, and prove they load
    # --s3 (make test-cluster): the S3A connector's jars too.
    s3 = "--s3" in sys.argv[1:]
    driver = s3_session(ObjectStore()) if s3 else None
    session = build_session("local[1]", extra={"spark.log.level": "ERROR"}, driver=driver)
    if s3:  # the connector's classes load
        session._jvm.org.apache.spark.util.Utils.classForName(S3A_CLASS, True, False)
    packages = (driver or DELTA_SESSION)["spark.jars.packages"].replace(",", ", ")
    print(f"Ready: {packages} (cached by Spark's Ivy in ~/.ivy2.5.2)")
    session.stop()
