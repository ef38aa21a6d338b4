"""Shared fixtures: one real SparkSession for the whole session, real Delta tables in tmp_path."""

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import dagster as dg
import pytest
from pyspark.sql import SparkSession

from recsys_assets import datagen
from recsys_assets.definitions import build_definitions
from recsys_assets.resources.spark import build_session
from recsys_assets.settings import Settings
from recsys_assets_tests.support import TEST_SQL, generate, settings_for

MEDALLION = dg.AssetSelection.groups("bronze", "silver", "gold")


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
    """Materialise a selection of the real code location's assets against ``settings``."""
    defs = build_definitions(settings)

    def run(
        selection: dg.AssetSelection | Sequence[str] = MEDALLION,
        run_config: dict | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*(defs.assets or []), *(defs.asset_checks or [])],
            selection=selection,
            resources=defs.resources,
            run_config=run_config,
            raise_on_error=raise_on_error,
        )

    return run
