"""A Delta table as an MLflow dataset input: its path and version, read from the Delta log."""

import json

import mlflow
import mlflow.store.db.utils
import pandas as pd
import pytest
from deltalake import DeltaTable, write_deltalake
from mlflow import MlflowClient
from mlflow.data import get_source

from recsys_assets.definitions import build_resources
from recsys_assets.resources.lakehouse import Lakehouse
from recsys_assets.resources.mlflow import MlflowResource, create_sqlite_store


def test_a_delta_table_is_logged_as_a_dataset_with_its_version_and_no_row_read(settings):
    resources = build_resources(settings)  # no Spark session starts: delta-rs reads the log
    lakehouse: Lakehouse = resources["lakehouse"]  # type: ignore[assignment]
    tracking: MlflowResource = resources["mlflow"]  # type: ignore[assignment]
    path = lakehouse.uri("ml", "als_train")
    write_deltalake(path, pd.DataFrame({"customer_id": [1, 2, 3]}))  # version 0
    tracking.setup_for_execution(None)  # type: ignore[arg-type]

    with mlflow.start_run(experiment_id=tracking.experiment_id("datasets")) as run:
        first = tracking.log_table(lakehouse, "ml", "als_train", "training")
        write_deltalake(path, pd.DataFrame({"customer_id": [4]}), mode="append")  # version 1
        second = tracking.log_table(lakehouse, "ml", "als_train", "evaluation")

    inputs = tracking.client.get_run(run.info.run_id).inputs.dataset_inputs
    logged = {i.tags[0].value: i.dataset for i in inputs}  # by context
    assert set(logged) == {"training", "evaluation"}
    for context, dataset, version, rows in [
        ("training", first, 0, 3),
        ("evaluation", second, 1, 4),
    ]:
        entity = logged[context]
        assert entity.name == "als_train" and entity.source_type == "delta_table"
        source = get_source(entity)  # MLflow's own DeltaDatasetSource, read back
        assert source.path == path and source.delta_table_version == version
        assert version == DeltaTable(path, version=version).version()
        assert json.loads(entity.profile) == {"num_rows": rows}
        assert entity.digest == dataset.digest
        assert dataset.metadata()["als_train_delta_version"].value == version
    assert first.digest != second.digest  # another version, another digest


def test_links_point_at_the_tracking_server_without_its_credentials(tmp_path):
    def ui(tracking_uri: str) -> str:
        return MlflowResource(tracking_uri=tracking_uri, spark_staging_uri=str(tmp_path)).ui

    assert ui("http://user:secret@10.0.0.7:5000/") == "http://10.0.0.7:5000"
    assert ui("https://mlflow.example.com/team") == "https://mlflow.example.com/team"
    assert ui(f"sqlite:///{tmp_path}/mlflow.db") == "http://127.0.0.1:5000"  # `make mlflow`


class Killed(BaseException):
    """A run killed while MLflow builds a new store's schema."""


def test_a_new_sqlite_store_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "mlflow" / "mlflow.db"
    build_schema = mlflow.store.db.utils._initialize_tables

    def killed_midway(engine):
        with engine.begin() as connection:  # a first table, then the end
            connection.exec_driver_sql("CREATE TABLE _alembic_tmp_experiments (id INTEGER)")
        raise Killed

    monkeypatch.setattr(mlflow.store.db.utils, "_initialize_tables", killed_midway)
    with pytest.raises(Killed):
        create_sqlite_store(path, None)
    assert not path.exists()  # no half-built store where the next run looks

    monkeypatch.setattr(mlflow.store.db.utils, "_initialize_tables", build_schema)
    create_sqlite_store(path, (tmp_path / "artifacts").as_uri())
    client = MlflowClient(f"sqlite:///{path}")
    experiment = client.create_experiment("kept")
    create_sqlite_store(path, None)  # there already: used as it is
    assert client.get_experiment_by_name("kept").experiment_id == experiment
    assert [p.name for p in path.parent.iterdir()] == ["mlflow.db"]  # no partial file left
