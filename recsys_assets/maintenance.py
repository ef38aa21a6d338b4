"""Table maintenance: OPTIMIZE compacts the small files incremental runs leave, VACUUM deletes
files no recent version reads, so the lakehouse stops growing without bound."""

import dagster as dg
from pyarrow import fs

from recsys_assets.resources.lakehouse import Lakehouse, filesystem
from recsys_assets.tables import LAYERS

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"


class MaintenanceConfig(dg.Config):
    # Time travel and readers still running need old files: Delta's own default is 7 days.
    retain_hours: int = 168
    optimize: bool = True


def existing_tables(root_uri: str) -> list[tuple[str, str]]:
    """(layer, table) of every Delta table under the lakehouse root, local or object store."""
    store, root = filesystem(root_uri)
    found = []
    for layer in LAYERS:
        selector = fs.FileSelector(f"{root.rstrip('/')}/{layer}", allow_not_found=True)
        for info in store.get_file_info(selector):
            log = store.get_file_info(f"{info.path}/_delta_log")
            if info.type == fs.FileType.Directory and log.type == fs.FileType.Directory:
                found.append((layer, info.base_name))
    return sorted(found)


@dg.op
def optimize_and_vacuum(
    context: dg.OpExecutionContext, config: MaintenanceConfig, lakehouse: Lakehouse
) -> None:
    """OPTIMIZE then VACUUM every Delta table of the lakehouse."""
    conf = lakehouse.session.conf
    if config.retain_hours < 168:  # Delta refuses a shorter retention unless told it is meant
        conf.set(RETENTION_CHECK, "false")
    try:
        for layer, table in existing_tables(lakehouse.root_uri):
            if config.optimize:
                metrics = lakehouse.optimize(layer, table)
                context.log.info(
                    f"OPTIMIZE {layer}/{table}: {metrics.get('numFilesRemoved', 0)} files "
                    f"compacted into {metrics.get('numFilesAdded', 0)}"
                )
            lakehouse.vacuum(layer, table, config.retain_hours)
            context.log.info(f"VACUUM {layer}/{table} RETAIN {config.retain_hours} HOURS")
    finally:
        conf.unset(RETENTION_CHECK)


@dg.job(
    description="Compact (OPTIMIZE) and clean up (VACUUM) every Delta table.",
)
def maintain_tables():
    optimize_and_vacuum()
