"""The PostgreSQL backend, chosen by a ``postgresql://`` (or ``postgres://``) database URL.

Several server processes, on as many machines, share one PostgreSQL database: appends commit
there, ``LISTEN/NOTIFY`` wakes every process' streams. The modules: ``storage`` (the ``Storage``
implementation on an asyncpg pool), ``transactions`` (the SQL of writes), ``listen`` (the change
feed), ``migrations`` (``migrations/postgresql/``) and ``errors`` (asyncpg failures, typed).

This module imports no third-party package: ``is_postgres_url`` is asked for every path.
"""

from __future__ import annotations

import os

SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    """True for a PostgreSQL URL; anything else is the path of an SQLite file."""
    return isinstance(location, str) and location.startswith(SCHEMES)
