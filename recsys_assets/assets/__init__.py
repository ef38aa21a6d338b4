"""The asset graph: one module per medallion layer or model, and how to run a part of it here."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from recsys_assets.assets import als, bronze, churn, gold, monitoring, silver

ASSETS = dg.load_assets_from_modules([bronze, silver, gold, als, churn])
ASSET_CHECKS = dg.load_asset_checks_from_modules([als, churn, monitoring])
MEDALLION = dg.AssetSelection.groups("bronze", "silver", "gold")  # the tables, not the models


def materialize(
    selection: dg.AssetSelection | Any, resources: Mapping[str, object], **kwargs: Any
) -> dg.ExecuteInProcessResult:
    """Materialise ``selection`` of the graph in this process, with the asset checks that
    target it (as ``dagster asset materialize`` does): for jobs that run assets, tests and
    benchmarks. ``kwargs`` go to ``dg.materialize`` (run_config, instance, raise_on_error...)."""
    return dg.materialize(
        [*ASSETS, *ASSET_CHECKS], selection=selection, resources=resources, **kwargs
    )
