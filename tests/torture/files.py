"""Bad files for the refusal scenarios, and the checks every refusal shares: the file is
untouched (same bytes, no new files beside it), and a server on it exits with the typed error
instead of serving."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from pathlib import Path

import pytest

from eventlog import EventLog
from eventlog.storage.migrations import load_migrations
from tests.http.server import ServerProcess

OPEN_DEADLINE = 20.0  # seconds: a refusal that takes longer is a hang


def snapshot(db: Path) -> tuple[str, list[str]]:
    """The file's SHA-256 and the names of the files beside it that share its name."""
    siblings = sorted(p.name for p in db.parent.iterdir() if p.name.startswith(db.name))
    return hashlib.sha256(db.read_bytes()).hexdigest(), siblings


async def build_log(db: Path, events: int, run: str = "run") -> list[int]:
    """A real log of ``events`` events of about 200 bytes, closed: the file alone holds
    everything (close checkpoints the WAL and removes it)."""
    async with EventLog.open(db) as log:
        ids = []
        for start in range(0, events, 100):
            batch = [("updates", {"n": n, "pad": "p" * 200}) for n in range(start, min(events, start + 100))]
            ids += await log.append_many(run, batch)
    assert not db.with_name(db.name + "-wal").exists()
    return ids


def foreign(db: Path) -> None:
    """An SQLite database of another program."""
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
    conn.commit()
    conn.close()


def garbage(db: Path, rng: random.Random) -> None:
    """Random bytes, sometimes behind a valid SQLite header."""
    header = b"SQLite format 3\x00" if rng.random() < 0.5 else b""
    db.write_bytes(header + rng.randbytes(rng.choice([100, 4096, 65536])))


async def newer_schema(db: Path) -> None:
    """A log written by a (pretend) newer eventlog: a schema version this one does not know."""
    await build_log(db, 10)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {load_migrations()[-1].version + 1}")
    conn.commit()
    conn.close()


async def refused_by_library(db: Path, error: type[Exception]) -> Exception:
    """``EventLog.open`` raises ``error`` promptly."""
    with pytest.raises(error) as caught:
        async with asyncio.timeout(OPEN_DEADLINE):
            await EventLog.open(db)
    return caught.value


def refused_by_server(db: Path, log_path: Path, refused: Exception) -> str:
    """``eventlog serve`` on the file exits (non-zero, promptly) before serving, with the
    library's refusal ``refused`` (the same typed error's message) as its one line and no
    traceback; returns its log."""
    server = ServerProcess(db, log_path=log_path)
    try:
        with pytest.raises(RuntimeError, match="server exited"):
            server.start(timeout=OPEN_DEADLINE)
    finally:
        server.kill()
    assert server.process is not None and server.process.returncode != 0
    output = log_path.read_text()
    assert output.strip() == f"eventlog: {refused}", output[-3000:]
    return output


def same_files(db: Path, before: tuple[str, list[str]]) -> None:
    after = snapshot(db)
    assert after == before, f"a refusal changed {db}: {before} -> {after}"
