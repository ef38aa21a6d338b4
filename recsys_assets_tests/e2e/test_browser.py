"""The Dagster UI in a real browser: Debian's headless chromium renders the asset lineage.

Uses the ``dagster dev`` of conftest.py after the sensor's run, so the graph is materialised.
chromium comes from Debian (`make test-e2e` installs it if missing). To refresh the README's
screenshots: ``RECSYS_E2E_SCREENSHOT=docs/asset-graph.png
RECSYS_E2E_CHECKS_SCREENSHOT=docs/monitoring-checks.png make test-e2e``.
"""

import os
import shutil
import struct
from pathlib import Path

import pytest

from recsys_assets_tests.e2e.conftest import DagsterDev, Refresh
from recsys_assets_tests.processes import run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
WINDOW = (1600, 1000)
GROUPS = ("bronze", "silver", "gold", "als_model", "churn_model")
# Names short enough to be drawn in full at the zoom that fits the whole graph in the window
# (longer ones are shortened with an ellipsis in the middle).
DRAWN_IN_FULL = (
    "customers_bronze",
    "customers_silver",
    "customer_features",
    "churn_training_set",
    "churn_model",
    "churn_champion",
    "churn_predictions",
    "als_train",
    "als_test",
    "als_challenger",
    "als_evaluation",
    "als_champion",
)
ATTEMPTS = 3  # a render that has not finished within the virtual time budget is tried again
# The monitoring checks on the recommendations (README "Monitor"), on the asset's Checks tab.
RECOMMENDATION_CHECKS = (
    "catalogue_coverage",
    "full_list_share",
    "top_products_concentration",
    "popularity_share",
)


def lineage_url(dev: DagsterDev) -> str:
    """The global asset lineage, every group expanded (the ``expanded`` query parameter)."""
    expanded = ",".join(f"global@global:{g}" for g in GROUPS)
    return f"{dev.url}/asset-groups?expanded={expanded}"


def chromium(profile: Path, *args: str, timeout_s: float = 120) -> str:
    """Run headless chromium once; anything it leaves behind is killed. Returns stdout."""
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=15000",  # let the React app fetch and render
        *args,
    ]
    done = run(cmd, timeout_s)
    assert done.returncode == 0, f"chromium failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done.stdout


def checks_url(dev: DagsterDev, asset: str) -> str:
    return f"{dev.url}/assets/{asset}?view=checks"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def ui(dagster_dev: DagsterDev, refresh: Refresh) -> DagsterDev:
    assert os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: `make test-e2e` installs Debian's chromium package"
    )
    # What "Skip" on the UI's first-visit "Join the Dagster community" dialog does.
    assert dagster_dev.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
    return dagster_dev


def test_the_lineage_page_renders_the_asset_graph(ui: DagsterDev, tmp_path: Path):
    for _ in range(ATTEMPTS):
        dom = chromium(tmp_path / "profile", "--dump-dom", lineage_url(ui))
        missing = [name for name in DRAWN_IN_FULL if name not in dom]
        if not missing:
            break
    assert not missing, f"asset names missing from the rendered page: {missing}\n{dom[-3000:]}"

    assert "Global asset lineage" in dom
    assert all(f">{group}<" in dom for group in GROUPS), "a group box is missing"
    assert "Join the Dagster community" not in dom


def test_a_screenshot_of_the_lineage_shows_a_full_window(ui: DagsterDev, tmp_path: Path):
    png = tmp_path / "asset-graph.png"
    chromium(tmp_path / "profile", f"--screenshot={png}", lineage_url(ui))

    assert png_size(png) == WINDOW
    # A blank or error page of this size compresses to a few kB; the drawn graph does not.
    assert png.stat().st_size > 40_000, png.stat().st_size
    if target := os.environ.get("RECSYS_E2E_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, target)


def test_the_checks_tab_shows_the_monitoring_checks(ui: DagsterDev, tmp_path: Path):
    url = checks_url(ui, "customer_recommendations")
    for _ in range(ATTEMPTS):
        dom = chromium(tmp_path / "profile", "--dump-dom", url)
        missing = [name for name in RECOMMENDATION_CHECKS if name not in dom]
        if not missing:
            break
    assert not missing, f"checks missing from the rendered page: {missing}\n{dom[-3000:]}"
    if target := os.environ.get("RECSYS_E2E_CHECKS_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        chromium(tmp_path / "profile", f"--screenshot={Path(target).resolve()}", url)
        assert png_size(Path(target)) == WINDOW
