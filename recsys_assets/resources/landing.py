"""The landing zone: folders where CSV drops arrive, one folder per source table."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

# Writers should write under a temporary name and rename when done; such names are never read.
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".crdownload", ".filepart", ".partial")


def is_complete_name(path: Path) -> bool:
    name = path.name
    return (
        name.endswith(".csv")
        and not name.startswith((".", "_", "~"))
        and not name.endswith(IN_PROGRESS_SUFFIXES)
    )


class LandingZone(ConfigurableResource):
    """``<root>/<table>/*.csv``: the files a source has dropped so far."""

    root: str = Field(description="Folder holding one sub-folder of CSV drops per source table.")

    def folder(self, table: str) -> Path:
        return Path(self.root) / table

    def files(self, table: str) -> list[Path]:
        """Complete-looking CSV files for ``table``, as absolute paths in name order."""
        folder = self.folder(table)
        if not folder.is_dir():
            return []
        return sorted(p.resolve() for p in folder.iterdir() if p.is_file() and is_complete_name(p))
