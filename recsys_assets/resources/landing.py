"""The landing zone: folders where CSV drops arrive, one folder per source table."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

# Writers should write under a temporary name and rename when done; such names are never read.
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".crdownload", ".filepart", ".partial")
SET_ASIDE = "_rejected"  # files taken out of the landing zone, each beside a note of why

Signature = tuple[int, int]  # (size in bytes, modification time in ns): what a rewrite changes


def signature(path: Path) -> Signature:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def why_skipped(name: str) -> str | None:
    """Why a file of the landing folder is not read; None if it is a CSV drop to ingest."""
    if name.endswith(IN_PROGRESS_SUFFIXES):
        return "a temporary name: still being written"
    if not name.lower().endswith(".csv"):
        return "not a .csv file"
    if ":" in name:  # Hadoop paths, and so Spark's readers, cannot hold one
        return "':' in the name, which Spark cannot read: rename the file"
    return None


class LandingZone(ConfigurableResource):
    """``<root>/<table>/*.csv``: the files a source has dropped so far."""

    root: str = Field(description="Folder holding one sub-folder of CSV drops per source table.")
    settle_seconds: float = Field(
        default=5.0,
        description="A file is read only once it has not changed for this long; a run waits "
        "for younger files up to that long, and leaves files still changing for the next run.",
    )
    reingest_changed: bool = Field(
        default=False,
        description="A file rewritten after it was ingested (new size or modification time) is "
        "ingested again, its rows replacing the old ones in one commit; otherwise it is only "
        "reported (bronze's landing_files_unchanged check warns).",
    )

    def folder(self, table: str) -> Path:
        return Path(self.root) / table

    def scan(self, table: str) -> tuple[list[Path], dict[str, str]]:
        """The CSV drops for ``table`` (absolute paths in name order), and every other visible
        file's name with the reason it is skipped. Hidden and ``_`` names are not drops."""
        folder = self.folder(table)
        if not folder.is_dir():
            return [], {}
        files, skipped = [], {}
        for path in sorted(folder.iterdir()):
            if not path.is_file() or path.name.startswith((".", "_", "~")):
                continue
            reason = why_skipped(path.name)
            if reason:
                skipped[path.name] = reason
            else:
                files.append(path.resolve())
        return files, skipped

    def files(self, table: str) -> list[Path]:
        return self.scan(table)[0]

    def settled(self, paths: list[Path]) -> tuple[dict[Path, Signature], dict[str, str]]:
        """The files among ``paths`` that have not changed for ``settle_seconds`` (waiting once
        for the youngest to get there), with their signatures, and the names of those still
        changing, with why."""
        before = {p: signature(p) for p in paths}
        youngest = max((s[1] for s in before.values()), default=0) / 1e9
        time.sleep(max(0.0, youngest + self.settle_seconds - time.time()))
        ready, changing = {}, {}
        for path, seen in before.items():
            if path.exists() and signature(path) == seen:
                ready[path] = seen
            else:
                changing[path.name] = f"still changing after {self.settle_seconds:g} s"
        return ready, changing

    def set_aside(self, path: Path, note: dict) -> Path:
        """Move a landing file to ``_rejected/`` beside its note (JSON); returns where it went.
        An earlier file of the same name set aside is kept."""
        target = path.parent / SET_ASIDE / path.name
        if target.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            target = target.with_name(f"{target.stem}.{stamp}{target.suffix}")
        target.parent.mkdir(exist_ok=True)
        note = {"file": str(path), **note, "set_aside_at": datetime.now(UTC).isoformat()}
        target.with_name(target.name + ".why.json").write_text(json.dumps(note, indent=2))
        shutil.move(path, target)
        return target
