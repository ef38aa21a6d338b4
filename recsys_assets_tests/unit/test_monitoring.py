"""Monitoring: PSI on hand-made samples with known answers, recommendation metrics on a tiny
Spark frame, and drift_retrain_sensor against a real instance holding a real check evaluation."""

import math

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap

from recsys_assets.assets.monitoring import FEATURE_DRIFT
from recsys_assets.definitions import build_definitions
from recsys_assets.ml import monitoring as mon
from recsys_assets.sensors import DRIFT_RETRAIN_TAG, drift_retrain_sensor
from recsys_assets.settings import Settings

# ----------------------------------------------------------------------- PSI


def test_identical_distributions_have_zero_psi():
    values = pd.Series(np.random.default_rng(0).normal(size=1000))
    assert mon.numeric_psi(values, values.copy()) == 0.0
    states = pd.Series(["CA", "NY", "TX", "CA", None])
    assert mon.categorical_psi(states, states.sample(frac=1.0, random_state=1)) == 0.0


def test_psi_of_a_shifted_two_value_feature_is_the_hand_computed_one():
    reference = pd.Series([0] * 5 + [1] * 5)  # median 0.5: bins (-inf, 0.5], (0.5, inf)
    current = pd.Series([0] * 2 + [1] * 8)
    # p = (0.5, 0.5), q = (0.2, 0.8): 0.3 ln(2.5) + 0.3 ln(1.6)
    expected = (0.2 - 0.5) * math.log(0.2 / 0.5) + (0.8 - 0.5) * math.log(0.8 / 0.5)
    assert mon.numeric_psi(reference, current, n_bins=2) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.41589, abs=1e-5)


def test_an_empty_bin_is_floored_at_epsilon():
    reference = pd.Series([0] * 5 + [1] * 5)
    current = pd.Series([0] * 10)  # nothing in the upper bin
    eps = mon.EPSILON
    expected = (1 - 0.5) * math.log(1 / 0.5) + (eps - 0.5) * math.log(eps / 0.5)
    assert mon.numeric_psi(reference, current, n_bins=2) == pytest.approx(expected, rel=1e-12)


def test_bins_are_the_reference_deciles_closed_on_the_right():
    reference = pd.Series(np.arange(1, 101, dtype=float))  # deciles at 10.9, 20.8, ...
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
    shares = mon.bin_shares(reference, edges)
    assert len(shares) == 11  # ten bins and the missing one
    assert shares[:10] == pytest.approx([0.1] * 10) and shares[10] == 0.0
    # A value on an edge goes to the bin below it: 0 < x <= e_1 is bin 0.
    assert mon.bin_shares(pd.Series([edges[0]]), edges)[0] == 1.0
    assert mon.bin_shares(pd.Series([np.nan, 1.0]), edges).tolist()[-1] == 0.5


def test_categorical_psi_counts_a_new_category_and_missing_values():
    reference = pd.Series(["a"] * 5 + ["b"] * 5)
    current = pd.Series(["a"] * 5 + ["c"] * 4 + [None])
    eps = mon.EPSILON
    terms = [(0.5, 0.5), (0.5, eps), (eps, 0.4), (eps, 0.1)]  # a, b, c, missing: (p, q)
    expected = sum((q - p) * math.log(q / p) for p, q in terms)
    assert mon.categorical_psi(reference, current) == pytest.approx(expected, rel=1e-12)


def test_summary_names_the_features_over_the_threshold():
    summary = mon.summarize({"a": 0.05, "b": 0.5, "c": 0.25, "d": 0.2}, threshold=0.2)
    assert summary.max_psi == 0.5 and summary.max_psi_feature == "b"
    assert summary.drifted == ["b", "c"]  # strictly above; the largest first
    assert summary.drifted_share == 0.5
    assert summary.table().feature.tolist() == ["b", "c", "d", "a"]
    assert "| b | 0.5000 | yes |" in summary.markdown()
    with pytest.raises(ValueError, match="finite"):
        mon.summarize({"a": float("nan")})


def test_feature_psi_covers_numeric_and_categorical_columns():
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(size=2000), "s": rng.choice(["u", "v"], 2000)})
    current = pd.DataFrame({"x": rng.normal(1.0, size=2000), "s": rng.choice(["u", "v"], 2000)})
    psi = mon.feature_psi(reference, current, ["x"], ["s"])
    assert set(psi) == {"x", "s"}
    assert psi["x"] > 0.5  # a one-standard-deviation shift
    assert psi["s"] < 0.01  # the same two categories, drawn alike


# ----------------------------------------------------------------------- recommendations


def test_recommendation_metrics_on_a_hand_made_frame(spark):
    rows = [
        # customer 1: a full list of 3 (k=3), from ALS
        (1, "p1", "als"),
        (1, "p2", "als"),
        (1, "p3", "als"),
        # customer 2: a full list from the popularity fallback
        (2, "p1", "popularity"),
        (2, "p2", "popularity"),
        (2, "p4", "popularity"),
        # customer 3: only one product left to recommend
        (3, "p1", "als"),
    ]
    recommendations = spark.createDataFrame(
        rows, "customer_id long, product_id string, source string"
    )
    catalogue = spark.createDataFrame(
        [(f"p{i}",) for i in range(1, 9)] + [(None,)], "product_id string"
    )
    customers = spark.createDataFrame([(c,) for c in (1, 2, 3, 4)], "customer_id long")

    metrics = mon.recommendation_metrics(recommendations, catalogue, customers, k=3, top=2)

    assert metrics.rows == 7
    assert metrics.recommended_products == 4 and metrics.catalogue_products == 8
    assert metrics.catalogue_coverage == 0.5
    assert metrics.customers == 4 and metrics.customers_with_full_list == 2
    assert metrics.full_list_share == 0.5  # customer 4 got nothing, customer 3 too little
    # p1 is recommended 3 times, p2 twice: the top 2 take 5 of 7 rows.
    assert metrics.top_products_rows == 5
    assert metrics.top_products_concentration == pytest.approx(5 / 7)
    assert metrics.popularity_rows == 3 and metrics.popularity_share == pytest.approx(3 / 7)
    # Without a customer list, the customers who got a row are the denominator.
    alone = mon.recommendation_metrics(recommendations, catalogue, None, k=3, top=2)
    assert alone.customers == 3 and alone.full_list_share == pytest.approx(2 / 3)


def test_recommendation_metrics_of_an_empty_table_are_zero(spark):
    empty = spark.createDataFrame([], "customer_id long, product_id string, source string")
    catalogue = spark.createDataFrame([("p1",)], "product_id string")
    metrics = mon.recommendation_metrics(empty, catalogue, None, k=10)
    assert (metrics.rows, metrics.catalogue_products) == (0, 1)
    assert metrics.catalogue_coverage == 0.0 and metrics.popularity_share == 0.0


def test_the_drift_report_is_evidently_html_naming_every_column(tmp_path):
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": rng.normal(size=300), "s": rng.choice(["u", "v"], 300)})
    current = pd.DataFrame({"x": rng.normal(2.0, size=300), "s": rng.choice(["u", "v"], 300)})
    path = tmp_path / "report.html"
    mon.drift_report_html(reference, current, ["x"], ["s"], 0.2, str(path))
    html = path.read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert '"title": "Data Drift"' in html
    assert "Drift is detected for 50.0% of columns (1 out of 2)." in html  # x, not s


# ----------------------------------------------------------------------- drift_retrain_sensor


class DriftConfig(dg.Config):
    max_psi: float | None = None  # None: the check skips, as with no champion


@dg.asset(name="customer_features")
def tiny_features() -> None:
    """Stands in for the real asset: the sensor only reads the check's evaluations."""


@dg.asset_check(asset=tiny_features, name=FEATURE_DRIFT)
def tiny_drift(config: DriftConfig) -> dg.AssetCheckResult:
    if config.max_psi is None:
        return dg.AssetCheckResult(passed=True, metadata={"skipped": "no champion"})
    return dg.AssetCheckResult(
        passed=config.max_psi <= 0.2,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"max_psi": dg.MetadataValue.float(config.max_psi)},
    )


@dg.asset(name="churn_model")
def tiny_model() -> None:
    """Stands in for the training asset: materialised in a run means retrained in it."""


def evaluate(instance: dg.DagsterInstance, max_psi: float | None, with_model=False, tags=None):
    """A real run recording a real evaluation of the drift check in ``instance``."""
    config = {"ops": {f"customer_features_{FEATURE_DRIFT}": {"config": {"max_psi": max_psi}}}}
    assets = [tiny_features, tiny_drift, *([tiny_model] if with_model else [])]
    result = dg.materialize(assets, instance=instance, run_config=config, tags=tags)
    assert result.success
    return result


def tick(instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return drift_retrain_sensor(context)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_a_drift_above_the_threshold_requests_one_refresh_per_evaluation(instance, monkeypatch):
    monkeypatch.setenv("RECSYS_DRIFT_RETRAIN_PSI", "0.3")
    assert "not been evaluated" in tick(instance).skip_reason.skip_message

    calm = evaluate(instance, 0.25)  # above the check's WARN, not above the retrain threshold
    quiet = tick(instance)
    assert not quiet.run_requests and "not above 0.3" in quiet.skip_reason.skip_message

    drifted = evaluate(instance, 0.45)
    result = tick(instance, quiet.cursor)
    [request] = result.run_requests
    assert request.job_name in (None, "refresh_job")
    assert request.tags[DRIFT_RETRAIN_TAG] == drifted.run_id != calm.run_id
    assert request.tags["recsys/max_psi"] == "0.4500"
    assert int(result.cursor) > int(quiet.cursor)
    again = tick(instance, result.cursor)  # the same evaluation: no second run
    assert not again.run_requests and "already looked at" in again.skip_reason.skip_message
    # Without the cursor, the run key still names that evaluation (the daemon drops repeats).
    [repeat] = tick(instance).run_requests
    assert repeat.run_key == request.run_key

    monkeypatch.setenv("RECSYS_DRIFT_RETRAIN_PSI", "0.5")
    assert not tick(instance).run_requests  # the threshold is read at each tick


def test_no_retrain_for_a_skipped_check_a_retrained_run_or_a_drift_retrain(instance, monkeypatch):
    monkeypatch.delenv("RECSYS_DRIFT_RETRAIN_PSI", raising=False)  # the default, 0.2
    evaluate(instance, None)
    assert "no PSI" in tick(instance).skip_reason.skip_message

    evaluate(instance, 0.9, with_model=True)  # that run trained churn_model already
    assert "retrained" in tick(instance).skip_reason.skip_message

    evaluate(instance, 0.9, tags={DRIFT_RETRAIN_TAG: "some-run"})  # this sensor's own run
    assert "drift retrain already" in tick(instance).skip_reason.skip_message

    later = evaluate(instance, 0.9)  # a later run that did not train: churn_model trained before
    [request] = tick(instance).run_requests
    assert request.tags[DRIFT_RETRAIN_TAG] == later.run_id


# ----------------------------------------------------------------------- in the code location

MONITORING_CHECKS = {
    ("customer_features", FEATURE_DRIFT),
    ("churn_predictions", "churn_score_drift"),
    *(
        ("customer_recommendations", name)
        for name in (
            "catalogue_coverage",
            "full_list_share",
            "top_products_concentration",
            "popularity_share",
        )
    ),
}


def test_the_monitoring_checks_run_in_refresh_job_and_block_nothing(tmp_path):
    defs = build_definitions(Settings.from_env({"RECSYS_HOME": str(tmp_path)}))
    snap = RepositorySnap.from_def(defs.get_repository_def())
    nodes = {(c.asset_key.to_user_string(), c.name): c for c in snap.asset_check_nodes or []}

    assert MONITORING_CHECKS <= set(nodes)
    for key in MONITORING_CHECKS:
        assert "refresh_job" in nodes[key].job_names, key
        assert not nodes[key].blocking, key
    sensor = defs.resolve_sensor_def("drift_retrain_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED  # off unless turned on
    assert sensor.job_name == "refresh_job"
    assert Settings.from_env({}).drift_retrain_psi == 0.2
    assert Settings.from_env({"RECSYS_DRIFT_RETRAIN_PSI": "0.35"}).drift_retrain_psi == 0.35
