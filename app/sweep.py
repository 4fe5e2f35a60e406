"""Start-up sweep of what a crash (kill -9, power loss) can leave in the data folder."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from sqlalchemy import select

from app.models import Scene
from app.settings import Settings

log = logging.getLogger("basewatch")


#: An upload or conversion temporary untouched this long is a leftover even on a shared data folder.
SHARED_LEFTOVER_AGE_S = 6 * 3600


def sweep_at_start(settings: Settings, sessions) -> list[Path]:
    """The sweep of the process that owns the data folder, at its start: with embedded SQLite that process owns
    the folder alone, so any temporary there was left by a crash; on a shared folder only old ones are."""
    return sweep_leftovers(settings, sessions, older_than_s=0 if settings.is_sqlite else SHARED_LEFTOVER_AGE_S)


def sweep_leftovers(settings: Settings, sessions, *, older_than_s: float) -> list[Path]:
    """Remove uploads and conversion temporaries (``uploads/*``), partial products (``analyses/.*``),
    half-written disk-cache tiles, and scene files no scene row refers to; only entries not modified
    for ``older_than_s`` (0 when this server owns the data folder). Returns what was removed."""
    cutoff = time.time() - older_than_s
    with sessions() as session:
        known = {Path(p).name for p in session.scalars(select(Scene.path))}
    candidates = [*settings.uploads_dir.glob("*"), *settings.products_dir.glob(".*"),
                  *(p for p in settings.scenes_dir.glob("*") if p.name not in known),
                  *(settings.data_dir / "tilecache").rglob(".*.png.*")]
    removed = []
    for path in candidates:
        try:
            if path.lstat().st_mtime > cutoff:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        except FileNotFoundError:
            continue
    if removed:
        log.warning("removed %d leftover(s) of interrupted uploads, conversions or analyses", len(removed))
    return removed
