"""The champion/challenger protocol, the one place that moves aliases and writes verdicts.

A training asset registers a new model version and marks it ``challenger`` (for people; nothing
reads that alias back). Its gate judges the version *that asset registered*, read from the
asset's materialisation, never from an alias another run may have moved: ``decide`` compares
its metrics with the requirements (thresholds as data), and ``judge`` writes the verdict on the
version as one JSON tag ``validation``: status, reason, Dagster run, the champion compared and
the metrics. ``promote`` moves ``champion`` to that pinned version only if this run's verdict
passed it against the current champion. ``rollback`` gives ``champion`` back to the version it
replaced and marks the rolled-back one ``ROLLED_BACK``: no gate judges it again, so it is never
promoted again without retraining (which registers a new version).

A model may have a *serving* model (``Serving``): another registered model whose versions are
built from this one's champions, for MLflow's scoring server (``als_recommender`` from
``als_recommendation_model``). ``serve`` tags such a version with the champion version it came
from and moves the serving model's ``champion`` to it; ``rollback`` moves it back to the version
tied to the restored champion, so both aliases always name the same model.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import dagster as dg
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

CHAMPION = "champion"
CHALLENGER = "challenger"
VALIDATION_TAG = "validation"  # the verdict, one JSON document (see ``judge``)
PREVIOUS_CHAMPION_TAG = "previous_champion_version"  # on a champion: the version it replaced
DAGSTER_RUN_TAG, DAGSTER_ASSET_TAG = "dagster_run_id", "dagster_asset"  # what trained a version
PASSED, FAILED, ROLLED_BACK = "PASSED", "FAILED", "ROLLED_BACK"
NO_CHAMPION = "none"
LIMIT = "limit"  # a Requirement against a fixed value instead of another model's metric


# ------------------------------------------------------------------ the decision (pure)


@dataclass(frozen=True)
class Requirement:
    """One condition on the challenger's ``metric``: against another scored model (a role such
    as ``champion`` or ``popularity``; skipped when that role is absent) or a fixed ``limit``.
    ``strict``: must beat it; otherwise must not be worse by more than ``tolerance``."""

    metric: str
    against: str
    higher_is_better: bool
    strict: bool = False
    tolerance: float = 0.0
    limit: float | None = None

    @property
    def name(self) -> str:
        op = (
            (">" if self.strict else ">=")
            if self.higher_is_better
            else ("<" if self.strict else "<=")
        )
        return f"{self.metric} {op} {self.against}"


@dataclass(frozen=True)
class Check:
    requirement: Requirement
    passed: bool
    reason: str


@dataclass(frozen=True)
class GateDecision:
    checks: tuple[Check, ...]
    scores: Mapping[str, Mapping[str, float | None]]  # role -> metric -> value

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        failed = [c.reason for c in self.checks if not c.passed]
        return "; ".join(failed or [c.reason for c in self.checks]) or "no requirement"

    def metrics(self) -> dict[str, float]:
        """``<role>_<metric>`` for every finite number compared, e.g. champion_rmse."""
        return {
            f"{role}_{metric}": float(value)
            for role, values in self.scores.items()
            for metric, value in values.items()
            if is_finite(value)
        }

    def check_result(self, **metadata) -> dg.AssetCheckResult:
        """As a blocking asset check's result: each requirement's verdict and every number."""
        values: dict = {
            "decision": "promote" if self.passed else "keep the champion",
            "reason": self.reason,
            **{f"requirement: {c.requirement.name}": c.reason for c in self.checks},
            **{k: dg.MetadataValue.float(v) for k, v in self.metrics().items()},
            **metadata,
        }
        return dg.AssetCheckResult(
            passed=self.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=values
        )


def is_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check(req: Requirement, scores: Mapping[str, Mapping[str, float | None]]) -> Check:
    value = scores["challenger"].get(req.metric)
    if not is_finite(value):
        return Check(req, False, f"challenger {req.metric} is not a finite number ({value})")
    if req.against == LIMIT:
        reference, label = req.limit, "the limit"
    elif req.against in scores:
        reference, label = scores[req.against].get(req.metric), f"{req.against}'s"
    else:
        return Check(req, True, f"no {req.against} to compare {req.metric} with")
    if not is_finite(reference):
        return Check(req, False, f"{label} {req.metric} is not a finite number ({reference})")
    better_by = (value - reference) if req.higher_is_better else (reference - value)
    passed = better_by > 0 if req.strict else better_by >= -req.tolerance
    if better_by > 0:
        relation = "above" if req.higher_is_better else "below"
    elif better_by == 0:
        relation = "equal to"
    else:
        relation = "below" if req.higher_is_better else "above"
    return Check(
        req, passed, f"challenger {req.metric} {value:.4f} is {relation} {label} {reference:.4f}"
    )


def decide(
    scores: Mapping[str, Mapping[str, float | None]], requirements: Sequence[Requirement]
) -> GateDecision:
    """The gate: the challenger passes only if it meets every requirement. ``scores`` maps a
    role (``challenger``, ``champion``, a baseline) to its metrics; a non-finite metric fails."""
    return GateDecision(tuple(_check(r, scores) for r in requirements), scores)


# ------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class Serving:
    """A registered model served in place of another: each of its versions is built from one
    champion version of that model, named in the version's tag ``tag``."""

    name: str  # e.g. als_recommender
    tag: str  # e.g. als_version


@dataclass(frozen=True)
class Verdict:
    status: Literal["PASSED", "FAILED", "ROLLED_BACK"]
    reason: str
    dagster_run_id: str
    champion_version: str  # the champion it was compared with, or NO_CHAMPION
    metrics: Mapping[str, float]

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True, allow_nan=False)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> "Verdict | None":
        raw = tags.get(VALIDATION_TAG)
        return cls(**json.loads(raw)) if raw else None


class Registry:
    """The registered model ``name``: its aliases and verdicts."""

    def __init__(self, client: MlflowClient, name: str, serving: "Serving | None" = None):
        self.client, self.name, self.serving = client, name, serving

    def version(self, version: str) -> ModelVersion:
        return self.client.get_model_version(self.name, version)

    def with_alias(self, alias: str) -> ModelVersion | None:
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def champion(self) -> str | None:
        found = self.with_alias(CHAMPION)
        return str(found.version) if found else None

    def verdict(self, version: str) -> Verdict | None:
        return Verdict.from_tags(self.version(version).tags)

    def mark_challenger(self, version: str, dagster_run_id: str, asset: str) -> None:
        """Tag a newly registered version with the Dagster run and asset that trained it, then
        point ``challenger`` at it (for people browsing MLflow)."""
        for key, value in {DAGSTER_RUN_TAG: dagster_run_id, DAGSTER_ASSET_TAG: asset}.items():
            self.client.set_model_version_tag(self.name, version, key, value)
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)

    def judge(
        self,
        version: str,
        champion: str | None,
        scores: Mapping[str, Mapping[str, float | None]],
        requirements: Sequence[Requirement],
        dagster_run_id: str,
    ) -> GateDecision:
        """Decide on ``version`` (compared with ``champion``) and record the verdict in one tag
        write. A rolled-back version is refused without touching its mark."""
        previous = self.verdict(version)
        if previous and previous.status == ROLLED_BACK:
            refused = Check(
                Requirement("status", "rollback", higher_is_better=True),
                False,
                f"v{version} was rolled back ({previous.reason}): retrain to promote a model",
            )
            return GateDecision((refused,), scores)
        decision = decide(scores, requirements)
        verdict = Verdict(
            PASSED if decision.passed else FAILED,
            decision.reason,
            dagster_run_id,
            champion or NO_CHAMPION,
            decision.metrics(),
        )
        self.client.set_model_version_tag(self.name, version, VALIDATION_TAG, verdict.to_json())
        return decision

    def promote(self, version: str, dagster_run_id: str) -> str | None:
        """Move ``champion`` to ``version`` if this run's gate passed it against the current
        champion; returns the replaced version. Anything else raises and moves nothing."""
        verdict = self.verdict(version)
        if verdict is None or verdict.dagster_run_id != dagster_run_id:
            raise dg.Failure(
                f"No gate judged {self.name} v{version} in this run: materialise the evaluation "
                "and its gate in the same run as the champion; champion unchanged."
            )
        if verdict.status != PASSED:
            raise dg.Failure(
                f"{self.name} v{version} did not pass its gate ({verdict.status}: "
                f"{verdict.reason}); champion unchanged."
            )
        current = self.champion()
        if (current or NO_CHAMPION) != verdict.champion_version:
            raise dg.Failure(
                f"The champion moved to {current} after the gate compared against "
                f"{verdict.champion_version}: nothing promoted."
            )
        if current == version:
            return None
        if current:  # kept on the new champion, for rollback
            self.client.set_model_version_tag(self.name, version, PREVIOUS_CHAMPION_TAG, current)
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        return current

    def rollback(self, dagster_run_id: str) -> tuple[str, str]:
        """Give ``champion`` back to the version it replaced and mark the current one
        ``ROLLED_BACK`` (and drop its ``challenger`` alias); returns (rolled back, restored).
        The serving model's ``champion`` follows (see ``follow``)."""
        current = self.with_alias(CHAMPION)
        if current is None:
            raise dg.Failure(f"{self.name} has no champion to roll back.")
        version = str(current.version)
        restored = current.tags.get(PREVIOUS_CHAMPION_TAG)
        if not restored:
            raise dg.Failure(f"{self.name} v{version} replaced no earlier champion.")
        mark = Verdict(ROLLED_BACK, f"rolled back to v{restored}", dagster_run_id, restored, {})
        # Marked first: if the alias move fails, the version is still never promoted again.
        self.client.set_model_version_tag(self.name, version, VALIDATION_TAG, mark.to_json())
        self.client.set_registered_model_alias(self.name, CHAMPION, restored)
        challenger = self.with_alias(CHALLENGER)
        if challenger is not None and str(challenger.version) == version:
            self.client.delete_registered_model_alias(self.name, CHALLENGER)
        if self.serving is not None:
            self.follow(restored)
        return version, restored

    # -------------------------------------------------------------- the serving model

    def serve(self, version: str, serving_version: str) -> None:
        """Tie ``serving_version`` of the serving model to this model's champion ``version``
        (tag ``<serving.tag>``) and point the serving model's ``champion`` at it."""
        serving = self.serving_model()
        if self.champion() != version:
            raise dg.Failure(
                f"{self.name} v{version} is not the champion: {serving.name} "
                f"v{serving_version} is not served."
            )
        self.client.set_model_version_tag(serving.name, serving_version, serving.tag, version)
        self.client.set_registered_model_alias(serving.name, CHAMPION, serving_version)

    def served_from(self, version: str) -> str | None:
        """The newest serving model version built from this model's ``version``, if any."""
        serving = self.serving_model()
        found = self.client.search_model_versions(
            f"name = '{serving.name}' AND tags.`{serving.tag}` = '{version}'"
        )
        return str(max(int(v.version) for v in found)) if found else None

    def follow(self, version: str) -> str | None:
        """Point the serving model's ``champion`` at the version built from ``version``; with
        none (a champion older than serving), drop the alias rather than serve another
        model. Returns the serving version, or None."""
        serving, target = self.serving_model(), self.served_from(version)
        if target is not None:
            self.client.set_registered_model_alias(serving.name, CHAMPION, target)
        elif Registry(self.client, serving.name).champion() is not None:
            self.client.delete_registered_model_alias(serving.name, CHAMPION)
        return target

    def serving_model(self) -> "Serving":
        """The serving model; a model without one cannot serve."""
        if self.serving is None:
            raise ValueError(f"{self.name} has no serving model")
        return self.serving


# ------------------------------------------------------------------ the pinned version


def registered_version(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, asset: str
) -> str:
    """The model version ``asset`` registered: in this run if it ran here, else its latest
    materialisation. Read from Dagster's event log, so another run moving an alias cannot
    change which version this run judges and promotes."""
    key = dg.AssetKey(asset)
    events = context.instance.all_logs(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    )
    mine = [e for e in events if e.dagster_event and e.dagster_event.asset_key == key]
    event = mine[-1] if mine else context.instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event else None
    if materialization is None or "model_version" not in materialization.metadata:
        raise dg.Failure(f"{asset} has registered no model version yet: materialise it first.")
    return str(materialization.metadata["model_version"].value)
