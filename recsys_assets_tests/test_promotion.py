"""The champion/challenger decision, and the ALS gate's reading of an evaluation table."""

import pytest

from recsys_assets.assets.als import GateConfig, gate_decision
from recsys_assets.promotion import decide


@pytest.mark.parametrize(
    ("challenger", "champion", "higher_is_better", "limit", "passed", "reason"),
    [
        (0.9, None, False, None, True, "no champion yet"),
        (0.8, 0.9, False, None, True, "beats"),
        (0.9, 0.9, False, None, False, "does not beat"),  # a tie keeps the champion
        (1.0, 0.9, False, None, False, "does not beat"),
        (0.3, 0.2, True, None, True, "beats"),
        (0.2, 0.3, True, None, False, "does not beat"),
        (0.8, None, False, 0.7, False, "above the limit 0.7"),  # even without a champion
        (0.7, 0.9, False, 0.7, True, "beats"),  # at most the limit passes
        (0.1, None, True, 0.2, False, "below the limit 0.2"),
    ],
)
def test_decide(challenger, champion, higher_is_better, limit, passed, reason):
    decision = decide("m", challenger, champion, higher_is_better, limit)
    assert decision.passed is passed
    assert reason in decision.reason


def test_gate_decision_check_result_shows_both_numbers():
    decision = decide("rmse", 0.8, 0.9, higher_is_better=False)
    result = decision.check_result(challenger_version=3)
    assert result.passed
    values = {k: v.value for k, v in result.metadata.items()}
    assert values["challenger"] == 0.8 and values["champion"] == 0.9
    assert values["decision"] == "promote" and values["challenger_version"] == 3


ROWS = [
    {"role": "challenger", "model_version": 2, "rmse": 0.95, "ndcg_at_10": 0.25},
    {"role": "champion", "model_version": 1, "rmse": 0.90, "ndcg_at_10": 0.20},
    {"role": "popularity", "model_version": None, "rmse": None, "ndcg_at_10": 0.15},
]


def test_als_gate_uses_rmse_by_default_and_ndcg_when_configured():
    assert not gate_decision(ROWS, GateConfig()).passed  # worse RMSE
    by_ndcg = gate_decision(ROWS, GateConfig(metric="ndcg_at_10"))
    assert by_ndcg.passed and by_ndcg.higher_is_better


def test_als_gate_max_rmse_applies_without_a_champion():
    first = [ROWS[0], ROWS[2]]
    assert gate_decision(first, GateConfig()).passed
    assert not gate_decision(first, GateConfig(max_rmse=0.9)).passed
