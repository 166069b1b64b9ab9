"""The retention janitor: trims runs and expires ended ones in the background.

Work is cut into short transactions of at most ``batch_rows`` rows that queue behind appends on
the single writer, so a large trim never holds up producers for long.

Lifecycle: a failed pass is reported to the supervisor (logged once per streak, counted as
``janitor``) and the loop simply tries again at the next interval, except on a corrupt file,
which the storage has reported and which refuses every call from then on; ``stop`` is idempotent
and closes the janitor for good.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from eventlog.errors import DatabaseCorrupt, RunActive, RunEnded, RunNotFound
from eventlog.storage.base import EndRun, RetentionPolicy, Storage
from eventlog.supervision import Supervisor

EXPIRY_INTERVAL = 10.0
"""The most seconds between the passes that delete runs past their ``expires_at``: a stream is
already refused when next looked up after its expiry; the pass gives its space back."""
EXPIRY_BATCH = 100

KEY_EXPIRY_INTERVAL = 60.0
"""The most seconds between the background passes that expire idempotency keys (and at most 1%
of their TTL). The TTL is hours, and the look costs a read even when nothing is due: an idle edge
device should not pay it every ``interval``."""

ABANDONED = "abandoned"
"""The end reason of a run the janitor ended after ``abandon_after`` seconds without events."""


@dataclass(slots=True)
class RetentionReport:
    abandoned_runs: list[str] = field(default_factory=list)
    trimmed_events: int = 0
    expired_runs: list[str] = field(default_factory=list)
    """Runs deleted after ``ended_ttl``, or at their ``expires_at`` (a run that forks still read
    is then only marked deleted)."""
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

    def start(self) -> None:
        """Always: any run may carry an ``expires_at``, whatever the policy."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="eventlog-janitor")

    async def _loop(self) -> None:
        ttl = self.policy.idempotency_ttl
        every = min(KEY_EXPIRY_INTERVAL, ttl / 100) if ttl is not None else 0.0
        keys_expired_at = runs_expired_at = -max(every, EXPIRY_INTERVAL)
        while True:
            started = time.monotonic()
            expire_keys = started - keys_expired_at >= every
            expire_runs = started - runs_expired_at >= min(EXPIRY_INTERVAL, self._interval)
            try:
                await self.run_once(expire_keys=expire_keys, expire_runs=expire_runs)
                if expire_keys:
                    keys_expired_at = started
                if expire_runs:
                    runs_expired_at = started
            except asyncio.CancelledError:
                raise
            except DatabaseCorrupt:
                return  # the storage has reported it, and refuses every call from now on
            except Exception as exc:
                self._supervisor.failed("janitor", exc)
            else:
                self._supervisor.recovered("janitor")
            await asyncio.sleep(self._interval)

    async def run_once(
        self, now: float | None = None, *, expire_keys: bool = True, expire_runs: bool = True
    ) -> RetentionReport:
        """One full pass: idle runs ended, every run trimmed to the policy, every expired run
        removed (with ``expire_runs``, those past their ``expires_at`` too) and, with
        ``expire_keys``, every idempotency key older than its TTL forgotten."""
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
        if expire_runs:
            while due := await self._storage.expired_runs(now, EXPIRY_BATCH):
                for run_id in due:
                    await self._storage.delete(run_id)
                    self._on_deleted(run_id)
                    report.expired_runs.append(run_id)
                    self.expired_runs_total += 1
                if len(due) < EXPIRY_BATCH:
                    break
        if expire_keys and self.policy.idempotency_ttl is not None:
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
