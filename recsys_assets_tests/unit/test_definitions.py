"""The code location as Dagster and its UI see it: jobs, resource config, freshness policies.

Pure definitions tests: nothing is materialised except a probe asset that reads two resources,
and no Spark session starts. The repository snapshot is what a code server sends the webserver.
"""

from datetime import timedelta

import dagster as dg
import mlflow
import pytest
from dagster._core.remote_representation.external_data import (
    RepositorySnap,
    ResourceConfigEnvVarSnap,
)
from dagster_deltalake import LocalConfig, S3Config
from dagster_deltalake_pandas import DeltaLakePandasIOManager
from dagster_shared.serdes import serialize_value

from recsys_assets.definitions import build_definitions
from recsys_assets.resources.lakehouse import PANDAS_IO_MANAGER, Lakehouse
from recsys_assets.resources.mlflow import MlflowResource
from recsys_assets.resources.spark import SparkResource, delta_package, hadoop_version
from recsys_assets.settings import SECRET_VARS, Settings

PASSWORD, TOKEN = "pw-5f3a9c", "tok-81d2e7"  # unique strings, so a search for them is exact
TRACKING_URI = f"http://user:{PASSWORD}@127.0.0.1:5999"
REGISTRY_URI = f"http://user:{PASSWORD}@127.0.0.1:5998"
SPARK_REMOTE = f"sc://127.0.0.1:15002/;token={TOKEN}"


def snapshot(defs: dg.Definitions) -> RepositorySnap:
    return RepositorySnap.from_def(defs.get_repository_def())


def env(name: str) -> ResourceConfigEnvVarSnap:
    """How the snapshot holds a value given as ``dg.EnvVar(name)``."""
    return ResourceConfigEnvVarSnap(name=name)


@pytest.fixture
def plain_defs(tmp_path) -> dg.Definitions:
    return build_definitions(Settings.from_env({"RECSYS_HOME": str(tmp_path)}))


def upstream_closure(graph, key: dg.AssetKey) -> set[dg.AssetKey]:
    """``key`` and every asset it depends on, walked along the graph's parent edges."""
    seen, todo = set(), [key]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(graph.get(node).parent_keys)
    return seen


@pytest.mark.parametrize(
    ("champion", "includes", "excludes"),
    [
        (
            "als_champion",
            ["als_train", "als_test", "als_challenger", "als_evaluation", "customers_bronze"],
            ["customer_recommendations", "churn_model", "churn_champion", "customer_features"],
        ),
        (
            "churn_champion",
            ["churn_training_set", "churn_model", "customers_bronze", "sales_orders_bronze"],
            ["churn_predictions", "als_champion", "als_challenger", "customer_recommendations"],
        ),
    ],
)
def test_champion_jobs_run_exactly_their_models_chain(plain_defs, champion, includes, excludes):
    job_name = f"{champion}_job"
    job = plain_defs.resolve_job_def(job_name)
    assert job.executor_def is dg.in_process_executor  # one Spark session (one JVM) per run

    snap = snapshot(plain_defs)
    in_job = {node.asset_key for node in snap.asset_nodes if job_name in node.job_names}
    graph = plain_defs.resolve_asset_graph()
    assert in_job == upstream_closure(graph, dg.AssetKey(champion))
    assert {dg.AssetKey(name) for name in includes} <= in_job
    assert not {dg.AssetKey(name) for name in excludes} & in_job

    # The blocking gate runs in the job, so a losing challenger never reaches the champion step.
    checks = {c.name for c in snap.asset_check_nodes or [] if job_name in c.job_names}
    assert {"rmse_gate" if champion == "als_champion" else "churn_gate"} <= checks


@pytest.fixture
def secret_env(monkeypatch, tmp_path):
    """URIs carrying credentials in the process environment; MLflow's global URIs restored."""
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", TRACKING_URI)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", REGISTRY_URI)
    monkeypatch.setenv("SPARK_REMOTE", SPARK_REMOTE)
    # MlflowResource sets these if unset; set here, monkeypatch removes them afterwards.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    yield
    mlflow.set_tracking_uri(tracking)  # the resource's setup set them for this process
    mlflow.set_registry_uri(registry)


def test_uris_from_the_environment_reach_the_ui_as_variable_names(secret_env):
    defs = build_definitions(Settings.from_env())
    snap = snapshot(defs)

    configured = {r.name: r.configured_values for r in snap.resources or []}
    assert configured["mlflow"]["tracking_uri"] == env("MLFLOW_TRACKING_URI")
    assert configured["mlflow"]["registry_uri"] == env("MLFLOW_REGISTRY_URI")
    assert configured["spark"]["remote"] == env("SPARK_REMOTE")
    assert set(SECRET_VARS) <= set(snap.utilized_env_vars or {})  # the UI's env var list
    serialized = serialize_value(snap)
    assert PASSWORD not in serialized and TOKEN not in serialized


def test_a_run_resolves_the_variables_to_their_values(secret_env):
    defs = build_definitions(Settings.from_env())
    seen = {}

    @dg.asset
    def probe(mlflow: MlflowResource, spark: SparkResource) -> dg.MaterializeResult:
        seen.update(tracking=mlflow.tracking_uri, registry=mlflow.registry_uri, remote=spark.remote)
        return dg.MaterializeResult()

    resources = {"mlflow": defs.resources["mlflow"], "spark": defs.resources["spark"]}
    assert dg.materialize([probe], resources=resources).success
    assert seen == {"tracking": TRACKING_URI, "registry": REGISTRY_URI, "remote": SPARK_REMOTE}


def test_the_embedded_defaults_stay_plain_values(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    for name in SECRET_VARS:  # MLflow sets MLFLOW_TRACKING_URI in os.environ once used
        monkeypatch.delenv(name, raising=False)
    snap = snapshot(build_definitions(Settings.from_env()))

    configured = {r.name: r.configured_values for r in snap.resources or []}
    assert configured["mlflow"]["tracking_uri"] == f'"sqlite:///{tmp_path}/mlflow/mlflow.db"'
    assert configured["spark"]["remote"] == "null"
    assert "registry_uri" not in configured["mlflow"]  # None: the tracking URI


def test_a_mapping_passed_in_is_not_the_process_environment(tmp_path):
    # An EnvVar would be resolved from os.environ at run time, where this value is not.
    settings = Settings.from_env(
        {"RECSYS_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": TRACKING_URI}
    )
    assert settings.from_process_env == frozenset()
    snap = snapshot(build_definitions(settings))
    [mlflow_snap] = [r for r in snap.resources or [] if r.name == "mlflow"]
    assert mlflow_snap.configured_values["tracking_uri"] == f'"{TRACKING_URI}"'


def test_the_batch_tables_must_be_fresh_every_day(plain_defs):
    day = timedelta(hours=24)
    specs = {spec.key.to_user_string(): spec for spec in plain_defs.resolve_all_asset_specs()}
    with_policy = {key for key, spec in specs.items() if spec.freshness_policy is not None}
    assert with_policy == {"customer_recommendations", "churn_predictions"}
    for key in with_policy:
        policy = specs[key].freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy)
        assert policy.fail_window.to_timedelta() == day

    # And as the UI gets them, in the repository snapshot.
    snap = {n.asset_key.to_user_string(): n for n in snapshot(plain_defs).asset_nodes}
    assert snap["customer_recommendations"].freshness_policy.fail_window.to_timedelta() == day
    assert snap["churn_predictions"].freshness_policy == specs["churn_predictions"].freshness_policy


def test_spark_settings_from_the_environment_reach_the_spark_resource(tmp_path):
    conf = '{"spark.sql.shuffle.partitions": 3, "spark.sql.adaptive.enabled": false}'
    settings = Settings.from_env({"RECSYS_HOME": str(tmp_path), "RECSYS_SPARK_CONF": conf})
    spark = build_definitions(settings).resources["spark"]
    assert isinstance(spark, SparkResource)
    # As Spark reads them: strings, JSON's false as "false".
    assert spark.spark_config == {
        "spark.sql.shuffle.partitions": "3",
        "spark.sql.adaptive.enabled": "false",
    }


@pytest.mark.parametrize("conf", ["spark.sql.shuffle.partitions=3", '["spark.ui.enabled"]'])
def test_spark_settings_that_are_not_a_json_object_are_refused_by_name(tmp_path, conf):
    with pytest.raises(ValueError, match="RECSYS_SPARK_CONF"):
        Settings.from_env({"RECSYS_HOME": str(tmp_path), "RECSYS_SPARK_CONF": conf})


KEY_ID, SECRET_KEY = "AKIA-4e1b7d", "secret-9c2f6a"  # unique strings, as above
S3_ENV = {
    "RECSYS_LAKEHOUSE_URI": "s3a://bucket/prefix",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    "AWS_ALLOW_HTTP": "true",
    "AWS_REGION": "eu-west-3",
    "AWS_ACCESS_KEY_ID": KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
}


def test_an_s3a_lakehouse_reaches_every_engine_without_its_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(Settings.from_env())

    spark, lakehouse = defs.resources["spark"], defs.resources["lakehouse"]
    assert isinstance(spark, SparkResource) and isinstance(lakehouse, Lakehouse)
    # Spark: the S3A jars beside Delta's (without the AWS SDK's 686 MB bundle), the store.
    packages = spark.driver_config["spark.jars.packages"].split(",")
    assert delta_package() in packages
    assert f"org.apache.hadoop:hadoop-aws:{hadoop_version()}" in packages
    assert "software.amazon.awssdk:bundle" in spark.driver_config["spark.jars.excludes"]
    assert spark.driver_config["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"
    assert spark.driver_config["spark.hadoop.fs.s3a.path.style.access"] == "true"
    assert spark.driver_config["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-3"
    # delta-rs: the lakehouse's log reads and the pandas IO manager.
    assert lakehouse.root_uri == "s3a://bucket/prefix"
    assert lakehouse.storage_options == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_REGION": "eu-west-3",
        "AWS_ALLOW_HTTP": "true",
        "AWS_CONDITIONAL_PUT": "etag",
    }
    pandas = defs.resources[PANDAS_IO_MANAGER]
    assert isinstance(pandas, DeltaLakePandasIOManager)
    assert isinstance(pandas.storage_options, S3Config)
    assert (pandas.storage_options.endpoint, pandas.storage_options.region) == (
        "http://127.0.0.1:9000",
        "eu-west-3",
    )
    assert pandas.client_options is not None and pandas.client_options.allow_http
    # The credentials stay in the environment: nowhere in what the UI gets.
    serialized = serialize_value(snapshot(defs))
    assert "s3a://bucket/prefix" in serialized
    assert KEY_ID not in serialized and SECRET_KEY not in serialized


def test_a_folder_lakehouse_fetches_no_s3_connector(plain_defs):
    assert plain_defs.resources["spark"].driver_config == {}
    assert plain_defs.resources["lakehouse"].storage_options == {}
    assert isinstance(plain_defs.resources[PANDAS_IO_MANAGER].storage_options, LocalConfig)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RECSYS_LAKEHOUSE_URI": "s3://bucket/prefix"}, "use s3a://"),
        ({**S3_ENV, "AWS_ALLOW_HTTP": ""}, "set AWS_ALLOW_HTTP=true"),
    ],
)
def test_a_store_that_no_engine_would_reach_is_refused_by_name(tmp_path, env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"RECSYS_HOME": str(tmp_path), **env})
