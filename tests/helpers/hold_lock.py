"""Child process of the lock-deadline tests: a peer that holds the database's write lock.

Usage: hold_lock.py DB

Runs ``BEGIN IMMEDIATE`` on DB, prints "held" once it holds the write lock, and keeps holding it
until its stdin closes (or a line arrives); then rolls back, prints "released" and exits.
"""

from __future__ import annotations

import sqlite3
import sys


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
