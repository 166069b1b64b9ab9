"""Request bodies (validated with pydantic) and response bodies (built from pydantic models).

The handlers send what these models serialize, and ``/openapi.json`` documents their JSON
schemas, so the description cannot drift from what is sent."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator
from starlette.responses import Response

from eventlog import Event, RunInfo
from eventlog.log.validation import RESERVED_EVENT_NAMES, RUN_ID_PATTERN

RUN_ID_SCHEMA = {"type": "string", "pattern": f"^{RUN_ID_PATTERN.pattern}$"}
"""What the log accepts as a run id, for the description (the log itself checks it)."""
EVENT_NAME_SCHEMA = {
    "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^\\x00-\\x1f\\x7f]*$",
    "not": {"enum": sorted(RESERVED_EVENT_NAMES)},
}
"""What the log accepts as an event name, likewise."""


def _one_form_schema(schema: dict[str, Any]) -> None:
    """``AppendBody``'s rule in its schema: ``event`` or a non-empty ``events``, not both."""
    properties = schema["properties"]
    properties["event"] = EVENT_NAME_SCHEMA
    properties["events"] = {"type": "array", "minItems": 1, "items": properties["events"]["anyOf"][0]["items"]}
    schema["oneOf"] = [{"required": ["event"]}, {"required": ["events"]}]


class CreateRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str = Field(json_schema_extra=RUN_ID_SCHEMA)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str = Field(json_schema_extra=EVENT_NAME_SCHEMA)
    data: JsonValue = None


class AppendBody(BaseModel):
    """Either one event (``event`` and ``data``) or a batch (``events``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_form_schema)
    event: str | None = None
    data: JsonValue = None
    events: list[EventBody] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AppendBody:
        if (self.event is None) == (self.events is None):
            raise ValueError('give either "event" (with "data") or "events", not both or neither')
        if self.events is not None and not self.events:
            raise ValueError('"events" must not be empty')
        return self

    def pairs(self) -> list[tuple[str, Any]]:
        if self.events is not None:
            return [(e.event, e.data) for e in self.events]
        assert self.event is not None
        return [(self.event, self.data)]


class EndBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = "success"


class Run(BaseModel):
    """A run's summary."""

    run_id: str
    status: Literal["running", "ended"]
    created_at: float
    metadata: dict[str, JsonValue]
    event_count: int
    total_bytes: int
    first_id: int = Field(description="id of the earliest retained event (0 when none is)")
    last_id: int = Field(description="id of the newest event, end marker included (0 when none is)")
    trimmed_through: int = Field(description="every event with an id at or below this one was trimmed")
    end_id: int | None
    end_reason: str | None
    ended_at: float | None
    parent_id: str | None = Field(None, description="the run this one is a fork of (a Durable Streams fork)")
    deleted_at: float | None = Field(None, description="set when the run was deleted while its forks still read it")
    expires_at: float | None = Field(None, description="when the janitor deletes the run (a Durable Streams TTL or expiry)")

    @classmethod
    def of(cls, info: RunInfo) -> Run:
        """Every field of ``info``, and its status."""
        return cls(status="ended" if info.ended else "running", **asdict(info))


class RunList(BaseModel):
    runs: list[Run]


class StoredEvent(BaseModel):
    id: int
    event: str
    data: JsonValue
    created_at: float

    @classmethod
    def of(cls, event: Event) -> StoredEvent:
        return cls(id=event.id, event=event.event, data=event.data, created_at=event.created_at)


class EventsPage(BaseModel):
    events: list[StoredEvent]
    next_after: int = Field(description="the cursor for the next page (the last id, or after)")


class AppendedIds(BaseModel):
    ids: list[int] = Field(description="the ids of the appended events, in order")


class Ended(BaseModel):
    id: int = Field(description="the end marker's id")
    reason: str | None


class StreamEvent(BaseModel):
    """One Server-Sent Event, as a client's parser yields it (the ``retry:`` hint that opens a
    stream and heartbeat comments carry no data, so they yield none). ``event`` is the stored
    event's name, or ``end`` (``data`` is ``{"reason": ...}``; the stream then closes), or
    ``gap`` (the cursor lies before the retained events; ``data`` gives
    ``earliest_available_event_id`` and ``recovery``)."""

    id: str | None = Field(None, pattern="^[0-9]+$", description="the event id, the cursor to resume after")
    event: str
    data: str = Field(json_schema_extra={"contentMediaType": "application/json"})
    retry: int | None = None


class ThreadRunStatus(BaseModel):
    run_id: str
    thread_id: str
    status: Literal["running", "success", "error", "interrupted"]


class ErrorDetail(BaseModel):
    """``code`` and ``message`` always; some errors add fields (``details`` of an invalid body)."""

    model_config = ConfigDict(extra="allow")
    code: str = Field(description="stable, for clients to switch on")
    message: str


class Health(BaseModel):
    """``/healthz``'s body; open to more fields (what the checks found) without a new version."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "unhealthy"]
    error: ErrorDetail | None = None
    """Why it is unhealthy (a corrupt file, say)."""


class Error(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


def reply(body: BaseModel, status: int = 200, *, exclude_none: bool = False) -> Response:
    """The JSON response carrying ``body``, serialized by its model (``exclude_none`` leaves out
    optional fields that are unset, where their absence is the message, as in ``Health``)."""
    return Response(body.model_dump_json(exclude_none=exclude_none), status, media_type="application/json")
