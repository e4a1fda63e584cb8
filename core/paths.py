"""Where everything lives under the workdir (one place, so flows never build paths ad hoc)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def file_identity(st: os.stat_result) -> list[int]:
    """What identifies a file's bytes without reading them: device, inode, size, mtime and
    ctime (in ns). Any write moves the ctime, which no tool can set back, so a changed file
    never keeps its identity. A list, as stored in JSON."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


@dataclass(frozen=True)
class Paths:
    workdir: Path

    @property
    def lake(self) -> Path:
        return self.workdir / "lake"

    def bronze(self, family: str) -> Path:
        """Accepted rows: one Parquet file per ingested landing file, named by its hash."""
        return self.lake / "bronze" / family

    @property
    def quarantine(self) -> Path:
        """Rejected rows and files: one Parquet file per ingested landing file."""
        return self.lake / "quarantine"

    @property
    def manifest(self) -> Path:
        """One JSON record per ingested file, written last: its presence means 'ingested'."""
        return self.lake / "manifest"

    @property
    def silver(self) -> Path:
        return self.lake / "silver"

    @property
    def features(self) -> Path:
        return self.lake / "features"

    @property
    def published(self) -> Path:
        return self.workdir / "published"

    def table(self, name: str) -> Path:
        return self.published / name

    @property
    def mlflow(self) -> Path:
        return self.workdir / "mlflow"

    @property
    def data_docs(self) -> Path:
        return self.workdir / "data_docs"

    @property
    def runs(self) -> Path:
        """Run summaries (JSON), one per flow run."""
        return self.workdir / "runs"

    @property
    def state(self) -> Path:
        """Run state: Optuna studies, task results for resume."""
        return self.workdir / "state"
