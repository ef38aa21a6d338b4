"""Where state lives and how to reach Spark and MLflow, read from the environment in one place.

All local state sits under one root, ``RECSYS_HOME`` (default ``.recsys`` in the cwd)::

    RECSYS_HOME/
      landing/customers/       CSV drops, ingested exactly once each
      landing/sales_orders/
      lakehouse/<layer>/<table>  Delta tables, layer = bronze | silver | gold | ml
      lakehouse/_staging/      Spark ML models on their way to and from MLflow over Spark Connect
      mlflow/                  SQLite tracking store and registry, artifacts
      dagster/                 DAGSTER_HOME for `make dev` and `make demo`

``RECSYS_LAKEHOUSE_URI=s3a://bucket/prefix`` moves the lakehouse (tables and ``_staging``) to an
S3-compatible store; where that store is comes from the standard AWS variables
(:class:`ObjectStore`), and its credentials stay in the environment, read by each engine itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

LANDING_TABLES = ("customers", "sales_orders")

# The batch tables (customer_recommendations, churn_predictions) fail their freshness policy in
# the UI when their last materialisation is older than this.
BATCH_FRESHNESS_WINDOW = timedelta(hours=24)

# Variables whose values may carry a credential (http://user:password@host,
# sc://host:15002/;token=...).
SECRET_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "SPARK_REMOTE")


# The scheme of Spark's S3A connector, which delta-rs reads too (resources/lakehouse.py maps it for
# pyarrow); Hadoop has no file system for plain s3://.
S3A = "s3a"


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ObjectStore:
    """The S3-compatible store of an ``s3a://`` lakehouse, from the standard AWS variables.

    No credential is kept here (nor in any resource's config): Spark's S3A, delta-rs and pyarrow
    each read ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``) from the
    environment of the process that runs them.
    """

    endpoint: str | None = None  # AWS_ENDPOINT_URL: an S3-compatible server; none for AWS S3
    region: str | None = None  # AWS_REGION, else AWS_DEFAULT_REGION
    allow_http: bool = False  # AWS_ALLOW_HTTP: an http:// endpoint (loopback, a test server)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ObjectStore:
        endpoint = env.get("AWS_ENDPOINT_URL") or None
        allow_http = truthy(env.get("AWS_ALLOW_HTTP"))
        if endpoint and endpoint.startswith("http://") and not allow_http:
            raise ValueError(
                f"AWS_ENDPOINT_URL={endpoint} is plain http: set AWS_ALLOW_HTTP=true to use it."
            )
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        return cls(endpoint=endpoint, region=region, allow_http=allow_http)


def object_store_of(lakehouse_uri: str, env: Mapping[str, str]) -> ObjectStore | None:
    """The store of an ``s3a://`` lakehouse; None for a folder."""
    scheme = urlparse(lakehouse_uri).scheme.lower()
    if scheme == S3A:
        return ObjectStore.from_env(env)
    if scheme in ("s3", "s3n"):
        raise ValueError(
            f"RECSYS_LAKEHOUSE_URI={lakehouse_uri}: use s3a://, the scheme of Spark's S3A "
            "connector (delta-rs reads it too)."
        )
    return None


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; build it with :meth:`from_env`."""

    home: Path
    lakehouse_uri: str
    spark_master: str
    spark_remote: str | None
    mlflow_tracking_uri: str
    mlflow_registry_uri: str | None
    landing_settle_seconds: float = 5.0  # a landing file is read once unchanged for this long
    landing_reingest_changed: bool = False  # a file rewritten after ingestion is read again
    # drift_retrain_sensor (off by default) starts refresh_job when the churn features' max PSI
    # against the champion's training set is above this.
    drift_retrain_psi: float = 0.2
    # Spark settings over the project's own (resources/spark.py), e.g. fewer shuffle partitions
    # for small data: RECSYS_SPARK_CONF='{"spark.sql.shuffle.partitions": "4"}'.
    spark_conf: dict[str, str] = field(default_factory=dict)
    # The S3-compatible store of an s3a:// lakehouse_uri; None when the lakehouse is a folder.
    object_store: ObjectStore | None = None
    # Which of SECRET_VARS were read from this process's environment: the resources take
    # dg.EnvVar(name) for them, so Dagster stores and shows the name, never the value.
    from_process_env: frozenset[str] = frozenset()

    @property
    def mlflow_artifact_root(self) -> str | None:
        """Local artifact folder, used only with the embedded SQLite store."""
        local = self.mlflow_tracking_uri.startswith("sqlite:")
        return (self.home / "mlflow" / "artifacts").as_uri() if local else None

    @property
    def spark_staging_uri(self) -> str:
        """Beside the tables: storage that Spark, wherever it runs, and this process share."""
        return f"{self.lakehouse_uri.rstrip('/')}/_staging"

    @property
    def landing_dir(self) -> Path:
        return self.home / "landing"

    @classmethod
    def from_env(cls, environ: os._Environ[str] | dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("RECSYS_HOME", ".recsys")).expanduser().resolve()
        lakehouse_uri = env.get("RECSYS_LAKEHOUSE_URI") or str(home / "lakehouse")
        return cls(
            home=home,
            lakehouse_uri=lakehouse_uri,
            spark_master=env.get("SPARK_MASTER") or "local[*]",
            spark_remote=env.get("SPARK_REMOTE") or None,
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            mlflow_registry_uri=env.get("MLFLOW_REGISTRY_URI") or None,
            landing_settle_seconds=float(env.get("RECSYS_LANDING_SETTLE_SECONDS") or 5),
            landing_reingest_changed=truthy(env.get("RECSYS_REINGEST_CHANGED")),
            drift_retrain_psi=float(env.get("RECSYS_DRIFT_RETRAIN_PSI") or 0.2),
            spark_conf=parse_spark_conf(env.get("RECSYS_SPARK_CONF") or "{}"),
            object_store=object_store_of(lakehouse_uri, env),
            # Only the process environment is there again when Dagster resolves an EnvVar at
            # run time; values from a mapping passed in (tests) stay plain values.
            from_process_env=frozenset(v for v in SECRET_VARS if env.get(v))
            if env is os.environ
            else frozenset(),
        )


def parse_spark_conf(text: str) -> dict[str, str]:
    """``RECSYS_SPARK_CONF``: a JSON object of Spark settings (values as Spark reads them)."""
    try:
        conf = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"RECSYS_SPARK_CONF is not JSON ({error}): {text!r}") from error
    if not isinstance(conf, dict):
        raise ValueError(f"RECSYS_SPARK_CONF must be a JSON object of Spark settings: {text!r}")
    return {
        str(key): str(value).lower() if isinstance(value, bool) else str(value)
        for key, value in conf.items()
    }
