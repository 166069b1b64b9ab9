"""Access control: the producers' API keys and the readers' run-scoped JWTs.

* ``EVENTLOG_API_KEY`` (one or more, comma-separated): a bearer key that may do everything.
* ``EVENTLOG_JWT_SECRET`` (HS256), or ``EVENTLOG_JWT_PUBLIC_KEY`` (RS256/ES256): a bearer JWT with
  ``{"eventlog": {"subscribe": ["<run id or glob>", ...]}, "exp": ...}`` may read matching runs.

With neither configured the server is open (and ``eventlog serve`` refuses to listen beyond
loopback without ``--insecure``). Each route states what it needs in the route table, through
``guard``; missing or bad credentials are a 401, good credentials used outside their scope 403.
Browsers' ``EventSource`` cannot set headers, so the credential may also come as the
``access_token`` query parameter, which the access log redacts.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from eventlog.http.errors import ApiError

Handler = Callable[[Request], Awaitable[Response]]
CLAIM = "eventlog"


class Need(Enum):
    OPEN = "open"
    """No credentials (``/healthz``)."""
    ANY = "any"
    """Any valid credential; what it may see is filtered by the handler (``GET /runs`` hands the
    token's globs to the log's query)."""
    READ_RUN = "read_run"
    """Reading the run named in the path: the API key, or a token whose globs match it."""
    PRODUCER = "producer"
    """Writing, deleting, operating: the API key only."""

    @property
    def statuses(self) -> tuple[int, ...]:
        """What ``guard`` itself may answer for this need (the OpenAPI description lists them):
        401 without valid credentials, 403 for credentials used outside their scope."""
        return {Need.OPEN: (), Need.ANY: (401,)}.get(self, (401, 403))


@dataclass(frozen=True, slots=True)
class Access:
    """What the caller may do."""

    producer: bool
    run_globs: tuple[str, ...] = ()

    def can_read(self, run_id: str) -> bool:
        return self.producer or any(fnmatch.fnmatchcase(run_id, glob) for glob in self.run_globs)


FULL_ACCESS = Access(producer=True)


@dataclass(frozen=True)
class Authenticator:
    api_keys: tuple[str, ...] = ()
    jwt_key: str | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)

    @property
    def enabled(self) -> bool:
        return bool(self.api_keys) or self.jwt_key is not None

    def authenticate(self, request: Request) -> Access:
        if not self.enabled:
            return FULL_ACCESS
        credential = _credential(request)
        if credential is None:
            raise _unauthorized("missing credentials: send Authorization: Bearer <key or token>")
        if self._is_api_key(credential):
            return FULL_ACCESS
        if self.jwt_key is None or credential.count(".") != 2:
            raise _unauthorized("invalid API key")
        grant = _verified_claims(credential, self.jwt_key, self.jwt_algorithms).get(CLAIM)
        globs = grant.get("subscribe") if isinstance(grant, dict) else None
        if not isinstance(globs, list) or not all(isinstance(g, str) for g in globs):
            raise _unauthorized(f'invalid token: no "{CLAIM}.subscribe" list of run ids or globs')
        return Access(producer=False, run_globs=tuple(globs))

    def _is_api_key(self, credential: str) -> bool:
        # Compare against every key, always, in constant time: timing reveals nothing.
        matched = False
        for key in self.api_keys:
            matched |= hmac.compare_digest(credential.encode(), key.encode())
        return matched


def _verified_claims(token: str, key: str, algorithms: Sequence[str]) -> dict[str, object]:
    """The claims of a token whose signature and expiry check out. PyJWT is imported here, at
    the first token: it loads ``cryptography`` (some 10 MB of a server's memory), which a server
    without reader tokens never needs."""
    import jwt

    try:
        return jwt.decode(token, key, algorithms=list(algorithms), options={"require": ["exp"]})
    except jwt.ExpiredSignatureError:
        raise _unauthorized("the token has expired") from None
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"invalid token: {exc}") from None


def _credential(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <key or token>'")
        return value.strip()
    return request.query_params.get("access_token") or None


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="eventlog"'})


def access(request: Request) -> Access:
    return request.scope["eventlog.access"]


def guard(handler: Handler, need: Need) -> Handler:
    """Wrap a route handler with the check its route needs."""

    async def guarded(request: Request) -> Response:
        if need is not Need.OPEN:
            caller = request.app.state.auth.authenticate(request)
            request.scope["eventlog.access"] = caller
            if need is Need.PRODUCER and not caller.producer:
                raise ApiError(403, "forbidden", "this needs the producer API key; a reader token cannot do it")
            if need is Need.READ_RUN and not caller.can_read(request.path_params["run_id"]):
                raise ApiError(403, "forbidden", f"the token does not grant run {request.path_params['run_id']!r}")
        return await handler(request)

    guarded.__name__ = handler.__name__
    guarded.__doc__ = handler.__doc__
    return guarded


def mint_token(secret: str, run_globs: Sequence[str], ttl: float, algorithm: str = "HS256") -> str:
    """A reader token for ``run_globs``, valid for ``ttl`` seconds."""
    now = int(time.time())
    claims = {CLAIM: {"subscribe": list(run_globs)}, "iat": now, "exp": now + int(ttl)}
    import jwt

    return jwt.encode(claims, secret, algorithm=algorithm)


def load_key(value: str) -> str:
    """A PEM key given inline or as the path of a file holding it."""
    if "-----BEGIN" in value:
        return value
    return Path(value).read_text()


_TOKEN_PARAM = re.compile(r"(access_token=)[^&\s\"]*")


def _redacted(value: object) -> object:
    """``value`` with its ``access_token`` values replaced. The substring test first: the access
    log runs this on every field of every request's record, and nearly none holds a token."""
    if isinstance(value, str) and "access_token=" in value:
        return _TOKEN_PARAM.sub(r"\1[redacted]", value)
    return value


class RedactAccessToken(logging.Filter):
    """Keeps ``access_token`` query parameters out of uvicorn's access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(map(_redacted, record.args))
        record.msg = _redacted(record.msg)
        return True


def install_log_redaction() -> None:
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactAccessToken) for f in access_log.filters):
        access_log.addFilter(RedactAccessToken())
