"""Files eventlog must refuse: another program's SQLite database, garbage (with and without an
SQLite header), a schema from a newer eventlog, and a log on a read-only filesystem. Each one
gets its typed error from ``EventLog.open`` and makes ``eventlog serve`` exit with it, promptly
(never a hang), and the refusal leaves the file byte for byte as it was, with nothing new beside
it. (Corrupted and truncated logs are in test_corrupt_files.py.)"""

from __future__ import annotations

import random
from pathlib import Path

from eventlog import EventLogError, NotAnEventLog, NotWritable, SchemaTooNew
from tests.torture import files
from tests.disk import small_disk
from tests.torture.figures import Figures


async def refuse(db: Path, error: type[EventLogError], log_path: Path, figures: Figures) -> None:
    """Both ways in refuse the file with ``error``, and leave it untouched."""
    before = files.snapshot(db)
    figures.faults += 1
    figures.operations += 2
    refused = await files.refused_by_library(db, error)
    figures.error(refused.code)
    files.refused_by_server(db, log_path, refused)  # the same typed error, not a 500 later
    figures.error("server exits")
    files.same_files(db, before)


async def test_refused_files(tmp_path: Path, scale: int, figures: Figures, rng: random.Random) -> None:
    """Foreign, ``2 x scale`` garbage files, newer schema, read-only."""
    logs = tmp_path / "logs"
    logs.mkdir()
    files.foreign(logs / "foreign.db")
    await refuse(logs / "foreign.db", NotAnEventLog, tmp_path / "foreign.log", figures)
    for n in range(2 * scale):
        db = logs / f"garbage-{n}.db"
        files.garbage(db, rng)
        await refuse(db, NotAnEventLog, tmp_path / f"garbage-{n}.log", figures)
    await files.newer_schema(logs / "newer.db")
    await refuse(logs / "newer.db", SchemaTooNew, tmp_path / "newer.log", figures)

    with small_disk(tmp_path / "ro") as disk:
        db = disk.root / "readonly.db"
        if disk.mounted:
            figures.acknowledged = len(await files.build_log(db, 50))
            disk.make_read_only()
            await refuse(db, NotWritable, tmp_path / "readonly.log", figures)
        else:
            figures.note("no read-only case: no filesystem could be mounted read-only")
    figures.check()
