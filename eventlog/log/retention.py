"""The retention janitor: trims runs and expires ended ones in the background.

Work is cut into short transactions of at most ``batch_rows`` rows that queue behind appends on
the single writer, so a large trim never holds up producers for long.

Lifecycle: a failed pass is reported to the supervisor (logged once per streak, counted as
``janitor``) and the loop simply tries again at the next interval; ``stop`` is idempotent and
closes the janitor for good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eventlog.errors import RunActive, RunEnded, RunNotFound
from eventlog.storage.base import EndRun, RetentionPolicy, Storage
from eventlog.supervision import Supervisor

ABANDONED = "abandoned"
"""The end reason of a run the janitor ended after ``abandon_after`` seconds without events."""


@dataclass(slots=True)
class RetentionReport:
    abandoned_runs: list[str] = field(default_factory=list)
    trimmed_events: int = 0
    expired_runs: list[str] = field(default_factory=list)
    expired_events: int = 0
    expired_idempotency_keys: int = 0


class Janitor:
    def __init__(
        self,
        storage: Storage,
        policy: RetentionPolicy,
        *,
        interval: float,
        on_deleted: Callable[[str], None],
        batch_rows: int = 500,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._storage = storage
        self._supervisor = supervisor or Supervisor()
        self._closed = False
        self._on_deleted = on_deleted
        self.policy = policy
        self._interval = interval
        self._batch_rows = batch_rows
        self._task: asyncio.Task[None] | None = None
        self.trimmed_total = 0
        self.expired_runs_total = 0

    @property
    def has_work(self) -> bool:
        policy = self.policy
        return policy.trims_runs or any(
            ttl is not None for ttl in (policy.ended_ttl, policy.abandon_after, policy.idempotency_ttl)
        )

    def start(self) -> None:
        if self.has_work and self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="eventlog-janitor")

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._supervisor.failed("janitor", exc)
            else:
                self._supervisor.recovered("janitor")
            await asyncio.sleep(self._interval)

    async def run_once(self, now: float | None = None) -> RetentionReport:
        """One full pass: idle runs ended, every run trimmed to the policy, every expired run
        removed, every idempotency key older than its TTL forgotten."""
        now = time.time() if now is None else now
        report = RetentionReport()
        if self.policy.abandon_after is not None:
            for run_id, last_id in await self._storage.idle_runs(now - self.policy.abandon_after):
                try:
                    await self._storage.write(EndRun(run_id, ABANDONED, if_last_id=last_id))
                except (RunActive, RunEnded, RunNotFound):
                    continue  # it moved on (or ended, or went away) since it was found idle
                report.abandoned_runs.append(run_id)
        if self.policy.trims_runs:
            for run_id in await self._storage.trim_candidates(self.policy, now):
                while True:
                    removed = await self._storage.trim_run(run_id, self.policy, now, self._batch_rows)
                    report.trimmed_events += removed
                    self.trimmed_total += removed  # counted as done: a pass may fail later on
                    if removed < self._batch_rows:
                        break
        if self.policy.ended_ttl is not None:
            while True:
                runs, rows = await self._storage.expire_ended(now - self.policy.ended_ttl, self._batch_rows)
                report.expired_runs += runs
                self.expired_runs_total += len(runs)
                for run_id in runs:
                    self._on_deleted(run_id)
                report.expired_events += rows
                if not runs and rows == 0:
                    break
        if self.policy.idempotency_ttl is not None:
            created_before = now - self.policy.idempotency_ttl
            while True:
                forgotten = await self._storage.expire_idempotency_keys(created_before, self._batch_rows)
                report.expired_idempotency_keys += forgotten
                if forgotten < self._batch_rows:
                    break
        return report

    async def stop(self) -> None:
        self._closed = True
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # every concurrent stop waits for the same end
            self._task = None
