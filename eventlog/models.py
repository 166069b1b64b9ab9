"""The values the log API hands out: events, subscription items and run summaries.

They are plain frozen dataclasses: cheap to create on the hot path, safe to share between the
many subscribers that tail the same run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

END_EVENT = "end"
"""The name of the end marker row that closes a run."""


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event.

    It holds the compact JSON exactly as committed: transports send it as it is (one encoding
    shared by every subscriber), and ``data`` parses a fresh copy, so no reader can see a value
    that a producer mutated after appending it."""

    id: int
    run_id: str
    event: str
    data_json: str
    created_at: float
    body: bytes | None = None
    """The exact bytes of an event of a byte stream (its ``data_json`` is then ``null``)."""

    @property
    def data(self) -> Any:
        return json.loads(self.data_json)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Yielded by ``subscribe`` when nothing arrived for ``heartbeat`` seconds."""


HEARTBEAT = Heartbeat()


@dataclass(frozen=True, slots=True)
class End:
    """The run has ended and the reader has seen every event before the end marker."""

    id: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class Gap:
    """The reader's cursor lies before the retained window: events were trimmed away.

    ``requested`` is the cursor the reader asked to resume after; ``earliest`` and ``latest`` are
    the ids of the oldest and newest events still stored (0 when none are)."""

    requested: int
    earliest: int
    latest: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    created_at: float
    metadata: dict[str, Any]
    event_count: int
    total_bytes: int
    first_id: int
    """Id of the earliest retained event (0 when the run holds none)."""
    last_id: int
    """Id of the newest event, end marker included (0 when the run holds none)."""
    trimmed_through: int
    """Every event of this run with an id at or below this one was removed by retention."""
    end_id: int | None
    end_reason: str | None
    ended_at: float | None
    parent_id: str | None = None
    """The run this one was forked from: its readers see the parent's events up to the fork
    point (kept in ``metadata``) before this run's own."""
    deleted_at: float | None = None
    """Set when the run was deleted while forks of it still read its events: it is kept for
    them, and refuses every other use."""
    expires_at: float | None = None
    """When the retention janitor deletes the run (unix seconds; None: never)."""

    @property
    def ended(self) -> bool:
        return self.end_id is not None
