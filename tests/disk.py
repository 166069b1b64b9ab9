"""A small disk to run out of: a 4 MB tmpfs mounted for the test (tests run as root), or, where
mounting is refused, a page cap on the file (``EventLog.open(max_page_count=...)``), which is
reported in the figures since it spares the WAL and the filesystem the real thing."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SIZE = 4 * 1024 * 1024
PAGE = 4096
CAP_PAGES = 256  # what freeing raises the cap by, in the fallback (1 MB)


class SmallDisk:
    """The disk at ``root``: ballast fills it (``take``) and is removed (``give_back``)."""

    def __init__(self, root: Path, mounted: bool) -> None:
        self.root = root
        self.mounted = mounted
        self.page_cap: int | None = None if mounted else SIZE // PAGE
        self._ballast = root / "ballast"

    @property
    def log_options(self) -> dict[str, Any]:
        """Options for ``EventLog.open`` on this disk."""
        return {} if self.page_cap is None else {"max_page_count": self.page_cap}

    def take(self, leave: int) -> int:
        """Fill the disk with ballast up to ``leave`` free bytes; returns what ``give_back``
        will free (the fallback's cap is a fixed size: what it raises the cap by)."""
        if not self.mounted:
            return CAP_PAGES * PAGE
        stats = os.statvfs(self.root)
        free = stats.f_bavail * stats.f_frsize
        held = {p.name: p.stat().st_size for p in self.root.iterdir()}
        assert free > leave, f"only {free} B free before the ballast: the log holds on to the disk ({held})"
        size = free - leave
        with self._ballast.open("ab") as f:
            try:
                f.write(b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        return self._ballast.stat().st_size

    def give_back(self) -> bool:
        """Free the space; True when the log must be reopened to see it (the fallback's cap is
        set when a connection opens)."""
        if self.mounted:
            self._ballast.unlink(missing_ok=True)
            return False
        assert self.page_cap is not None
        self.page_cap += CAP_PAGES
        return True

    def make_read_only(self) -> None:
        """Remount the tmpfs read-only: the one way to deny root a write."""
        assert self.mounted
        subprocess.run(["mount", "-o", "remount,ro", str(self.root)], check=True)


@contextmanager
def small_disk(root: Path) -> Iterator[SmallDisk]:
    """Mount a tmpfs of ``SIZE`` at ``root`` for the block (unmounted afterwards, even on failure),
    or fall back to a page cap where ``mount`` fails."""
    root.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(root)],
                            capture_output=True, text=True)
    disk = SmallDisk(root, mounted=result.returncode == 0)
    if not disk.mounted:
        print(f"mount -t tmpfs failed ({result.stderr.strip()}): falling back to max_page_count={disk.page_cap}")
    try:
        yield disk
    finally:
        if disk.mounted:
            subprocess.run(["umount", "-l", str(root)], check=True)
