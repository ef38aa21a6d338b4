r"""Benchmark: a 1% drop on top of N orders, bronze through gold, against the full refresh.

Silver reads only the bronze rows committed since its last run and MERGEs them; the join
re-joins only the orders that changed; gold reads only the files of its window. So a drop
should cost what the drop costs. Both paths go through Dagster (the bronze, silver and gold
assets, real Spark, real Delta) in one process, side by side: the full refresh builds every
table from an empty lakehouse, the drop adds a new file of 1% of the orders on a new day. Both
are warmed once (JVM start and JIT are nobody's cost), then the best of ``--repeats`` is taken.
Prints the time per stage for both and the ratio; exits 1 when it prints FAIL.

    .venv/bin/python benchmarks/incremental.py                  # 1,000,000 orders
    .venv/bin/python benchmarks/incremental.py --orders 100000  # quicker
    RECSYS_SPARK_CONF='{"spark.eventLog.enabled": "true", "spark.eventLog.dir": "/tmp/ev"}' \
        .venv/bin/python benchmarks/incremental.py               # with Spark's event log
"""

import argparse
import os
import shutil
import tempfile
import time
from collections import defaultdict
from datetime import timedelta

import common
import dagster as dg

from recsys_assets import datagen
from recsys_assets.assets import MEDALLION, materialize
from recsys_assets.definitions import build_definitions
from recsys_assets.settings import Settings

TARGET_RATIO = 0.15  # a 1% drop costs at most 15% of the full refresh


def refresh(defs: dg.Definitions) -> tuple[float, dict[str, float], dict[str, float]]:
    """Materialise bronze through gold: wall seconds, seconds per group (stage) and per step."""
    groups = common.asset_groups()
    start = time.perf_counter()
    result = materialize(MEDALLION, defs.resources)
    wall = time.perf_counter() - start
    assert result.success
    stages: dict[str, float] = defaultdict(float)
    steps: dict[str, float] = {}
    for event in result.get_step_success_events():
        step = event.step_key or ""
        steps[step] = event.event_specific_data.duration_ms / 1000
        stages[groups.get(step, "?")] += steps[step]
    return wall, dict(stages), steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-incremental-") as home:
        # Each drop is written just before its run: waiting for it to settle is not work.
        settings = Settings.from_env(
            {
                "RECSYS_HOME": home,
                "RECSYS_LANDING_SETTLE_SECONDS": "0",
                # Spark settings to try, e.g. an event log to profile the steps with.
                "RECSYS_SPARK_CONF": os.environ.get("RECSYS_SPARK_CONF", ""),
            }
        )
        defs = build_definitions(settings)
        common.generate_landing(settings.landing_dir, args.orders)
        fulls, drops = [], []
        for _ in range(args.repeats + 1):  # the first is the warm-up
            shutil.rmtree(settings.lakehouse_uri, ignore_errors=True)
            fulls.append(refresh(defs))
        for day in range(args.repeats + 1):  # each time a new 1% file, on a new day
            datagen.generate(
                settings.landing_dir,
                customers=common.customers_for(args.orders),
                days=1,
                orders=max(1, args.orders // 100),
                start_date=common.START_DATE + timedelta(days=common.DAYS + day),
            )
            drops.append(refresh(defs))
        (full, full_stages, full_steps) = min(fulls[1:], key=lambda r: r[0])
        (drop, drop_stages, drop_steps) = min(drops[1:], key=lambda r: r[0])

    ratio = drop / full
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print("| run | total | " + " | ".join(("bronze", "silver", "gold")) + " |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, total, stages in (
        ("full refresh", full, full_stages),
        ("1% drop", drop, drop_stages),
    ):
        cells = " | ".join(f"{stages.get(g, 0.0):.2f} s" for g in ("bronze", "silver", "gold"))
        print(f"| {name} | {total:.2f} s | {cells} |")
    print("\n| step | full refresh | 1% drop |\n| --- | ---: | ---: |")
    for step in full_steps:
        print(f"| {step} | {full_steps[step]:.2f} s | {drop_steps.get(step, 0.0):.2f} s |")
    print(f"| (outside steps) | {full - sum(full_steps.values()):.2f} s "
          f"| {drop - sum(drop_steps.values()):.2f} s |\n")  # fmt: skip
    print(f"incremental: orders={args.orders:,} full refresh={full:.2f}s 1% drop={drop:.2f}s "
          f"ratio={ratio:.2f}  target <= {TARGET_RATIO}: {verdict}  "
          f"(load {os.getloadavg()[0]:.1f})")  # fmt: skip
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
