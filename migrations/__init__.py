"""eventlog's SQL migrations, ``NNNN_name.sql``: installed as the package ``eventlog.migrations``
so that ``importlib.resources`` finds them in a wheel and in a source checkout alike."""
