"""The champion/challenger decision both models' gates make, as one pure function."""

from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class GateDecision:
    metric: str
    challenger: float
    champion: float | None  # None: no champion yet
    higher_is_better: bool
    limit: float | None  # an absolute bound the challenger must also meet, if configured
    passed: bool
    reason: str

    def check_result(self, **metadata) -> dg.AssetCheckResult:
        """As a blocking asset check's result: both numbers and the decision, in the UI."""
        values: dict = {
            "metric": self.metric,
            "challenger": self.challenger,
            "decision": "promote" if self.passed else "keep the champion",
            "reason": self.reason,
            **metadata,
        }
        if self.champion is not None:
            values["champion"] = self.champion
        if self.limit is not None:
            values["limit"] = self.limit
        return dg.AssetCheckResult(
            passed=self.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=values
        )


def decide(
    metric: str,
    challenger: float,
    champion: float | None,
    higher_is_better: bool,
    limit: float | None = None,
) -> GateDecision:
    """The challenger passes if it strictly beats the champion (or there is none) and the limit."""
    better = (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)
    if limit is not None and better(limit, challenger):
        side = "below" if higher_is_better else "above"
        passed, reason = False, f"challenger {metric} {challenger:.4f} is {side} the limit {limit}"
    elif champion is None:
        passed, reason = True, "no champion yet"
    elif better(challenger, champion):
        passed, reason = True, f"challenger {metric} {challenger:.4f} beats {champion:.4f}"
    else:
        passed = False
        reason = f"challenger {metric} {challenger:.4f} does not beat champion {champion:.4f}"
    return GateDecision(metric, challenger, champion, higher_is_better, limit, passed, reason)
