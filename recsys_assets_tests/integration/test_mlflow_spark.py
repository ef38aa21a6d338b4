"""The Spark Connect path for Spark ML models in MLflow writes MLflow's own spark flavour.

Over Spark Connect, models go through a staging folder (resources/mlflow_spark.py). Here, on
classic Spark, that path logs a fitted pipeline and ``mlflow.spark.load_model`` (MLflow's own
loader) must read it back with the same predictions. The Connect side itself runs against a
real Connect server in ``make test-cluster``.
"""

import logging

import mlflow
from mlflow import spark as mlflow_spark
from mlflow.models import Model
from pyspark.sql import functions as F

from recsys_assets.assets.als import ALSConfig, als_pipeline
from recsys_assets.resources.mlflow_spark import _StagedSparkFlavor


def test_a_model_logged_through_the_staging_folder_is_a_spark_flavour_model(
    spark, settings, tmp_path, caplog, monkeypatch
):
    monkeypatch.setattr(logging.getLogger("mlflow"), "propagate", True)  # for caplog
    rows = [(c, f"p{(c * 7 + i) % 9}", 1.0 + i % 3) for c in range(30) for i in range(6)]
    data = spark.createDataFrame(
        rows, "customer_id long, product_id string, interaction_weight double"
    )
    model = als_pipeline(ALSConfig(rank=3, max_iter=2, num_blocks=2)).fit(data)
    staging = tmp_path / "staging"
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)

    with mlflow.start_run():
        logged = Model.log(
            artifact_path=None,
            name="model",
            flavor=_StagedSparkFlavor,
            spark_model=model,
            staging_uri=str(staging),
            pip_requirements=["pyspark"],
        )

    assert "deprecated" not in caplog.text  # MLflow 3's name=, not artifact_path=
    loaded = mlflow_spark.load_model(logged.model_uri)
    expected = model.transform(data).select("customer_id", "product_id", "prediction")
    actual = loaded.transform(data).select(
        "customer_id", "product_id", F.col("prediction").alias("p")
    )
    joined = expected.join(actual, ["customer_id", "product_id"])
    assert joined.count() == expected.count() > 0
    assert joined.where(F.abs(F.col("prediction") - F.col("p")) > 1e-6).count() == 0
    assert not any(staging.iterdir())  # nothing left behind once logged
