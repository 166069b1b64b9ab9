"""``uvicorn server:app``: the eventlog server, configured from ``EVENTLOG_*`` variables."""

from eventlog.http.app import create_app

app = create_app()
