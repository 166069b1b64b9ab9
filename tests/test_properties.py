"""Property tests: random sequences of appends, ends, trims, deletes, reopens, reads and
subscriptions against a plain in-memory model of what the log must hold.

Each example runs on a fresh file. Trimming uses a second EventLog opened on the same file with
a ``max_events`` policy, which does its pass and closes: the trim happens exactly where the
sequence says, never in the background."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventlog import (
    End,
    Event,
    EventLog,
    Gap,
    Heartbeat,
    IdempotencyConflict,
    InvalidData,
    RetentionPolicy,
    RunEnded,
    RunNotFound,
)

RUNS = ["r0", "r1", "r2"]
NAMES = ["updates", "values", "messages", "custom", "updates|sub:1"]
KEYS = ["k0", "k1"]
HEARTBEAT = 0.03
EXAMPLES = int(os.environ.get("EVENTLOG_PROPERTY_EXAMPLES", "30"))  # raise it for a longer hunt


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**62), 2**62)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=5,
)
events_st = st.lists(st.tuples(st.sampled_from(NAMES), json_values), min_size=1, max_size=4)
run_st = st.sampled_from(RUNS)
cursor_st = st.one_of(st.none(), st.integers(0, 40))

op_st = st.one_of(
    st.tuples(st.just("append"), run_st, events_st, st.one_of(st.none(), st.sampled_from(KEYS))),
    st.tuples(st.just("append"), run_st, events_st, st.none()),
    st.tuples(st.just("end"), run_st, st.sampled_from(["success", "error", None]), st.booleans()),
    st.tuples(st.just("create"), run_st, st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    st.tuples(st.just("read"), run_st, st.integers(0, 40), st.integers(1, 6)),
    st.tuples(st.just("subscribe"), run_st, cursor_st),
    st.tuples(st.just("trim")),
    st.tuples(st.just("delete"), run_st),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("bad_data"), run_st),
)


@dataclass
class ModelRun:
    events: list[tuple[int, str, Any]] = field(default_factory=list)  # retained, end marker included
    last_id: int = 0
    trimmed_through: int = 0
    end: tuple[int, str | None] | None = None
    keys: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def first_id(self) -> int:
        return self.events[0][0] if self.events else 0

    def expected_subscription(self, after: int | None) -> list[Any]:
        items: list[Any] = []
        cursor = after or 0
        if after is not None and after < self.trimmed_through:
            items.append(Gap(requested=after, earliest=self.first_id, latest=self.last_id))
            cursor = self.trimmed_through
        for eid, name, data in self.events:
            if eid > cursor:
                items.append(End(eid, data["reason"]) if name == "end" else (eid, name, data))
        if self.end is not None and not any(isinstance(i, End) for i in items):
            items.append(End(*self.end))
        return items


class Scenario:
    def __init__(self, path: Path, keep: int) -> None:
        self.path = path
        self.keep = keep
        self.model: dict[str, ModelRun] = {}
        self.newest = 0
        self.log: EventLog | None = None

    def fresh_ids(self, ids: list[int]) -> None:
        assert ids == sorted(set(ids)) and ids[0] > self.newest, (ids, self.newest)
        self.newest = ids[-1]

    async def run(self, ops: list[tuple]) -> None:
        self.log = await EventLog.open(self.path)
        try:
            for op in ops:
                await getattr(self, f"do_{op[0]}")(*op[1:])
                await self.check_runs()
        finally:
            await self.log.close()

    async def do_append(self, run: str, events: list[tuple[str, Any]], key: str | None) -> None:
        assert self.log is not None
        m = self.model.get(run)
        fingerprint = compact(events)
        expected: Any
        if key is not None and m is not None and key in m.keys:
            stored_fp, stored_ids = m.keys[key]
            expected = stored_ids if stored_fp == fingerprint else IdempotencyConflict
        elif m is not None and m.end is not None:
            expected = RunEnded
        else:
            expected = None  # new ids
        try:
            ids = await self.log.append_many(run, events, idempotency_key=key)
        except (IdempotencyConflict, RunEnded) as exc:
            assert expected is type(exc), (expected, exc)
            return
        if expected is not None:
            assert ids == expected
            return
        assert len(ids) == len(events)
        self.fresh_ids(ids)
        m = self.model.setdefault(run, ModelRun())
        m.events += [(eid, name, data) for eid, (name, data) in zip(ids, events)]
        m.last_id = ids[-1]
        if key is not None:
            m.keys[key] = (fingerprint, ids)

    async def do_end(self, run: str, reason: str | None, must_exist: bool) -> None:
        assert self.log is not None
        m = self.model.get(run)
        try:
            end_id = await self.log.end(run, reason=reason, must_exist=must_exist)
        except RunNotFound:
            assert m is None and must_exist
            return
        except RunEnded:
            assert m is not None and m.end is not None and m.end[1] != reason
            return
        if m is not None and m.end is not None:
            assert m.end == (end_id, reason)
            return
        assert m is not None or not must_exist
        self.fresh_ids([end_id])
        m = self.model.setdefault(run, ModelRun())
        m.events.append((end_id, "end", {"reason": reason}))
        m.last_id = end_id
        m.end = (end_id, reason)

    async def do_create(self, run: str, metadata: dict) -> None:
        from eventlog import RunExists

        assert self.log is not None
        try:
            info = await self.log.create_run(run, metadata=metadata)
        except RunExists:
            assert run in self.model
            return
        assert run not in self.model and info.metadata == metadata
        self.model[run] = ModelRun(metadata=metadata)

    async def do_read(self, run: str, after: int, limit: int) -> None:
        assert self.log is not None
        got = await self.log.read(run, after=after, limit=limit)
        m = self.model.get(run, ModelRun())
        expected = [e for e in m.events if e[0] > after][:limit]
        assert [(e.id, e.event, e.data) for e in got] == expected
        assert all(e.data_json == compact(e.data) for e in got)

    async def do_subscribe(self, run: str, after: int | None) -> None:
        assert self.log is not None
        m = self.model.get(run)
        if m is None:
            try:
                async with aclosing(self.log.subscribe(run, after=after, wait_for_run=False)) as sub:
                    await anext(sub)
            except RunNotFound:
                return
            raise AssertionError("subscribing to a missing run with wait_for_run=False did not raise")
        expected = m.expected_subscription(after)
        got: list[Any] = []
        async with aclosing(self.log.subscribe(run, after=after, heartbeat=HEARTBEAT)) as sub:
            while True:
                item = await asyncio.wait_for(anext(sub, None), 5)
                if item is None or isinstance(item, Heartbeat):
                    break  # stopped (after End) or caught up with an open run
                got.append((item.id, item.event, item.data) if isinstance(item, Event) else item)
        assert got == expected, (run, after)

    async def do_trim(self) -> None:
        async with EventLog.open(
            self.path, retention=RetentionPolicy(max_events=self.keep), retention_interval=3600
        ) as trimmer:
            await trimmer.apply_retention()
        for m in self.model.values():
            plain = [e for e in m.events if e[1] != "end"]
            for eid, _, _ in plain[: max(0, len(plain) - self.keep)]:
                m.trimmed_through = max(m.trimmed_through, eid)
            m.events = [e for e in m.events if e[1] == "end" or e[0] > m.trimmed_through]

    async def do_delete(self, run: str) -> None:
        assert self.log is not None
        assert await self.log.delete(run) == (run in self.model)
        self.model.pop(run, None)

    async def do_reopen(self) -> None:
        assert self.log is not None
        await self.log.close()
        self.log = await EventLog.open(self.path)

    async def do_bad_data(self, run: str) -> None:
        assert self.log is not None
        try:
            await self.log.append(run, "custom", {"text": "\udc80"})
        except InvalidData:
            return
        raise AssertionError("a lone surrogate was accepted")

    async def check_runs(self) -> None:
        assert self.log is not None
        for run in RUNS:
            info = await self.log.run(run)
            m = self.model.get(run)
            if m is None:
                assert info is None, run
                continue
            assert info is not None, run
            plain = [e for e in m.events if e[1] != "end"]
            assert (info.first_id, info.last_id, info.trimmed_through) == (m.first_id, m.last_id, m.trimmed_through)
            assert info.event_count == len(plain)
            assert info.total_bytes == sum(len(compact(d).encode()) for _, _, d in plain)
            assert (info.end_id, info.end_reason) == (m.end if m.end else (None, None))
            assert info.metadata == m.metadata
        listed = {r.run_id for r in await self.log.runs(limit=100)}
        assert listed == set(self.model)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, min_size=1, max_size=25), keep=st.integers(1, 4))
def test_log_matches_model(ops: list[tuple], keep: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(asyncio.wait_for(Scenario(Path(directory) / "p.db", keep).run(ops), 60))


# --- concurrent batches behave like the same requests made one after another ----------------

batch_op_st = st.one_of(
    st.tuples(st.just("append"), run_st, events_st, st.one_of(st.none(), st.sampled_from(KEYS))),
    st.tuples(st.just("end"), run_st, st.sampled_from(["success", "error"])),
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds=st.lists(st.lists(batch_op_st, min_size=1, max_size=30), min_size=1, max_size=3))
def test_concurrent_batches_equal_sequential_execution(rounds: list[list[tuple]]) -> None:
    async def scenario(path: Path) -> None:
        model: dict[str, ModelRun] = {}
        newest = 0
        async with EventLog.open(path) as log:
            for ops in rounds:
                calls = []
                for op in ops:
                    if op[0] == "append":
                        calls.append(log.append_many(op[1], op[2], idempotency_key=op[3]))
                    else:
                        calls.append(log.end(op[1], reason=op[2], must_exist=False))
                results = await asyncio.gather(*calls, return_exceptions=True)
                # Replay the same requests, in the order they were made, on the model.
                for op, result in zip(ops, results):
                    m = model.get(op[1])
                    if op[0] == "append":
                        _, run, events, key = op
                        if key is not None and m is not None and key in m.keys:
                            fp, ids = m.keys[key]
                            if fp == compact(events):
                                assert result == ids
                            else:
                                assert isinstance(result, IdempotencyConflict)
                            continue
                        if m is not None and m.end is not None:
                            assert isinstance(result, RunEnded), result
                            continue
                        assert isinstance(result, list) and len(result) == len(events), result
                        assert result[0] > newest and result == list(range(result[0], result[0] + len(events)))
                        newest = result[-1]
                        m = model.setdefault(run, ModelRun())
                        m.events += [(eid, n, d) for eid, (n, d) in zip(result, events)]
                        if key is not None:
                            m.keys[key] = (compact(events), result)
                    else:
                        _, run, reason = op
                        if m is not None and m.end is not None:
                            if m.end[1] == reason:
                                assert result == m.end[0]
                            else:
                                assert isinstance(result, RunEnded)
                            continue
                        assert isinstance(result, int) and result > newest, result
                        newest = result
                        m = model.setdefault(run, ModelRun())
                        m.events.append((result, "end", {"reason": reason}))
                        m.end = (result, reason)
                for run in RUNS:
                    stored = await log.read(run, limit=1000)
                    expected = model[run].events if run in model else []
                    assert [(e.id, e.event, e.data) for e in stored] == expected

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(asyncio.wait_for(scenario(Path(directory) / "c.db"), 60))
