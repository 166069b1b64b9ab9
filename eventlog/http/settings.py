"""Server settings, from ``EVENTLOG_*`` environment variables (and the CLI's flags, which the
CLI hands to the server processes through the same variables, so every worker agrees)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from eventlog import RetentionPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVENTLOG_", extra="ignore")

    db: str = Field("data/eventlog.db", description="an SQLite file's path, or a postgresql:// URL")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    durability: Literal["process", "power"] = "process"

    heartbeat: float = Field(15.0, gt=0, description="seconds between SSE heartbeat comments")
    long_poll_timeout: float = Field(30.0, gt=0, description="seconds a Durable Streams long-poll read waits for data")
    retry_ms: int = Field(1000, ge=0, description="the SSE retry: hint sent in the first frame")
    max_body_bytes: int = Field(1_048_576, gt=0)
    max_batch_events: int = Field(1000, gt=0)
    cors_origins: Annotated[list[str], NoDecode] = []

    api_key: Annotated[list[str], NoDecode] = Field(default=[], description="producer keys, comma-separated")
    jwt_secret: str | None = Field(None, description="HS256 secret of reader tokens")
    jwt_public_key: str | None = Field(None, description="PEM (or its path) verifying RS256/ES256 reader tokens")
    jwt_algorithms: Annotated[list[str], NoDecode] = ["HS256"]
    insecure: bool = Field(False, description="allow a non-loopback address without any key")
    access_log: bool = Field(True, description="uvicorn's line per request (eventlog serve)")

    retention_max_events: int | None = Field(None, gt=0)
    retention_max_bytes: int | None = Field(None, gt=0)
    retention_max_age: float | None = Field(None, gt=0, description="seconds")
    ended_ttl: float | None = Field(None, gt=0, description="seconds after its end a run is deleted")
    abandon_after: float | None = Field(None, gt=0, description="seconds without events after which a run is ended as abandoned")
    idempotency_ttl: float = Field(86400.0, gt=0, description="seconds an Idempotency-Key is remembered")
    retention_interval: float = Field(1.0, gt=0)
    poll_interval: float = Field(1.0, gt=0, description="fallback for cross-process wake-ups")
    lock_timeout: float = Field(30.0, gt=0, description="seconds a write waits for another process' write lock before 503")
    pool_size: int = Field(10, ge=1, description="PostgreSQL: connections of each server process")
    command_timeout: float | None = Field(None, gt=0, description="PostgreSQL: seconds a statement may take before 503 (default: lock_timeout + 5)")

    @field_validator("cors_origins", "api_key", "jwt_algorithms", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(
            max_events=self.retention_max_events,
            max_bytes=self.retention_max_bytes,
            max_age=self.retention_max_age,
            ended_ttl=self.ended_ttl,
            abandon_after=self.abandon_after,
            idempotency_ttl=self.idempotency_ttl,
        )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_key) or self.jwt_secret is not None or self.jwt_public_key is not None

    def to_env(self) -> dict[str, str]:
        """The ``EVENTLOG_*`` variables that reproduce these settings in another process."""
        env = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, list):
                value = ",".join(value)
            env[f"EVENTLOG_{name.upper()}"] = str(value)
        return env
