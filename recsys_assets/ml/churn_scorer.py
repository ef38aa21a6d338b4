"""The served churn model: an MLflow pyfunc around a ``churn_model`` version and the features.

It holds the registered scikit-learn pipeline (copied from the champion version into its own
artifacts) and ``customer_features`` as it was at promotion (one row per current customer), so
a request needs only ``customer_id``; a request that passes the feature columns is scored on
them instead. Probabilities are those ``churn_predictions`` writes: ``predict_proba`` of
``ml.churn.model_input``. As for the recommender (see ``ml.recommender``), the input is checked
here, since MLflow's schema enforcement would ignore an unknown column: unknown columns, some
features without the others and ids without features are refused with 400 and the reason.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow import sklearn as mlflow_sklearn
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from recsys_assets.ml.churn import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from recsys_assets.ml.churn import model_input as churn_input
from recsys_assets.ml.recommender import CUSTOMER_ID, BadRequest, request_ids

CLASSIFIER, FEATURES = "classifier", "features"  # artifact keys
VERSION_KEY = "churn_version"  # in the model config: the churn_model version it serves
FEATURE_NAMES = (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
LOOKUP, REQUEST = "customer_features", "request"  # where a row's features came from
SIGNATURE = ModelSignature(
    outputs=Schema(
        [
            ColSpec("long", CUSTOMER_ID),
            ColSpec("double", "churn_probability"),
            ColSpec("long", "model_version"),
            ColSpec("string", "features"),
        ]
    )
)
ALLOWED = {CUSTOMER_ID, "as_of", *FEATURE_NAMES}  # as_of: a customer_features row as it is


def feature_table(features: pd.DataFrame) -> pd.DataFrame:
    """What is stored for look-ups: customer_id and the model's input, one row per customer."""
    table = churn_input(features).assign(**{CUSTOMER_ID: features[CUSTOMER_ID].astype("int64")})
    return table.drop_duplicates(CUSTOMER_ID, keep="last").set_index(CUSTOMER_ID)


class ChurnScorer(PythonModel):
    """churn_probability for each requested customer_id, from its stored or passed features."""

    def load_context(self, context) -> None:
        self.use(
            mlflow_sklearn.load_model(context.artifacts[CLASSIFIER]),
            pd.read_parquet(context.artifacts[FEATURES]),
            int(context.model_config[VERSION_KEY]),
        )

    def use(self, classifier, features: pd.DataFrame, version: int) -> ChurnScorer:
        self.classifier, self.version = classifier, version
        self.features = features if features.index.name == CUSTOMER_ID else feature_table(features)
        return self

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            raise BadRequest('Expected records: {"dataframe_records": [{"customer_id": 42}]}.')
        passed = [c for c in FEATURE_NAMES if c in model_input.columns]
        if passed:
            return self.from_request(model_input, passed)
        ids = request_ids(model_input, ALLOWED)
        missing = [c for c in ids if c not in self.features.index]
        if missing:
            raise BadRequest(
                f"No features for customer_id(s) {missing[:20]} in customer_features: "
                f"pass their feature columns {list(FEATURE_NAMES)}."
            )
        return self.scored(ids, self.features.loc[ids], LOOKUP)

    def from_request(self, frame: pd.DataFrame, passed: list[str]) -> pd.DataFrame:
        absent = [c for c in FEATURE_NAMES if c not in passed]
        if absent:
            raise BadRequest(f"Features passed without {absent}: pass all or none of them.")
        request_ids(frame.drop(columns=passed), ALLOWED)  # unknown columns, bad ids
        ids = [int(c) for c in frame[CUSTOMER_ID]]
        try:
            features = churn_input(frame)
        except (TypeError, ValueError) as error:
            raise BadRequest(f"Features that are not numbers: {error}") from error
        return self.scored(ids, features, REQUEST)

    def scored(self, ids: list[int], features: pd.DataFrame, source: str) -> pd.DataFrame:
        columns = list(FEATURE_NAMES)
        probability = self.classifier.predict_proba(features[columns])[:, 1] if ids else np.empty(0)
        return pd.DataFrame(
            {
                CUSTOMER_ID: np.asarray(ids, dtype="int64"),
                "churn_probability": np.asarray(probability, dtype="float64"),
                "model_version": np.full(len(ids), self.version, dtype="int64"),
                "features": source,
            }
        )
