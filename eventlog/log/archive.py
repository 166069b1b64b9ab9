"""Export and import: a log (or some of its runs) as JSON lines, and back, exactly.

The format (UTF-8, one JSON object per line, ``\\n`` after each)::

    {"format":"eventlog-export","version":1,"schema_version":3,"last_id":1234}
    {"run_id":"job-1","created_at":1764748800.25,"metadata":{"thread_id":"t1"},"trimmed_through":0}
    {"id":1,"event":"progress","data":{"pct":10},"created_at":1764748800.5}
    {"id":7,"event":"end","data":{"reason":"success"},"created_at":1764748803.0}
    {"run_id":"job-2", ...}

The header names the format and its ``version``, the ``schema_version`` of the file it came
from, and ``last_id``, the newest id that file ever handed out (trimmed and deleted events
included). Each run line (runs oldest first) is followed by its events in id order; an end
marker is the event named ``"end"``, whose data holds the reason, and its ``created_at`` is the
run's ``ended_at``. An event of a byte stream also has ``body``, its exact bytes in base64
(its ``data`` is then ``null``); the other events have none, so archives written before byte
bodies existed read as they always did. Timestamps are unix seconds written as Python's
shortest round-tripping float, and event data is the stored compact JSON as it is: so
exporting, importing into an empty log and exporting again gives the same bytes.

An import keeps every id, and so needs an empty log; then no id at or below ``last_id`` is ever
handed out again. With ``remap`` it goes into a log that already holds runs (none of the
imported run ids may exist): the events get new ids, in their order, and a trimmed run's
``trimmed_through`` becomes a new id of its own just before them, so a reader still gets a gap.

The whole input is checked (``check_archive``) before any log is touched: a bad line is refused
with its number, and the log is left as it was (not even created). Then it is written in bounded transactions through the writer.
A failure while writing (a full disk, say) leaves the runs written until then.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from eventlog.errors import InvalidData, InvalidInput
from eventlog.log import validation
from eventlog.log.eventlog import EventLog
from eventlog.models import END_EVENT, Event, RunInfo
from eventlog.storage.base import ImportedRun

FORMAT = "eventlog-export"
VERSION = 1
BATCH_EVENTS = 1000
BATCH_BYTES = 1 << 20
"""An import transaction holds at most this many events, or about this much data."""

Progress = Callable[[int], None]
"""Told how much more is done: rows for an export, bytes of input for an import."""


def _json(value: Any) -> str:
    return validation.encode_json(value, "exported value")


def _line(**fields: str) -> bytes:
    """A JSON object from already-encoded values, in the order given."""
    return ("{" + ",".join(f'"{name}":{value}' for name, value in fields.items()) + "}\n").encode()


def header_line(schema_version: int, last_id: int) -> bytes:
    return _line(format=_json(FORMAT), version=str(VERSION), schema_version=str(schema_version), last_id=str(last_id))


def run_line(run: RunInfo) -> bytes:
    return _line(
        run_id=_json(run.run_id), created_at=_json(run.created_at), metadata=_json(run.metadata),
        trimmed_through=str(run.trimmed_through),
    )


def event_line(event: Event) -> bytes:
    fields = {"id": str(event.id), "event": _json(event.event), "data": event.data_json, "created_at": _json(event.created_at)}
    if event.body is not None:
        fields["body"] = _json(base64.b64encode(event.body).decode("ascii"))
    return _line(**fields)


async def export_log(
    log: EventLog, out: BinaryIO, run_ids: Sequence[str] | None = None, *, on_total: Progress | None = None,
    on_progress: Progress | None = None,
) -> tuple[int, int]:
    """Write the runs ``run_ids`` (None: every run) to ``out`` as one snapshot; returns how many
    runs and events (end markers included) were written. ``on_total`` hears the rows to come."""
    async with log.dump(run_ids) as dump:
        if on_total is not None:
            on_total(dump.runs + dump.rows)
        out.write(header_line(dump.schema_version, dump.last_id))
        async for items in dump.pages:
            out.write(b"".join(run_line(i) if isinstance(i, RunInfo) else event_line(i) for i in items))
            if on_progress is not None:
                on_progress(len(items))
        return dump.runs, dump.rows


@dataclass(frozen=True, slots=True)
class Header:
    schema_version: int
    last_id: int


def _fields(line: int, obj: object, names: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(obj, dict) or not set(names) <= set(obj) <= set(names + optional):
        also = f" (and optionally {', '.join(optional)})" if optional else ""
        raise InvalidData(f"line {line}: expected an object with exactly {', '.join(names)}{also}")
    return obj


def _body(line: int, fields: dict[str, Any]) -> bytes | None:
    """An event's exact bytes, from its base64 ``body`` (a byte stream's event: its data is null)."""
    if "body" not in fields:
        return None
    if fields["data"] is not None:
        raise InvalidData(f"line {line}: an event with a body must have null data")
    try:
        return base64.b64decode(fields["body"], validate=True)
    except (TypeError, ValueError):  # binascii.Error is a ValueError
        raise InvalidData(f"line {line}: body must be base64 text") from None


def _count(line: int, value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidData(f"line {line}: {what} must be a non-negative integer")
    return value


def _time(line: int, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidData(f"line {line}: created_at must be a number (unix seconds)")
    return float(value)


def read_archive(lines: Iterable[bytes], on_progress: Progress | None = None) -> Iterator[Header | ImportedRun | Event]:
    """Parse and check an export: the header, then each run and its events. Raises InvalidData
    (or InvalidInput) naming the line of the first problem."""
    run: str | None = None
    last_id, ended, seen = 0, False, set()
    header = False
    for number, raw in enumerate(lines, 1):
        if on_progress is not None:
            on_progress(len(raw))
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError as exc:  # UnicodeDecodeError included
            raise InvalidData(f"line {number}: not JSON ({exc})") from None
        if not header:
            if not isinstance(obj, dict) or obj.get("format") != FORMAT:
                raise InvalidData(f"line {number}: not an eventlog export (no {FORMAT!r} header)")
            fields = _fields(number, obj, ("format", "version", "schema_version", "last_id"))
            if fields["version"] != VERSION:
                raise InvalidData(f"line {number}: export format version {fields['version']!r}, this eventlog reads {VERSION}")
            header = True
            yield Header(_count(number, fields["schema_version"], "schema_version"), _count(number, fields["last_id"], "last_id"))
        elif isinstance(obj, dict) and "run_id" in obj:
            fields = _fields(number, obj, ("run_id", "created_at", "metadata", "trimmed_through"))
            run = validation.check_run_id(fields["run_id"])
            if run in seen:
                raise InvalidInput(f"line {number}: run {run!r} appears twice")
            seen.add(run)
            if not isinstance(fields["metadata"], dict):
                raise InvalidData(f"line {number}: metadata must be an object")
            trimmed = _count(number, fields["trimmed_through"], "trimmed_through")
            last_id, ended = trimmed, False
            yield ImportedRun(run, _time(number, fields["created_at"]), validation.encode_json(fields["metadata"], "run metadata"), trimmed)
        else:
            fields = _fields(number, obj, ("id", "event", "data", "created_at"), optional=("body",))
            if run is None:
                raise InvalidData(f"line {number}: an event before any run line")
            if ended:
                raise InvalidInput(f"line {number}: an event of run {run!r} after its end marker")
            event_id = _count(number, fields["id"], "id")
            if event_id <= last_id:
                raise InvalidInput(f"line {number}: event id {event_id} of run {run!r} is not above its previous id {last_id}")
            name = validation.check_event_name(fields["event"], allow_reserved=fields["event"] == END_EVENT)
            data = fields["data"]
            if name == END_EVENT:
                ended = True
                if not isinstance(data, dict) or set(data) != {"reason"} or not isinstance(data["reason"], str | None):
                    raise InvalidData(f'line {number}: an end marker\'s data must be {{"reason": text or null}}')
            last_id = event_id
            body = _body(number, fields)
            yield Event(event_id, run, name, validation.encode_json(data), _time(number, fields["created_at"]), body)
    if not header:
        raise InvalidData("empty input: not an eventlog export")


@dataclass(frozen=True, slots=True)
class Checked:
    """An input ``check_archive`` read whole and found sound: what ``import_log`` takes."""

    read: Callable[[], Iterable[bytes]]
    run_ids: list[str]


def check_archive(read: Callable[[], Iterable[bytes]], on_progress: Progress | None = None) -> Checked:
    """Read the whole input (``read`` opens it anew each time), before any log is touched."""
    return Checked(read, [item.run_id for item in read_archive(read(), on_progress) if isinstance(item, ImportedRun)])


async def import_log(
    log: EventLog, checked: Checked, *, remap: bool = False, on_progress: Progress | None = None
) -> tuple[int, int]:
    """Import a checked export; returns the runs and events imported. Without ``remap`` the log
    must be empty; with it, none of the imported runs may exist."""
    if not remap and await log.runs(limit=1):
        raise InvalidInput("the log already holds runs: an import keeping the exported ids needs an empty log; remap the ids to add to it (eventlog import --remap)")
    for run_id in checked.run_ids:
        if await log.run(run_id) is not None:
            raise InvalidInput(f"run {run_id!r} of the import already exists in the log")
    runs: list[ImportedRun] = []
    events: list[Event] = []
    reserve, size, imported = 0, 0, 0

    async def flush(last: bool = False) -> None:
        """Write what was collected; the last call writes even nothing, to reserve ``last_id``."""
        nonlocal runs, events, size, imported
        if runs or events or (last and not remap):
            imported += len(await log.import_rows(runs, events, remap=remap, reserve_through=reserve))
        runs, events, size = [], [], 0

    for item in read_archive(checked.read(), on_progress):
        if isinstance(item, Header):
            reserve = item.last_id
        elif isinstance(item, ImportedRun):
            runs.append(item)
        else:
            events.append(item)
            size += len(item.data_json) + len(item.body or b"")
            if len(events) >= BATCH_EVENTS or size >= BATCH_BYTES:
                await flush()
    await flush(last=True)
    return len(checked.run_ids), imported
