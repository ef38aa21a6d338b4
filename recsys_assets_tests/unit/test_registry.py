"""The champion/challenger protocol: the pure decision, and the registry on a real MLflow store."""

import json
import math

import dagster as dg
import mlflow
import pytest
from mlflow import MlflowClient

from recsys_assets import registry as reg
from recsys_assets.registry import LIMIT, Registry, Requirement, decide

RMSE = Requirement("rmse", "champion", higher_is_better=False, strict=True)
NDCG_CHAMPION = Requirement("ndcg_at_10", "champion", higher_is_better=True)
NDCG_POPULARITY = Requirement("ndcg_at_10", "popularity", higher_is_better=True)
ALS = [RMSE, NDCG_CHAMPION, NDCG_POPULARITY]


def scores(challenger, champion=None, popularity=0.1):
    found = {"challenger": dict(zip(("rmse", "ndcg_at_10"), challenger, strict=True))}
    if champion:
        found["champion"] = dict(zip(("rmse", "ndcg_at_10"), champion, strict=True))
    found["popularity"] = {"ndcg_at_10": popularity}
    return found


@pytest.mark.parametrize(
    ("challenger", "champion", "passed", "failing"),
    [
        ((0.5, 0.3), None, True, []),  # no champion: only popularity's NDCG applies
        ((0.5, 0.3), (0.6, 0.2), True, []),
        ((0.6, 0.3), (0.6, 0.2), False, ["rmse < champion"]),  # an RMSE tie keeps the champion
        ((0.5, 0.2), (0.6, 0.2), True, []),  # an NDCG tie passes
        ((0.5, 0.19), (0.6, 0.2), False, ["ndcg_at_10 >= champion"]),
        ((0.5, 0.09), None, False, ["ndcg_at_10 >= popularity"]),
        ((float("nan"), 0.3), None, False, ["rmse < champion"]),  # NaN fails, champion or not
        ((float("nan"), 0.3), (0.6, 0.2), False, ["rmse < champion"]),
        ((0.5, float("nan")), None, False, ["ndcg_at_10 >= champion", "ndcg_at_10 >= popularity"]),
        ((0.5, 0.3), (float("inf"), 0.2), False, ["rmse < champion"]),
    ],
)
def test_decide(challenger, champion, passed, failing):
    decision = decide(scores(challenger, champion), ALS)
    assert decision.passed is passed
    assert [c.requirement.name for c in decision.checks if not c.passed] == failing


def test_a_non_finite_metric_fails_even_without_a_champion_when_a_floor_applies():
    floor = Requirement("rmse", LIMIT, higher_is_better=False, limit=0.7)
    assert not decide(scores((math.nan, 0.3)), [floor]).passed
    assert not decide(scores((0.71, 0.3)), [floor]).passed
    assert decide(scores((0.7, 0.3)), [floor]).passed  # at most the limit


def test_tolerance_lets_ndcg_fall_a_little():
    lenient = Requirement("ndcg_at_10", "champion", True, tolerance=0.02)
    assert decide(scores((0.5, 0.19), (0.6, 0.2)), [lenient]).passed
    assert not decide(scores((0.5, 0.17), (0.6, 0.2)), [lenient]).passed


def test_check_result_shows_each_requirement_and_every_number():
    result = decide(scores((0.5, 0.15), (0.6, 0.2), popularity=0.1), ALS).check_result(x=1)
    values = {k: v.value for k, v in result.metadata.items()}
    assert not result.passed and values["decision"] == "keep the champion"
    assert values["reason"] == "challenger ndcg_at_10 0.1500 is below champion's 0.2000"
    assert values["requirement: rmse < champion"].startswith("challenger rmse 0.5000 is below")
    assert values["champion_ndcg_at_10"] == 0.2 and values["popularity_ndcg_at_10"] == 0.1
    assert values["x"] == 1


# ----------------------------------------------------------------- on a real registry


@pytest.fixture
def models(tmp_path) -> Registry:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri, uri)
    client.create_registered_model("m")
    mlflow.set_tracking_uri(uri)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "artifacts"))
    for _ in range(3):
        run = client.create_run(experiment)
        client.create_model_version("m", f"runs:/{run.info.run_id}/model", run.info.run_id)
    return Registry(client, "m")


def test_judge_writes_one_tag_and_promote_acts_on_the_pinned_version(models):
    decision = models.judge("1", None, scores((0.5, 0.3)), ALS, "run-1")
    assert decision.passed
    tags = models.version("1").tags
    assert list(tags) == [reg.VALIDATION_TAG]  # the verdict is one write
    verdict = json.loads(tags[reg.VALIDATION_TAG])
    assert verdict["status"] == "PASSED" and verdict["dagster_run_id"] == "run-1"
    assert verdict["champion_version"] == "none"
    assert verdict["metrics"]["challenger_rmse"] == 0.5

    models.mark_challenger("2", "run-2", "als_challenger")  # promote ignores this alias
    assert models.with_alias(reg.CHALLENGER).version == 2
    tags = models.version("2").tags  # what trained it
    assert tags == {reg.DAGSTER_RUN_TAG: "run-2", reg.DAGSTER_ASSET_TAG: "als_challenger"}
    with pytest.raises(dg.Failure, match="No gate judged"):
        models.promote("1", "run-2")  # the verdict was given in run-1
    assert models.promote("1", "run-1") is None
    assert models.champion() == "1"

    models.judge("2", "1", scores((0.6, 0.3), (0.5, 0.3)), ALS, "run-3")
    with pytest.raises(dg.Failure, match="did not pass"):
        models.promote("2", "run-3")
    models.judge("3", "none-yet", scores((0.4, 0.3), (0.5, 0.3)), ALS, "run-4")
    with pytest.raises(dg.Failure, match="champion moved"):
        models.promote("3", "run-4")  # judged against another champion than the current
    assert models.champion() == "1"


def test_rollback_restores_the_previous_champion_and_is_never_promoted_again(models):
    models.judge("1", None, scores((0.5, 0.3)), ALS, "r1")
    models.promote("1", "r1")
    models.judge("2", "1", scores((0.4, 0.3), (0.5, 0.3)), ALS, "r2")
    models.mark_challenger("2", "r2", "als_challenger")
    assert models.promote("2", "r2") == "1"

    assert models.rollback("r3") == ("2", "1")

    assert models.champion() == "1"
    assert models.verdict("2").status == reg.ROLLED_BACK
    assert models.with_alias(reg.CHALLENGER) is None
    again = models.judge("2", "1", scores((0.1, 0.9), (0.5, 0.3)), ALS, "r4")  # would pass
    assert not again.passed and "rolled back" in again.reason
    assert models.verdict("2").status == reg.ROLLED_BACK  # the mark stays
    with pytest.raises(dg.Failure):
        models.promote("2", "r4")
    with pytest.raises(dg.Failure, match="replaced no earlier champion"):
        models.rollback("r5")


def test_the_serving_model_follows_promotion_and_rollback(models):
    client = models.client
    serving = reg.Serving("m_served", tag="m_version")
    client.create_registered_model(serving.name)
    for _ in range(3):
        client.create_model_version(serving.name, "file:///nowhere", None)
    tied = Registry(client, "m", serving)
    served = Registry(client, serving.name)
    models.judge("1", None, scores((0.5, 0.3)), ALS, "r1")
    models.promote("1", "r1")
    tied.serve("1", "1")
    with pytest.raises(dg.Failure, match="is not the champion"):
        tied.serve("2", "2")  # v2 of m was never promoted: nothing moves
    assert served.champion() == "1" and served.version("2").tags == {}
    models.judge("2", "1", scores((0.4, 0.3), (0.5, 0.3)), ALS, "r2")
    models.promote("2", "r2")
    tied.serve("2", "2")
    assert served.champion() == "2" and served.version("2").tags == {"m_version": "2"}
    assert tied.served_from("1") == "1" and tied.served_from("3") is None

    assert tied.rollback("r3") == ("2", "1")
    assert models.champion() == "1" and served.champion() == "1"

    # A restored champion that predates serving: the serving alias goes, none is served wrong.
    client.delete_model_version_tag(serving.name, "1", "m_version")
    models.judge("3", "1", scores((0.3, 0.3), (0.5, 0.3)), ALS, "r4")
    models.promote("3", "r4")
    tied.serve("3", "3")
    assert tied.rollback("r5") == ("3", "1")
    assert models.champion() == "1" and served.champion() is None
