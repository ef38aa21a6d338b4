"""Spark ML models in and out of MLflow's ``spark`` flavour, on classic Spark or Spark Connect.

On classic Spark this is ``mlflow.spark.log_model``/``load_model``. Over a remote Spark Connect
server those fail: they copy the model between Spark's file system and the client through the
driver JVM (``SparkContext._gateway``), which a Connect client does not have. There the model is
saved and loaded by the server through a staging folder that client and cluster share (under
the lakehouse, like Databricks' ``dfs_tmpdir`` on DBFS), copied with pyarrow, and described by
the same ``MLmodel`` metadata, so either side loads what the other logged.
"""

import os
import tempfile
import uuid
from typing import Any

import mlflow
import pyarrow.fs as pafs
from mlflow import spark as mlflow_spark
from mlflow.models import get_model_info
from mlflow.models.model import Model, ModelInfo
from pyspark.ml import PipelineModel
from pyspark.sql.utils import is_remote

from recsys_assets.resources.lakehouse import filesystem as lakehouse_fs

SPARKML_DIR = "sparkml"  # where the spark flavour keeps Spark ML's own model files
STAGED_MARKER = "_STAGED"  # on an object store: this model's files are all staged


def log_model(model: PipelineModel, staging_uri: str, name: str, **kwargs: Any) -> ModelInfo:
    """``mlflow.spark.log_model(model, **kwargs)`` as the model ``name``, also over Spark Connect.

    MLflow 3's ``name=`` everywhere but where the spark flavour has none: its ``log_model`` (3.17)
    still takes only ``artifact_path`` (it logs through ``Model._log_v2``), and warns of nothing.
    """
    if not is_remote():
        return mlflow_spark.log_model(model, artifact_path=name, **kwargs)
    return Model.log(
        artifact_path=None,  # positional in 3.17's signature, deprecated for name
        name=name,
        flavor=_StagedSparkFlavor,
        spark_model=model,
        staging_uri=staging_uri,
        **kwargs,
    )


def load_model(model_uri: str, staging_uri: str) -> PipelineModel:
    """``mlflow.spark.load_model(model_uri)``, also over Spark Connect.

    Over Connect the model stays staged, one copy per logged model: Spark reads a model's data
    lazily, as it is used, and a logged model never changes.
    """
    if not is_remote():
        return mlflow_spark.load_model(model_uri)
    staged = f"{staging_uri.rstrip('/')}/models/{get_model_info(model_uri).model_uuid}"
    filesystem, path = lakehouse_fs(staged)
    if not _is_staged(filesystem, path):
        filesystem.create_dir(os.path.dirname(path))
        with tempfile.TemporaryDirectory() as local:
            downloaded = mlflow.artifacts.download_artifacts(model_uri, dst_path=local)
            model_dir = os.path.join(downloaded, SPARKML_DIR)
            if isinstance(filesystem, pafs.LocalFileSystem):
                partial = _staging_path(staging_uri)
                _copy_tree(model_dir, partial)
                filesystem.move(lakehouse_fs(partial)[1], path)  # whole, or not there
            else:  # an object store renames no folder: a marker, written last, says whole
                _copy_tree(model_dir, staged)
                with filesystem.open_output_stream(f"{path}/{STAGED_MARKER}") as marker:
                    marker.write(model_uri.encode())
    return PipelineModel.load(staged)


class _StagedSparkFlavor:
    """A flavour module for ``Model.log`` that writes the spark flavour through the staging area."""

    @staticmethod
    def save_model(
        spark_model: PipelineModel,
        path: str,
        staging_uri: str,
        mlflow_model: Model,
        conda_env=None,
        code_paths=None,
        signature=None,
        input_example=None,
        pip_requirements=None,
        extra_pip_requirements=None,
    ) -> None:
        staged = _staging_path(staging_uri)
        spark_model.write().overwrite().save(staged)  # written by the cluster
        os.makedirs(path, exist_ok=True)
        _copy_tree(staged, os.path.join(path, SPARKML_DIR))
        _delete_tree(staged)
        # The flavour's own MLmodel, conda and pip files. Private, but pinned with mlflow, and
        # test_mlflow_spark.py loads the result with mlflow.spark.load_model.
        mlflow_spark._save_model_metadata(
            dst_dir=path,
            spark_model=spark_model,
            mlflow_model=mlflow_model,
            conda_env=conda_env,
            code_paths=code_paths,
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements,
        )


def _is_staged(filesystem: pafs.FileSystem, path: str) -> bool:
    marker = f"{path}/{STAGED_MARKER}"
    local = isinstance(filesystem, pafs.LocalFileSystem)
    return filesystem.get_file_info(path if local else marker).type != pafs.FileType.NotFound


def _staging_path(staging_uri: str) -> str:
    return f"{staging_uri.rstrip('/')}/{uuid.uuid4().hex}"


def _copy_tree(source: str, destination: str) -> None:
    """Copy a folder, local or on the lakehouse's store, to the other."""
    source_fs, source_path = lakehouse_fs(source)
    destination_fs, destination_path = lakehouse_fs(destination)
    pafs.copy_files(source_path, destination_path, source_fs, destination_fs)


def _delete_tree(uri: str) -> None:
    filesystem, path = lakehouse_fs(uri)
    filesystem.delete_dir(path)
