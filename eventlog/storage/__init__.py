"""The storage layer: the SQLite file, migrations, the single writer. Knows nothing of HTTP."""
