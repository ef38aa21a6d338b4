"""Benchmark: how a full refresh grows with data. Materialise-all at 10k, 100k and 1M orders.

Each size runs in a fresh process and RECSYS_HOME (so each starts its own JVM) on data from
``recsys_assets.datagen`` (90 days, about 20 orders per customer, 4 drops). Per size it prints
the wall time of the run (after imports: the Spark start is in the first stage), orders per
second, and the peak RSS of the whole process tree (Python and the Spark JVM, sampled from /proc
every 0.2 s); per stage, the time in its steps (from Dagster's event log) and the peak RSS
sampled while they ran. Then the targets: from 100k to 1M (and 1M to 10M) orders the time grows
no faster than the data, and the peak memory at the largest size stays under 8 GiB. Exits 1
when it prints FAIL.

    .venv/bin/python benchmarks/scale.py                        # 10k, 100k, 1M (about 10 min)
    .venv/bin/python benchmarks/scale.py --sizes 10000 100000   # quicker, no targets
    .venv/bin/python benchmarks/scale.py --with-10m             # adds 10M orders
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import common

MAX_GROWTH = 1.0  # (time ratio) / (size ratio), from 100k to 1M and from 1M to 10M orders
MAX_PEAK_GIB = 8.0  # at the largest size (1M, or 10M with --with-10m)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--with-10m", action="store_true", help="also 10,000,000 orders")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per size")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes + ([10_000_000] if args.with_10m else [])))

    seconds: dict[int, float] = {}
    peaks: dict[int, int] = {}
    stages: dict[int, dict[str, dict]] = {}
    for orders in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            root = Path(tmp)
            common.generate_landing(root / "landing", orders)
            home = common.fresh_home(root, "home", root / "landing")
            try:
                run, summary = common.materialize_all(home, root / "run.log", args.timeout)
            except RuntimeError as failure:  # e.g. the JVM ran out of memory: report, go on
                print(f"  {orders:>10,} orders: FAILED: {failure}", flush=True)
                continue
        seconds[orders], peaks[orders] = summary["seconds"], run.peak_rss
        stages[orders] = common.stage_summary(summary["steps"], run.samples)
        print(
            f"  {orders:>10,} orders: {seconds[orders]:6.1f} s, "
            f"{orders / seconds[orders]:,.0f} orders/s, "
            f"peak RSS {peaks[orders] / common.GIB:.2f} GiB (load {os.getloadavg()[0]:.1f})",
            flush=True,
        )

    print("\n| orders | run | orders/s | peak RSS | " + " | ".join(common.STAGES) + " |")
    print("|" + " --- |" * (4 + len(common.STAGES)))
    for orders, by_stage in stages.items():
        cells = [f"{s['seconds']:.1f} s, {s['peak_rss'] / common.GIB:.1f} GiB"
                 for s in by_stage.values()]  # fmt: skip
        print(f"| {orders:,} | {seconds[orders]:.1f} s | {orders / seconds[orders]:,.0f} | "
              f"{peaks[orders] / common.GIB:.2f} GiB | " + " | ".join(cells) + " |")  # fmt: skip
    print("(per stage: time in its steps, peak RSS of the process tree while they ran)\n")

    verdicts = []
    for small, large in ((100_000, 1_000_000), (1_000_000, 10_000_000)):
        if small in sizes and large in sizes:
            verdicts.append(growth_verdict(seconds, small, large))
    largest = max(sizes)
    if largest >= 1_000_000:  # the memory target: the whole process tree at the largest size
        gib = peaks.get(largest, 0) / common.GIB
        verdict = "PASS" if largest in peaks and gib < MAX_PEAK_GIB else "FAIL"
        print(f"scale: peak RSS at {largest:,}={gib:.2f} GiB  target < {MAX_PEAK_GIB}: {verdict}")
        verdicts.append(verdict)
    return 1 if "FAIL" in verdicts else 0


def growth_verdict(seconds: dict[int, float], small: int, large: int) -> str:
    """Time grows at most as fast as the data from ``small`` to ``large`` orders."""
    name = f"{small:,}->{large:,}"
    if small not in seconds or large not in seconds:
        print(f"scale: {name} growth=n/a (a run failed)  target <= {MAX_GROWTH}: FAIL")
        return "FAIL"
    factor = large / small
    growth = (seconds[large] / seconds[small]) / factor
    verdict = "PASS" if growth <= MAX_GROWTH else "FAIL"
    print(f"scale: {name} time x{growth * factor:.2f} for data x{factor:.0f}, "
          f"growth={growth:.2f}  target <= {MAX_GROWTH}: {verdict}")  # fmt: skip
    return verdict


if __name__ == "__main__":
    raise SystemExit(main())
