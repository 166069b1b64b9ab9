"""Child process of the lock-deadline tests: a peer that holds the database's write lock.

Usage: hold_lock.py DB

Runs ``BEGIN IMMEDIATE`` on DB, prints "held" once it holds the write lock, and keeps holding it
until its stdin closes (or a line arrives); then rolls back, prints "released" and exits.
``LockHolder`` is the parent's side.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path


class LockHolder:
    """Another process holding ``BEGIN IMMEDIATE`` on ``db`` from construction to ``release``."""

    def __init__(self, db: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        """Let go (idempotent); returns once the peer has rolled back."""
        if self.process.poll() is None:
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.close()
            assert self.process.stdout.readline().strip() == "released"
        assert self.process.wait(30) == 0


def main() -> None:
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    print("held", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()
    print("released", flush=True)


if __name__ == "__main__":
    main()
