"""Shared by the benchmarks: generated data, materialise-all, and the RSS of a process tree.

Each measured run happens in a fresh child process (``run_child``), so every run pays its own
JVM start and none inherits a warm one; the parent samples the RSS of the child's whole process
tree (Python plus the Spark JVM) from /proc while it runs.

Materialise-all is `make demo`'s command, ``dagster asset materialize --select '*'``, not
``dg.materialize``: that one runs ``execute_in_process``, which keeps every step's output
DataFrame (and with it the JVM copy of every input it was computed from) until the run ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

START_DATE = date(2024, 1, 1)
DAYS = 90
GIB = 1024**3
PAGE = os.sysconf("SC_PAGE_SIZE")
HERE = Path(__file__).resolve().parent

# Stages of a full refresh, in the order they run. Steps map to them by asset group, and within
# the model groups by name (see stage_of).
STAGES = ("ingest", "silver", "gold", "training", "evaluation", "recommendations")


def customers_for(orders: int) -> int:
    """About 20 orders per customer over the 90 days, as the project's demo data has."""
    return max(2_000, orders // 20)


def generate_landing(landing: Path, orders: int, drops: int = 4) -> None:
    """``orders`` over DAYS days; in batches of consecutive days when one batch cannot number
    them all (datagen numbers a batch's orders below ORDER_NUMBER_STRIDE)."""
    from recsys_assets import datagen

    batches = orders // datagen.ORDER_NUMBER_STRIDE + 1
    days = DAYS // batches
    for batch in range(batches):
        datagen.generate(
            landing,
            customers=customers_for(orders),
            days=days if batch < batches - 1 else DAYS - days * batch,
            orders=orders // batches + (orders % batches if batch == batches - 1 else 0),
            drops=max(1, drops // batches),
            start_date=START_DATE + timedelta(days=days * batch),
        )


def fresh_home(parent: Path, name: str, landing: Path) -> Path:
    """A new RECSYS_HOME holding a copy (hard links) of ``landing``: no state is shared."""
    home = parent / name
    shutil.copytree(landing, home / "landing", copy_function=os.link)
    return home


# --------------------------------------------------------------------------- memory


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
        except OSError:  # the process ended meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces and ")"
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


@dataclass
class RssSampler:
    """Samples ``tree_rss(pid)`` every ``interval`` seconds on a thread: (unix time, bytes)."""

    pid: int
    interval: float = 0.2
    samples: list[tuple[float, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), tree_rss(self.pid)))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def peak(samples: list[tuple[float, int]], start: float = 0.0, end: float = float("inf")) -> int:
    return max((rss for t, rss in samples if start <= t <= end), default=0)


@dataclass
class ChildRun:
    wall: float  # seconds from spawning the child to its exit, imports and JVM start included
    samples: list[tuple[float, int]]  # RSS of the child's process tree over time

    @property
    def peak_rss(self) -> int:
        return peak(self.samples)


def run_child(command: list[str], home: Path, log: Path, timeout: float | None = None) -> ChildRun:
    """Run ``command`` with RECSYS_HOME=home (and DAGSTER_HOME under it); output goes to log.

    Raises RuntimeError, with the failed steps and the log's last lines, if it fails."""
    env = {**os.environ, "RECSYS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    env["RECSYS_LANDING_SETTLE_SECONDS"] = "0"  # the files were written before: no wait is work
    for name in ("RECSYS_LAKEHOUSE_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)  # everything under the fresh home
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE.parent / "dagster.yaml", home / "dagster")  # as `make demo` does
    with open(log, "w") as sink:
        start = time.perf_counter()
        child = subprocess.Popen(
            command,
            env=env,
            stdout=sink,
            stderr=sink,
            start_new_session=True,  # its own process group, with the JVM it starts
        )
        sampler = RssSampler(child.pid)
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            code = f"no exit after {timeout:.0f} s"
        finally:  # interrupted, or the JVM outlived its parent: leave nothing running
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
        wall = time.perf_counter() - start
        samples = sampler.stop()
    if code != 0:
        lines = log.read_text().splitlines()
        failed = [line for line in lines if "STEP_FAILURE" in line or "OutOfMemoryError" in line]
        summary = "\n".join([*failed[:5], "...", *lines[-8:]])
        raise RuntimeError(f"{command[:4]} {code=}; from {log}:\n{summary}")
    return ChildRun(wall, samples)


def materialize_all(home: Path, log: Path, timeout: float | None = None) -> tuple[ChildRun, dict]:
    """`make demo`'s materialise-all in a fresh process; the run and its steps' times."""
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize",
               "-m", "recsys_assets.definitions", "--select", "*"]  # fmt: skip
    run = run_child(command, home, log, timeout)
    return run, run_summary(home / "dagster")


# --------------------------------------------------------------------------- stages


def stage_of(step: str, group: str) -> str:
    """The stage of a step (an op name) from its asset group and, in model groups, its name."""
    by_group = {"bronze": "ingest", "silver": "silver", "gold": "gold"}
    if group in by_group:
        return by_group[group]
    if any(s in step for s in ("split", "features", "training_set")):
        return "gold"  # the model groups' feature and training tables
    if any(s in step for s in ("evaluation", "gate")):
        return "evaluation"
    if any(s in step for s in ("challenger", "churn_model")):
        return "training"
    return "recommendations"  # champions (alias moves) and batch scoring


@dataclass(frozen=True)
class Step:
    name: str
    stage: str
    start: float  # unix time
    end: float


def stage_summary(steps: list[Step], samples: list[tuple[float, int]]) -> dict[str, dict]:
    """Per stage: seconds spent in its steps, and the peak tree RSS sampled during them.

    The executor is in-process, so steps run one after another and a sample belongs to the
    step running when it was taken.
    """
    summary = {s: {"seconds": 0.0, "peak_rss": 0} for s in STAGES}
    for step in steps:
        stage = summary[step.stage]
        stage["seconds"] += step.end - step.start
        stage["peak_rss"] = max(stage["peak_rss"], peak(samples, step.start, step.end))
    return summary


def run_summary(dagster_home: Path) -> dict:
    """The one run in a Dagster instance: seconds from its start to its end, and its steps."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        groups = asset_groups()
        events = instance.all_logs(run.run_id)
    times = {e.dagster_event_type: e.timestamp for e in events if e.is_dagster_event}
    starts = {e.step_key: e.timestamp for e in events
              if e.dagster_event_type == dg.DagsterEventType.STEP_START}  # fmt: skip
    steps = [
        Step(
            e.step_key,
            stage_of(e.step_key, groups.get(e.step_key, "")),
            starts[e.step_key],
            e.timestamp,
        )
        for e in events
        if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS
    ]
    seconds = times[dg.DagsterEventType.RUN_SUCCESS] - times[dg.DagsterEventType.RUN_START]
    return {"seconds": seconds, "steps": steps}


def asset_groups() -> dict[str, str]:
    """Op name -> asset group, for every asset of the code location."""
    from recsys_assets.definitions import build_definitions
    from recsys_assets.settings import Settings

    defs = build_definitions(Settings.from_env({}))
    return {a.node_def.name: next(iter(a.group_names_by_key.values())) for a in defs.assets or []}
