"""A zero-byte file (what ``touch`` or a pre-created volume leaves) is an empty SQLite database:
opening it makes it a working log, as the README says."""

from __future__ import annotations

from pathlib import Path

from eventlog import EventLog


async def test_a_zero_byte_file_becomes_a_working_log(tmp_path: Path) -> None:
    path = tmp_path / "touched.db"
    path.touch()
    async with EventLog.open(path) as log:
        ids = await log.append_many("run-1", [("updates", {"n": 1}), ("updates", {"n": 2})])
        await log.end("run-1")
        assert [e.data for e in await log.read("run-1", after=0, limit=10)][:2] == [{"n": 1}, {"n": 2}]
    assert path.stat().st_size > 0
    async with EventLog.open(path) as reopened:
        events = await reopened.read("run-1", after=0, limit=10)
        assert [e.id for e in events][:2] == ids and events[-1].event == "end"
        assert [info.run_id for info in await reopened.runs()] == ["run-1"]
