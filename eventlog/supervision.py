"""One small lifecycle for every background component (writer, checkpointer, change feed,
follower, janitor), shared by the storage layer's threads and the log layer's tasks.

The rules it encodes:

- a failure is logged once per *streak* (a component that keeps failing the same way does not
  flood the log) and counted, so ``/metrics`` shows it;
- a thread has one closed state: ``stop`` is idempotent and callable from any thread, and the
  thread settles its waiters itself when it ends, however it ends, so nobody waits forever;
- a component needed for correctness is restarted with back-off by ``keep_running``.

It knows nothing of SQLite or HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("eventlog.supervision")

COMPONENTS = ("writer", "commit_listener", "checkpointer", "follower", "janitor")
"""The components reported in ``EventLog.stats()`` (with zero counts until they fail)."""


class Supervisor:
    """Failure and restart counts of one log's background components; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: Counter[str] = Counter()
        self._restarts: Counter[str] = Counter()
        self._failing: set[str] = set()

    def failed(self, component: str, exc: BaseException) -> None:
        """Count a failure; log it (with its traceback) only if the component was healthy."""
        with self._lock:
            self._failures[component] += 1
            first = component not in self._failing
            self._failing.add(component)
        if first:
            logger.error("eventlog %s failed: %s", component, exc, exc_info=exc)

    def recovered(self, component: str) -> None:
        """The component works again: its next failure starts a new streak and is logged."""
        if component in self._failing:  # unlocked peek: this runs after every commit
            with self._lock:
                self._failing.discard(component)
            logger.warning("eventlog %s recovered", component)

    def restarted(self, component: str) -> None:
        with self._lock:
            self._restarts[component] += 1

    def guard(self, component: str, call: Callable[..., Any], *args: Any) -> None:
        """Run ``call(*args)``; a failure is reported here and goes no further (a listener that
        raises must not take down the caller that notifies it)."""
        try:
            call(*args)
        except Exception as exc:
            self.failed(component, exc)
        else:
            self.recovered(component)

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "failures": {name: self._failures[name] for name in (*COMPONENTS, *self._failures)},
                "restarts": {name: self._restarts[name] for name in (*COMPONENTS, *self._restarts)},
            }


class Backoff:
    """Delays between restarts: ``first``, doubling up to ``cap``; ``reset`` once healthy."""

    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self._first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self._first


async def keep_running(
    supervisor: Supervisor,
    component: str,
    body: Callable[[Callable[[], None]], Awaitable[None]],
    backoff: Backoff | None = None,
) -> None:
    """Run ``body(healthy)`` until cancelled, restarting it after each failure (or return)
    with back-off. ``body`` calls ``healthy()`` once it works (e.g. its feed is up), which ends
    the failure streak; the back-off starts again from its shortest delay only after the body
    stayed healthy for ``backoff.cap`` seconds, so a body that fails right after every start
    is restarted, and logged, at most once per ``cap``."""
    backoff = backoff or Backoff()
    loop = asyncio.get_running_loop()
    healthy_since: float | None = None

    def healthy() -> None:
        nonlocal healthy_since
        healthy_since = loop.time()
        supervisor.recovered(component)

    while True:
        try:
            await body(healthy)
            raise RuntimeError(f"{component} ended on its own")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            supervisor.failed(component, exc)
        if healthy_since is not None and loop.time() - healthy_since >= backoff.cap:
            backoff.reset()
        healthy_since = None
        await asyncio.sleep(backoff.next())
        supervisor.restarted(component)


def call_soon_threadsafe(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    """``loop.call_soon_threadsafe`` from a background thread, ignoring a loop that has closed
    meanwhile (its waiters are gone with it), so the thread still ends cleanly."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        if not loop.is_closed():
            raise


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Worker:
    """A daemon thread with one closed state.

    Subclasses implement ``run`` (the thread's body, which returns once ``stopping`` is set),
    ``_wake`` (unblock ``run`` so it sees ``stopping``) and, if they have waiters, ``_settle``
    (called on the thread as it ends, for any reason). A failure of ``run`` goes to
    ``_failed``, which by default reports it to the supervisor."""

    def __init__(self, component: str, supervisor: Supervisor, name: str) -> None:
        self.component = component
        self.supervisor = supervisor
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._exiting = False
        """Set as the thread begins to end: from then on nothing may be handed to it."""
        self._ended = False
        """Set once the thread has ended and settled its waiters: ``join`` returns."""
        self._joiners: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def ended(self) -> bool:
        """The thread has ended (and settled its waiters), for whatever reason."""
        return self._ended

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; idempotent, from any thread, and never blocks."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            if self._exiting:
                return
            self._wake()

    async def join(self) -> None:
        """Wait, without blocking the loop, until the thread has ended (or never started)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._ended or not self._thread.is_alive() and self._thread.ident is None:
                return
            future: asyncio.Future[None] = loop.create_future()
            self._joiners.append((loop, future))
        await future

    def run(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        """Called once, under the lock, by the first ``stop``."""

    def _settle(self, error: BaseException | None) -> None:
        """Called on the thread as it ends; ``error`` is what ended it, if anything did."""

    def _failed(self, exc: BaseException) -> None:
        self.supervisor.failed(self.component, exc)

    def _main(self) -> None:
        error: BaseException | None = None
        try:
            self.run()
        except BaseException as exc:  # a thread has nobody above it to re-raise to
            error = exc
            self._failed(exc)
        finally:
            with self._lock:
                self._exiting = True
            self._settle(error)
            with self._lock:
                self._ended = True
                joiners, self._joiners = self._joiners, []
            for loop, future in joiners:
                call_soon_threadsafe(loop, _resolve, future)
