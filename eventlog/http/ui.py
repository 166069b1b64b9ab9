"""``/ui``: the web inspector, static files that call the HTTP API from the browser.

A ``Mount`` of ``StaticFiles``, not an ``ApiRoute``: the files are open to anyone (they hold no
data) and stay out of ``/openapi.json``; the runs and events the page fetches are guarded like
any client's requests, with the token the person enters. Plain HTML, CSS and JavaScript shipped
in the package, so it works offline, with no build step and nothing fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

FILES = Path(__file__).with_name("ui")

routes = [Mount("/ui", app=StaticFiles(directory=FILES, html=True), name="ui")]
