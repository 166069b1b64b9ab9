"""``eventlog check PATH`` through the real entry point, in a subprocess: exit 0 and the facts for
a sound file, non-zero and a one-line reason otherwise, and the file is never modified."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from eventlog.storage.migrations import load_migrations
from tests.faults import build_log, corrupt_middle

LATEST = load_migrations()[-1].version
"""The schema version this eventlog migrates files to."""


def run_check(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventlog", "check", str(path), *args], capture_output=True, text=True, timeout=120
    )


def digest(path: Path) -> tuple[str, float]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime


def reason(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.db"
    asyncio.run(build_log(path))
    return path


@pytest.mark.parametrize("quick", [False, True])
def test_a_sound_file(good: Path, quick: bool) -> None:
    before = digest(good)
    result = run_check(good, *(["--quick"] if quick else []))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "integrity: ok" in out
    assert f"schema version: {LATEST} (this eventlog: {LATEST})" in out
    assert "runs: 10" in out and "events: 3000" in out
    assert f"file size: {good.stat().st_size} bytes" in out and "wal size: 0 bytes" in out
    assert out.strip().endswith(f"{good}: ok")
    assert digest(good) == before


def test_a_file_in_use_with_a_wal(good: Path) -> None:
    """A file another process has open, with commits still in its WAL: they are counted, and
    neither the file nor the WAL is touched. (The peer is a plain connection that never
    checkpoints, so any change would be the check's.)"""
    peer = sqlite3.connect(good, isolation_level=None)
    try:
        peer.execute("PRAGMA wal_autocheckpoint = 0")
        peer.executemany(
            "INSERT INTO events (run_id, event, data, created_at) VALUES ('run-0', 'x', '1', 0)", [()] * 50
        )
        wal = Path(f"{good}-wal")
        before = digest(good), wal.read_bytes()
        result = run_check(good)
        assert result.returncode == 0, result.stderr
        assert "events: 3050" in result.stdout and f"wal size: {wal.stat().st_size} bytes" in result.stdout
        assert wal.stat().st_size > 0
        assert (digest(good), wal.read_bytes()) == before
    finally:
        peer.close()


def test_a_corrupt_file(good: Path) -> None:
    corrupt_middle(good)
    before = digest(good)
    result = run_check(good)
    assert result.returncode != 0
    assert reason(result).startswith(f"eventlog check: {good}: corrupt: ")
    assert digest(good) == before


def test_a_foreign_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = digest(path)
    result = run_check(path)
    assert result.returncode != 0
    assert reason(result) == f"eventlog check: {path}: not an eventlog: {path.resolve()} is an SQLite database of another program"
    assert digest(path) == before


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a database\n" * 100)
    result = run_check(path)
    assert result.returncode != 0
    assert reason(result).startswith(f"eventlog check: {path}: not an eventlog: ")
    assert path.read_text() == "hello, not a database\n" * 100


def test_a_newer_schema(good: Path) -> None:
    conn = sqlite3.connect(good)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    result = run_check(good)
    assert result.returncode != 0
    assert reason(result) == f"eventlog check: {good}: newer schema: version 99, this eventlog knows up to {LATEST}"


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing-here.db"
    result = run_check(path)
    assert result.returncode != 0
    assert reason(result) == f"eventlog check: {path}: missing: there is no file at this path"
    assert not path.exists()  # not created either
