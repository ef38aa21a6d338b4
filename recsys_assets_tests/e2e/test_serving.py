"""MLflow's scoring servers for both champions, as ``make serve`` starts them, asked over HTTP.

After the sensor's run (the ``refresh`` fixture) both models have a champion and their serving
models (``als_recommender``, ``churn_scorer``) theirs; each server is ``mlflow models serve
--env-manager local`` on a free loopback port, reading the run's MLflow store. Answers are
compared with the batch tables the same run wrote, read with delta-rs.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from recsys_assets_tests.e2e.conftest import DagsterDev, Refresh
from recsys_assets_tests.processes import HOST, Service, free_port, wait_for
from recsys_assets_tests.support import home_table

SERVED = {"recommendations": "als_recommender", "churn": "churn_scorer"}


@dataclass
class Server:
    service: Service
    url: str

    def post(self, body: bytes | dict) -> tuple[int, dict]:
        """POST /invocations; (status, JSON body), also for an error status."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}/invocations", data, {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def ask(self, customers: list[int]) -> pd.DataFrame:
        status, answer = self.post({"dataframe_records": [{"customer_id": c} for c in customers]})
        assert status == 200, answer
        return pd.DataFrame(answer["predictions"])


def answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def servers(
    dagster_dev: DagsterDev, refresh: Refresh, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Server]]:
    assert refresh.run["status"] == "SUCCESS", refresh.run
    logs = tmp_path_factory.mktemp("serving")
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # uvicorn, as make serve
        "MLFLOW_TRACKING_URI": f"sqlite:///{dagster_dev.recsys_home / 'mlflow' / 'mlflow.db'}",
    }
    env.pop("MLFLOW_REGISTRY_URI", None)
    started: dict[str, Server] = {}
    try:
        for name, model in SERVED.items():
            port = free_port()
            url = f"http://{HOST}:{port}"
            command = [str(bin_dir / "mlflow"), "models", "serve", "-m",
                       f"models:/{model}@champion", "--env-manager", "local",
                       "-h", HOST, "-p", str(port), "-w", "1"]  # fmt: skip
            # Started side by side; each is waited for below.
            started[name] = Server(Service.start(name, command, logs, lambda: True, env), url)
        for server in started.values():
            try:
                wait_for(
                    lambda s=server: s.service.check_alive() or answering(s.url),
                    180,
                    0.5,
                    f"{server.service.name} to answer",
                )
            except (TimeoutError, RuntimeError) as error:
                raise RuntimeError(f"{error}\n{server.service.log_tail()}") from error
        yield started
    finally:
        for server in started.values():
            server.service.stop()


def table(dev: DagsterDev, layer: str, name: str) -> pd.DataFrame:
    return home_table(dev.recsys_home, layer, name).to_pandas()


def test_recommendations_are_the_batch_tables_rows(servers, dagster_dev):
    batch = table(dagster_dev, "gold", "customer_recommendations")
    by_source = batch.groupby("source").customer_id.unique()
    customers = [int(c) for c in [*by_source["als"][:8], *by_source.get("popularity", [])[:2]]]
    answer = servers["recommendations"].ask(customers)

    assert list(answer.columns) == ["customer_id", "rank", "product_id", "score", "source"]
    expected = batch[batch.customer_id.isin(customers)].sort_values(["customer_id", "rank"])
    answer = answer.sort_values(["customer_id", "rank"])
    key = ["customer_id", "rank", "product_id", "source"]
    assert len(answer) == len(expected) == 10 * len(customers)
    assert answer[key].to_numpy().tolist() == expected[key].to_numpy().tolist()
    assert abs(answer.score.to_numpy() - expected.score.to_numpy()).max() < 1e-4
    assert servers["recommendations"].service.listening_addresses() == {HOST}

    unknown = servers["recommendations"].ask([-7])  # no such customer: the popularity list
    assert list(unknown["rank"]) == list(range(1, 11)) and set(unknown.source) == {"popularity"}


def test_churn_scores_are_the_batch_tables_scores(servers, dagster_dev):
    predictions = table(dagster_dev, "gold", "churn_predictions").set_index("customer_id")
    customers = [int(c) for c in predictions.index[:10]]
    answer = servers["churn"].ask(customers).set_index("customer_id")
    assert list(answer.index) == customers
    assert set(answer.features) == {"customer_features"}  # looked up
    pd.testing.assert_series_equal(
        answer.churn_probability, predictions.churn_probability.loc[customers], check_names=False
    )
    assert (answer.model_version == predictions.model_version.loc[customers]).all()

    features = table(dagster_dev, "gold", "customer_features").set_index("customer_id")
    passed = features.loc[customers[:3]].reset_index().drop(columns=["as_of"])
    status, scored = servers["churn"].post({"dataframe_records": passed.to_dict("records")})
    assert status == 200, scored
    scored = pd.DataFrame(scored["predictions"]).set_index("customer_id")
    assert set(scored.features) == {"request"}
    pd.testing.assert_series_equal(
        scored.churn_probability,
        predictions.churn_probability.loc[customers[:3]],
        check_names=False,
    )


@pytest.mark.parametrize("name", list(SERVED))
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"dataframe_records": [{"customer_id": 4', "valid JSON"),
        ({"dataframe_records": [{"customer_id": 1, "colour": "red"}]}, "Unknown column"),
        ({"dataframe_records": [{"customer_id": "one"}]}, "customer_id must be an integer"),
        ({"records": [{"customer_id": 1}]}, "dataframe_records"),
    ],
)
def test_a_bad_request_is_a_4xx_with_a_message_and_the_server_goes_on(
    servers, dagster_dev, name, body, message
):
    server = servers[name]
    status, answer = server.post(body)
    assert 400 <= status < 500, (status, answer)
    assert message in answer.get("message", ""), answer
    server.service.check_alive()
    known = int(table(dagster_dev, "gold", "churn_predictions").customer_id.iloc[0])
    assert len(server.ask([known])) > 0  # and it still answers
