"""Child process: a peer that holds the write lock of an SQLite file until told to let go.

Usage: lock_holder.py DB

Takes the lock with ``BEGIN IMMEDIATE``, prints ``locked``, holds it until a line (or EOF)
arrives on stdin, rolls back and prints ``released``. Driven through stdin, so the test decides
how long the lock is held, not a timer."""

from __future__ import annotations

import sqlite3
import sys


def main() -> None:
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()
    print("released", flush=True)


if __name__ == "__main__":
    main()
