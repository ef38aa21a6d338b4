"""Serving latency: p50 of a 10-customer request to MLflow's scoring server vs the Delta table.

The served side is what ``make serve`` starts: ``mlflow models serve -m
models:/als_recommender@champion --env-manager local`` on loopback, one worker, answering
``/invocations`` with ``{"dataframe_records": [{"customer_id": ...}, ...]}`` (a new HTTP
connection per request, as urllib makes them). The table side reads the same 10 customers'
rows from ``customer_recommendations`` with delta-rs (an open table, a filter on customer_id
per request): what a service without the model server would do. Both answers are compared
once. Target: the server's p50 under 50 ms. Without ``--home`` (or with a new one) it generates
data and materialises everything (``make demo``'s command) first, in a temporary home.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import common

from recsys_assets.settings import Settings
from recsys_assets.tables import GOLD, table_uri
from recsys_assets_tests.processes import HOST, Service, free_port

TARGET_MS = 50.0


def start_server(home: Path, port: int, log_dir: Path) -> Service:
    """``make serve``'s scoring server for the champion of ``home``, answering /ping."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # uvicorn, as make serve
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
    }
    env.pop("MLFLOW_REGISTRY_URI", None)
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m",
               "models:/als_recommender@champion", "--env-manager", "local",
               "-h", HOST, "-p", str(port), "-w", "1"]  # fmt: skip

    def pings() -> bool:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/ping", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    return Service.start("scoring-server", command, log_dir, ready=pings, env=env)


def post(port: int, ids: list[int]) -> list[dict]:
    body = json.dumps({"dataframe_records": [{"customer_id": c} for c in ids]}).encode()
    request = urllib.request.Request(
        f"http://{HOST}:{port}/invocations", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["predictions"]


def p50_ms(call, requests: int, warmup: int = 10) -> float:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, help="a RECSYS_HOME with champions (make demo's); a new one is filled"
    )
    parser.add_argument("--orders", type=int, default=20_000, help="generated, without --home")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=0, help="default: a free one")
    args = parser.parse_args(argv)

    import pyarrow.compute as pc
    from deltalake import DeltaTable

    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        home = args.home.resolve() if args.home else root / "home"
        lakehouse = Settings.from_env({"RECSYS_HOME": str(home)}).lakehouse_uri
        recommendations = Path(table_uri(lakehouse, GOLD, "customer_recommendations"))
        if not recommendations.exists():  # a new home: generated data, everything materialised
            common.generate_landing(root / "landing", args.orders)
            home.mkdir(parents=True, exist_ok=True)
            shutil.copytree(root / "landing", home / "landing", dirs_exist_ok=True)
            run, _ = common.materialize_all(home, root / "materialize.log")
            print(f"  materialised {args.orders:,} orders in {home} in {run.wall:.0f} s")
        table = DeltaTable(str(recommendations))
        dataset = table.to_pyarrow_dataset()
        ids = sorted(set(dataset.to_table(columns=["customer_id"]).column(0).to_pylist()))[:10]

        def from_delta() -> list[dict]:
            return dataset.to_table(filter=pc.field("customer_id").isin(ids)).to_pylist()

        port = args.port or free_port()
        server = start_server(home, port, root)
        try:
            served = post(port, ids)
            stored = from_delta()
            same = sorted((r["customer_id"], r["rank"], r["product_id"]) for r in served) == sorted(
                (r["customer_id"], r["rank"], r["product_id"]) for r in stored
            )
            served_ms = p50_ms(lambda: post(port, ids), args.requests)
            delta_ms = p50_ms(from_delta, args.requests)
        finally:
            server.stop()

    verdict = "PASS" if served_ms < TARGET_MS and same else "FAIL"
    print(f"serving: 10 customers, {args.requests} requests: scoring server p50 "
          f"{served_ms:.1f} ms vs delta-rs on customer_recommendations p50 {delta_ms:.1f} ms; "
          f"same answers: {same}; target < {TARGET_MS:.0f} ms: {verdict}  "
          f"(load {os.getloadavg()[0]:.1f})")  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
