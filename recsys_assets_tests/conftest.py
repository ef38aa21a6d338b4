"""Shared fixtures: one real SparkSession for the whole session, real Delta tables in tmp_path."""

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from recsys_assets import datagen
from recsys_assets.resources.spark import build_session
from recsys_assets.settings import Settings
from recsys_assets_tests import support
from recsys_assets_tests.support import TEST_SQL, generate, settings_for


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = build_session(
        "local[2]",
        extra={
            **TEST_SQL,
            "spark.default.parallelism": "2",
            "spark.driver.memory": "2g",
            "spark.log.level": "ERROR",
        },
    )
    yield session
    session.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path / "recsys")


@pytest.fixture
def landed(settings: Settings) -> datagen.GenerationSummary:
    return generate(settings)


Materialize = Callable[..., dg.ExecuteInProcessResult]


@pytest.fixture
def materialize(settings: Settings, spark: SparkSession) -> Materialize:
    """Materialise a selection (the medallion tables by default) against ``settings``."""
    return partial(support.materialize, settings)
