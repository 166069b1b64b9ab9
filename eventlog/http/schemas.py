"""Request bodies (validated with pydantic) and the JSON shapes of responses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from eventlog import Event, RunInfo


class CreateRunBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run_id: str
    metadata: dict[str, JsonValue] = Field(default_factory=dict)


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: str
    data: JsonValue = None


class AppendBody(BaseModel):
    """Either one event (``event`` and ``data``) or a batch (``events``)."""

    model_config = ConfigDict(extra="forbid")
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


def run_json(info: RunInfo) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "status": "ended" if info.ended else "running",
        "created_at": info.created_at,
        "metadata": info.metadata,
        "event_count": info.event_count,
        "total_bytes": info.total_bytes,
        "first_id": info.first_id,
        "last_id": info.last_id,
        "trimmed_through": info.trimmed_through,
        "end_id": info.end_id,
        "end_reason": info.end_reason,
        "ended_at": info.ended_at,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {"id": event.id, "event": event.event, "data": event.data, "created_at": event.created_at}
