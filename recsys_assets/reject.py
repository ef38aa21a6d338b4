"""The way out of a poison file: take its rows out of bronze and set the file aside.

A landing file whose rows fail the run (an ``expect_or_fail`` rule) stays in bronze, so every
later run fails on it again. ``reject_landing_file`` deletes its rows from bronze in one Delta
commit and moves it to ``<landing>/<table>/_rejected/`` beside a note of why. A corrected file
with the same name is then a new file. The next refresh sees the DELETE in bronze's log and
rebuilds silver from the bronze snapshot, as a full refresh would.
"""

import dagster as dg

from recsys_assets.assets.bronze import SOURCE_FILE
from recsys_assets.resources.lakehouse import Lakehouse, sql_literal
from recsys_assets.resources.landing import LandingZone
from recsys_assets.settings import LANDING_TABLES
from recsys_assets.tables import BRONZE


class RejectConfig(dg.Config):
    table: str  # the landing folder: customers or sales_orders
    file_name: str  # the file's name in that folder, e.g. sales_orders_2024-03-01.csv
    reason: str = "rejected by hand"


@dg.op
def reject_file(
    context: dg.OpExecutionContext,
    config: RejectConfig,
    lakehouse: Lakehouse,
    landing: LandingZone,
) -> None:
    """Delete the file's rows from bronze (one commit), then move the file aside with a note."""
    if config.table not in LANDING_TABLES:
        raise dg.Failure(f"Unknown table {config.table!r}: one of {list(LANDING_TABLES)}.")
    folder = landing.folder(config.table)
    path = (folder / config.file_name).resolve()
    if path.parent != folder.resolve():
        raise dg.Failure(f"{config.file_name!r} is not a file name in {folder}.")
    bronze = f"{config.table}_bronze"
    deleted = 0
    if lakehouse.version(BRONZE, bronze) is not None:
        info = {"dagster_run_id": context.run_id, "rejected_file": str(path)}
        where = f"`{SOURCE_FILE}` = {sql_literal(str(path))}"
        deleted = lakehouse.delete(BRONZE, bronze, where, info)
    context.log.info(f"{deleted} row(s) of {path} deleted from {bronze}")
    if path.exists():
        note = {"reason": config.reason, "bronze_rows_deleted": deleted}
        target = landing.set_aside(path, {**note, "dagster_run_id": context.run_id})
        context.log.info(f"{path.name} moved to {target}")
    elif not deleted:
        raise dg.Failure(f"{path} is neither in the landing zone nor in {bronze}.")
    context.add_output_metadata({"bronze_rows_deleted": deleted, "file": str(path)})


@dg.job(
    description="Take a landing file's rows out of bronze and move the file to _rejected/.",
)
def reject_landing_file():
    reject_file()
