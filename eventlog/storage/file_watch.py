"""Wake-ups when the database file is written, without polling.

On Linux, inotify reports every write to the WAL (and to the main file at checkpoints); the
change feed's thread blocks in ``select`` on the inotify descriptor, so an idle process spends no
CPU at all. Elsewhere only the caller's timeout (a slow fallback poll) ends a wait. A wake-up only
says "look again": the change feed then asks the database what actually changed. Waiting and
taking the events are separate steps (``wait``, ``drain``), so that the feed can let a burst of
writes pile up in the kernel's queue and wake once for all of it.

Ownership of the descriptors: the waiting thread uses them and closes them (``close``) when it is
done; any other thread only calls ``interrupt``. Both take the same lock and ``close`` marks the
watch closed, so an ``interrupt`` racing the end of the thread either writes before the close or
does nothing: it can never write into a closed descriptor, nor into one whose number was reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import sys
import threading
from pathlib import Path

_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_Q_OVERFLOW = 0x00004000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_HEADER = struct.Struct("iIII")


class FileWatch:
    """Blocking waits for changes to the files whose names begin with ``path``'s name."""

    def __init__(self, path: Path) -> None:
        self._directory = path.parent
        self._prefix = path.name.encode()
        self._fd: int | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)  # a full pipe already holds a pending wake-up
        self._lock = threading.Lock()
        self._closed = False

    @property
    def active(self) -> bool:
        """True when change events arrive (inotify), False when only timeouts end a wait."""
        return self._fd is not None

    def start(self) -> None:
        if not sys.platform.startswith("linux"):
            return
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        mask = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE
        if libc.inotify_add_watch(fd, os.fsencode(self._directory), mask) < 0:
            os.close(fd)
            return
        self._fd = fd

    def wait(self, timeout: float) -> bool:
        """Block until a change event is pending (True), or ``timeout`` passes or ``interrupt``
        is called (False). The events stay pending until ``drain``: a caller may let a burst
        of writes accumulate and take it in one go."""
        watched = [self._wake_read] if self._fd is None else [self._fd, self._wake_read]
        readable, _, _ = select.select(watched, [], [], timeout)
        return self._fd in readable

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` whatever the file does (its events stay pending), unless
        ``interrupt`` is called."""
        select.select([self._wake_read], [], [], seconds)

    def interrupt(self) -> None:
        """End the current (or next) ``wait`` at once; callable from any thread, also after
        ``close`` (then it does nothing)."""
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._wake_write, b"!")
            except BlockingIOError:
                pass

    def drain(self) -> bool:
        """Take every pending change event, without blocking: True when one of them concerns
        the watched file, or when the kernel's queue overflowed (and may have dropped one)."""
        if self._fd is None:
            return False
        relevant = False
        while True:
            try:
                buffer = os.read(self._fd, 65536)
            except BlockingIOError:
                return relevant
            offset = 0
            while offset < len(buffer):
                _, mask, _, length = _HEADER.unpack_from(buffer, offset)
                name = buffer[offset + _HEADER.size : offset + _HEADER.size + length].rstrip(b"\0")
                offset += _HEADER.size + length
                # An overflowed queue has dropped events, ours perhaps: count it as a change.
                relevant = relevant or bool(mask & _IN_Q_OVERFLOW) or name.startswith(self._prefix)

    def close(self) -> None:
        """Close the descriptors; by the thread that waits, once it waits no more. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._fd, self._wake_read, self._wake_write):
                if fd is not None:
                    os.close(fd)
            self._fd = None
