"""``/ui``: the web inspector, static files that call the HTTP API from the browser.

The files are open to anyone (they hold no data); the runs and events the page fetches are
guarded like any client's requests, with the token the person enters. They are this package's
data (plain HTML, CSS and JavaScript: no build step, nothing fetched from elsewhere, so it works
offline), served by name: only the shipped files, never the package's other contents. A
``Mount`` of plain routes, not ``ApiRoute``s, so ``/openapi.json`` leaves them out.
"""

from __future__ import annotations

from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route

FILES = Path(__file__).parent
SHIPPED = {"": "index.html", "index.html": "index.html", "app.js": "app.js", "style.css": "style.css"}
"""What each path under ``/ui/`` serves."""


async def asset(request: Request) -> Response:
    """``no-cache``: a browser revalidates, so a page never mixes files of two versions."""
    name = SHIPPED.get(request.path_params["name"])
    if name is None:
        raise HTTPException(404, f"the inspector has no file {request.path_params['name']!r}")
    return FileResponse(FILES / name, headers={"Cache-Control": "no-cache"})


routes = [Mount("/ui", routes=[Route("/{name:path}", asset, methods=["GET"])], name="ui")]
