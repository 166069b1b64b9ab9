"""Wake-ups when another process writes the database file, without polling.

On Linux, inotify reports every write to the WAL (and to the main file at checkpoints); the event
loop watches the inotify descriptor, so an idle process spends no CPU at all. Elsewhere, and as a
safety net everywhere, a slow timer fires as well. A wake-up only says "look again": the change
feed then asks the database what actually changed.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
import sys
from pathlib import Path

_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_HEADER = struct.Struct("iIII")


class FileWatch:
    """An asyncio.Event set whenever a file beginning with ``path``'s name changes."""

    def __init__(self, path: Path) -> None:
        self._directory = path.parent
        self._prefix = path.name.encode()
        self.changed = asyncio.Event()
        self._fd: int | None = None

    @property
    def active(self) -> bool:
        """True when change events arrive (inotify), False when only the fallback timer runs."""
        return self._fd is not None

    def start(self) -> None:
        if not sys.platform.startswith("linux"):
            return
        libc_name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(libc_name, use_errno=True)
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
        asyncio.get_running_loop().add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        assert self._fd is not None
        try:
            buffer = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        while offset < len(buffer):
            _, _, _, length = _HEADER.unpack_from(buffer, offset)
            name = buffer[offset + _HEADER.size : offset + _HEADER.size + length].rstrip(b"\0")
            offset += _HEADER.size + length
            if name.startswith(self._prefix):
                self.changed.set()

    def close(self) -> None:
        if self._fd is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
