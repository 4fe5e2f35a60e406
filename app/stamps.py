"""Stamp files: how one process tells every API process sharing the data folder to drop what it cached.

A writer replaces the file atomically (new inode, new mtime); a reader compares one ``stat`` with what it
saw when it last loaded. Used for API keys (``keys.stamp``: created or revoked) and deleted analyses
(``analyses.stamp``), so a revoked key or a deleted analysis is refused by the next request of every process.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


class Stamp:
    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> tuple | None:
        """What identifies the current version of the file (None while it does not exist): one ``stat``."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def touch(self) -> None:
        """Replace the file atomically, so every reader sees a new version."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}")
        tmp.write_text(uuid.uuid4().hex)
        os.replace(tmp, self.path)
