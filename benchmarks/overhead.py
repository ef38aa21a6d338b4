"""Benchmark: what orchestration adds. Materialise-all through Dagster vs one plain PySpark script.

Both sides start from the same generated CSV drops, each in a fresh RECSYS_HOME and a fresh
Python process (so each starts its own JVM), and do the same work: every table written to
Delta, both models trained, evaluated, registered and promoted in MLflow, recommendations and
churn scores written. The Dagster side is ``make demo``'s command, ``dagster asset materialize
--select '*'`` (every asset and check, with its run, event log and IO manager);
the plain side is ``plain_pipeline.py`` (its docstring says what it skips, and why). The sides
alternate, ``--repeats`` times; the best of each is compared. Wall time is from spawning the
process to its exit, Python imports and the Spark start included.

    .venv/bin/python benchmarks/overhead.py                 # 100,000 orders
    .venv/bin/python benchmarks/overhead.py --orders 20000  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import common

TARGET_RATIO = 1.1  # Dagster costs at most a tenth more than the plain script


def run_side(side: str, home: Path, log: Path) -> tuple[common.ChildRun, float]:
    """One side in a fresh process: the run, and its seconds after imports."""
    if side == "dagster":
        run, summary = common.materialize_all(home, log)
        return run, summary["seconds"]
    out = home / "result.json"
    command = [sys.executable, str(common.HERE / "plain_pipeline.py"), "--out", str(out)]
    run = common.run_child(command, home, log)
    return run, json.loads(out.read_text())["seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each side, alternated")
    args = parser.parse_args(argv)

    sides = ("dagster", "plain")
    walls: dict[str, list[float]] = {side: [] for side in sides}
    work: dict[str, list[float]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        root = Path(tmp)
        common.generate_landing(root / "landing", args.orders)
        for i in range(args.repeats):
            for side in sides:
                home = common.fresh_home(root, f"{side}-{i}", root / "landing")
                run, seconds = run_side(side, home, root / f"{side}-{i}.log")
                walls[side].append(run.wall)
                work[side].append(seconds)
                print(f"  {side:8s} run {i + 1}: {run.wall:6.1f} s (after imports "
                      f"{seconds:.1f} s), peak RSS "
                      f"{run.peak_rss / common.GIB:.2f} GiB")  # fmt: skip

    dagster, plain = min(walls["dagster"]), min(walls["plain"])
    ratio = dagster / plain
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"overhead: orders={args.orders:,} dagster={dagster:.1f}s plain={plain:.1f}s "
          f"(after imports {min(work['dagster']):.1f}s vs {min(work['plain']):.1f}s) "
          f"ratio={ratio:.2f}  target <= {TARGET_RATIO}: {verdict}  "
          f"(load {os.getloadavg()[0]:.1f})")  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
