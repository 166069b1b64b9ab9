"""The file commands (export, import, trim, migrate, checkpoint, vacuum, and serve's refusals)
through the real entry point, in subprocesses, on real files: what each prints is what it did,
and every refusal is one line on stderr, a non-zero exit and the file's bytes unchanged."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventlog import EventLog, RetentionPolicy
from eventlog.storage.migrations import load_migrations, migrate
from tests.disk import small_disk
from tests.faults import build_log, corrupt_middle

LATEST = load_migrations()[-1].version
"""The schema version this eventlog migrates files to."""


def eventlog(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "eventlog", *map(str, args)], capture_output=True, timeout=120)


def one_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The refusal's one stderr line (and no traceback, and a non-zero exit)."""
    assert result.returncode != 0, result
    text = result.stderr.decode()
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def build_sample(path: Path) -> None:
    """Metadata, unicode data, an ended run, a run trimmed by retention, a run created ended,
    and runs whose ids interleave."""
    async with EventLog.open(path) as log:
        await log.append_many("trimmed", [("x", {"n": i}) for i in range(20)])
        await log.apply_retention(policy=RetentionPolicy(max_events=4, idempotency_ttl=None))
        await log.create_run("meta", {"thread_id": "t-1", "label": "héllo ✓ 日本"})
        for i in range(5):
            await log.append_many("job-1", [("step", {"i": i, "text": "ünïcødé ✓"}), ("tick", None)])
            await log.append("meta", "note", [i, 2.5, True, "😀"])
        await log.end("job-1", "success")
        await log.end("gone", "cancelled", must_exist=False)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.db"
    asyncio.run(build_sample(path))
    return path


def export(db: Path, *runs: str) -> bytes:
    result = eventlog("export", "--db", db, *runs)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    return result.stdout


def test_export_import_export_is_byte_identical(sample: Path, tmp_path: Path) -> None:
    first = export(sample)
    lines = first.decode().splitlines()
    assert lines[0].startswith(f'{{"format":"eventlog-export","version":1,"schema_version":{LATEST},')
    assert '"trimmed_through":16' in first.decode() and '"event":"end","data":{"reason":"cancelled"}' in first.decode()
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(first)
    copy = tmp_path / "copy.db"
    result = eventlog("import", dump, "--db", copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"imported 4 runs, 21 events into {copy}"
    assert export(copy) == first
    assert export(copy, "job-1", "meta") == export(sample, "job-1", "meta")

    async def compare() -> None:
        async with EventLog.open(sample) as a, EventLog.open(copy) as b:
            assert await a.runs() == await b.runs()  # counts, first/last ids, ends, ended_at
            assert await b.append("trimmed", "x", 1) == await a.append("trimmed", "x", 1)  # no id reused

    asyncio.run(compare())


def test_a_progress_bar_goes_to_stderr_only(sample: Path, tmp_path: Path) -> None:
    result = eventlog("export", "--db", sample, "--progress")
    assert result.returncode == 0
    assert result.stdout == export(sample)
    assert b"exporting" in result.stderr and b"25/25" in result.stderr  # 4 runs, 21 events (end markers included)
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(result.stdout)
    imported = eventlog("import", dump, "--db", tmp_path / "copy.db", "--progress")
    assert imported.returncode == 0 and b"importing" in imported.stderr


def test_import_refuses_a_log_that_holds_runs(sample: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(export(sample))
    before = digest(sample)
    assert "already holds runs" in one_line(eventlog("import", dump, "--db", sample))
    assert digest(sample) == before


def test_import_with_remap_gives_new_ids(sample: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(export(sample))
    other = tmp_path / "other.db"

    async def seed() -> None:
        async with EventLog.open(other) as log:
            await log.append_many("local", [("x", i) for i in range(100)])

    asyncio.run(seed())
    result = eventlog("import", dump, "--db", other, "--remap")
    assert result.returncode == 0, result.stderr
    assert "(ids remapped)" in result.stdout.decode()
    before = digest(other)
    assert "already exists" in one_line(eventlog("import", dump, "--db", other, "--remap"))  # not twice
    assert digest(other) == before

    async def check() -> None:
        async with EventLog.open(sample) as a, EventLog.open(other) as b:
            for run_id in ("meta", "job-1", "trimmed", "gone"):
                old, new = await a.read(run_id), await b.read(run_id)
                assert [(e.event, e.data_json, e.created_at) for e in old] == [(e.event, e.data_json, e.created_at) for e in new]
                assert all(e.id > 100 for e in new)
                info = await b.run(run_id)
                assert info is not None and (info.trimmed_through > 0) == (run_id == "trimmed")
            assert (await b.run("job-1")).ended_at == (await a.run("job-1")).ended_at  # type: ignore[union-attr]

    asyncio.run(check())


def test_trim_removes_what_it_prints(sample: Path) -> None:
    result = eventlog("trim", "--db", sample, "--max-events", "2", "--ended-ttl", "0s")
    assert result.returncode == 0, result.stderr
    # trimmed to 2 events each first (2 of trimmed, 3 of meta, 8 of job-1), then the ended runs
    # deleted, oldest end first: job-1 (2 events and its end) and gone (an end)
    assert result.stdout.decode().splitlines() == [
        "trimmed 13 events", "deleted 2 ended runs (4 events)", "  job-1", "  gone",
    ]

    async def check() -> None:
        async with EventLog.open(sample) as log:
            assert sorted((r.run_id, r.event_count) for r in await log.runs()) == [("meta", 2), ("trimmed", 2)]

    asyncio.run(check())
    assert "nothing to trim by" in one_line(eventlog("trim", "--db", sample))


def test_migrate_prints_the_versions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, load_migrations()[:1])
    conn.close()
    result = eventlog("migrate", "--db", path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"schema version 1 -> {LATEST}"
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert eventlog("migrate", "--db", path).stdout.decode().strip() == f"schema version {LATEST}: already up to date"


def test_checkpoint_truncates_the_wal(sample: Path) -> None:
    """A peer that never checkpoints leaves commits in the WAL; the command folds them in."""
    peer = sqlite3.connect(sample, isolation_level=None)
    try:
        peer.execute("PRAGMA wal_autocheckpoint = 0")
        peer.executemany("INSERT INTO events (run_id, event, data, created_at) VALUES ('meta', 'x', '1', 0)", [()] * 200)
        wal = Path(f"{sample}-wal")
        size = wal.stat().st_size
        assert size > 0
        result = eventlog("checkpoint", "--db", sample)
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().strip() == f"wal size: {size} -> 0 bytes"
        assert wal.stat().st_size == 0
        assert peer.execute("SELECT count(*) FROM events WHERE event = 'x' AND run_id = 'meta'").fetchone()[0] == 200
    finally:
        peer.close()


def test_vacuum_gives_free_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    asyncio.run(build_log(path))

    async def delete_most() -> None:
        async with EventLog.open(path) as log:
            for i in range(9):
                await log.delete(f"run-{i}")

    asyncio.run(delete_most())
    before = path.stat().st_size
    result = eventlog("vacuum", "--db", path)
    assert result.returncode == 0, result.stderr
    after = path.stat().st_size
    assert after < before // 3
    assert result.stdout.decode().strip() == f"file size: {before} -> {after} bytes"
    assert export(path).count(b'"event":"x"') == 300  # run-9 is intact


# --- refusals --------------------------------------------------------------------------------


def _not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("shopping list\n" * 50)
    return path


def _foreign(tmp_path: Path) -> Path:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE contacts (name TEXT)")
    conn.commit()
    conn.close()
    return path


def _newer(tmp_path: Path) -> Path:
    path = tmp_path / "newer.db"
    asyncio.run(build_sample(path))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    return path


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.db"
    asyncio.run(build_log(path))
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 3)
    return path


BAD_FILES = {
    "not a database": (_not_a_database, "is not a usable eventlog database"),
    "foreign": (_foreign, "is an SQLite database of another program"),
    "newer": (_newer, "has schema version 99"),
    "corrupt": (_truncated, "is corrupt"),
}
COMMANDS = [["export"], ["trim", "--max-events", "1"], ["migrate"], ["checkpoint"], ["vacuum"]]


def serve(db: Path, port: int = 0) -> subprocess.CompletedProcess[bytes]:
    return eventlog("serve", "--db", db, "--port", str(port))


@pytest.mark.parametrize("case", BAD_FILES)
def test_serve_refuses_a_bad_file(tmp_path: Path, case: str) -> None:
    make, reason = BAD_FILES[case]
    path = make(tmp_path)
    before = digest(path)
    assert reason in one_line(serve(path))
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no -wal, -shm left behind


@pytest.mark.parametrize("case", ["foreign", "newer"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_file_commands_refuse_a_bad_file(tmp_path: Path, case: str, command: list[str]) -> None:
    make, reason = BAD_FILES[case]
    path = make(tmp_path)
    before = digest(path)
    assert reason in one_line(eventlog(*command, "--db", path))
    assert digest(path) == before


def test_a_directory_and_a_missing_file(tmp_path: Path) -> None:
    assert one_line(serve(tmp_path)) == f"eventlog: {tmp_path} is a directory, not an eventlog file"
    missing = tmp_path / "missing.db"
    for command in COMMANDS:
        assert one_line(eventlog(*command, "--db", missing)) == f"eventlog: {missing}: no such file"
    assert one_line(eventlog("import", missing, "--db", tmp_path / "x.db")) == f"eventlog: {missing}: no such file"
    assert list(tmp_path.iterdir()) == []


def test_export_of_an_unknown_run_and_of_a_damaged_file(sample: Path, tmp_path: Path) -> None:
    assert one_line(eventlog("export", "--db", sample, "job-1", "nope")) == "eventlog: run 'nope' does not exist"
    damaged = tmp_path / "damaged.db"
    asyncio.run(build_log(damaged))
    corrupt_middle(damaged)
    before = digest(damaged)
    result = eventlog("export", "--db", damaged)
    assert "is corrupt" in one_line(result)
    assert digest(damaged) == before


@pytest.mark.parametrize("content", [b"", b"not json\n", b'{"format":"eventlog-export","version":1,"schema_version":3,"last_id":1}\n{"id":1,"event":"x","data":1,"created_at":0}\n'])
def test_import_refuses_bad_input_before_creating_the_log(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(content)
    assert one_line(eventlog("import", source, "--db", tmp_path / "new.db")).startswith("eventlog: ")
    assert not (tmp_path / "new.db").exists()


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs holding an eventlog file (the one way to deny root a write)."""
    with small_disk(tmp_path / "ro") as disk:
        if not disk.mounted:
            pytest.fail("a read-only directory needs mount (tests run as root)")
        asyncio.run(build_sample(disk.root / "log.db"))
        disk.make_read_only()
        yield disk.root


def test_a_read_only_directory(read_only: Path) -> None:
    path = read_only / "log.db"
    before = digest(path)
    assert "cannot write" in one_line(serve(path))
    for command in COMMANDS[1:]:
        assert "cannot write" in one_line(eventlog(*command, "--db", path))
    assert "is read-only" in one_line(serve(read_only / "new.db"))
    assert "is read-only" in one_line(serve(read_only / "sub" / "new.db"))
    assert digest(path) == before
    assert sorted(p.name for p in read_only.iterdir()) == ["log.db"]


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(serve(tmp_path / "log.db", port))
    assert line == f"eventlog: cannot listen on 127.0.0.1:{port}: Address already in use"
