"""Close open streams as soon as the server is told to stop.

uvicorn's graceful shutdown waits for every open response to complete, and a stream never does
on its own: without this it would wait out ``timeout_graceful_shutdown`` and then cut them.
Ending the streams at once lets their clients reconnect (with their last event id) to a server
that stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from types import FrameType
from typing import TypeVar

T = TypeVar("T")

EXIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_exit_signal(callback: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM also schedule ``callback`` on the running loop before
    the handler already installed (uvicorn's, which starts the shutdown) runs. Only signals
    that already have a Python handler are chained: elsewhere there is no server to stop."""
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in EXIT_SIGNALS}

    def handle(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)
        previous[sig](sig, frame)  # type: ignore[operator]

    chained = [sig for sig, handler in previous.items() if callable(handler)]
    for sig in chained:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig in chained:
            if signal.getsignal(sig) is handle:
                signal.signal(sig, previous[sig])


async def until_stopped(stopping: asyncio.Event, items: AsyncIterator[T]) -> AsyncIterator[T]:
    """``items`` until ``stopping`` is set (the server is told to stop): a response that waits
    for them (a long-poll, a Durable Streams SSE stream) then ends at once, whole, instead of
    holding up the shutdown. ``items`` is closed either way: by ``aclose``, or, when it is
    stopped (or this is cancelled: the client left) while it waits for its next item, by
    cancelling that wait, which unwinds it where it waits."""
    stop = asyncio.ensure_future(stopping.wait())
    step: asyncio.Future[T] | None = None
    try:
        while True:
            step = asyncio.ensure_future(anext(items))
            await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            step = None
            yield item
    finally:
        stop.cancel()
        if step is not None and not step.done():
            step.cancel()
        else:
            await items.aclose()  # type: ignore[attr-defined]
