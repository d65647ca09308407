"""HTTP routes beside trame's websocket: uploads, downloads, and the request guard.

* ``POST /freqadv/upload?name=ct.nii.gz``: the raw file as the body, with the session's token in
  the ``X-FreqAdv-Token`` header; answers ``{"id": ...}`` or ``{"error": ...}`` with a 4xx
  status (checks in :mod:`.uploads`). The custom header also keeps other sites out: a browser
  will not send it cross-origin without a CORS preflight, which this server never approves.
* ``GET /freqadv/download/<job token>/<path>``: a file of the finished job's output folder (see
  :mod:`.downloads`), or ``freqadv-results.zip`` with all of them; 404 for anything else.
* ``POST /paraview/``: trame's page first asks this "launcher" address where its websocket is;
  without an answer it logs "405 (Method Not Allowed)" on every load, then guesses. The answer
  is the address it would guess (``/ws`` beside the page, same host and scheme).
* :func:`guard_middleware`: every request, the websocket included, must name an allowed host
  (a DNS-rebinding page gets its own host name refused) and, if it carries an Origin, come from
  this very server (another site's script cannot open the websocket and drive the session).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from .downloads import ARCHIVE_NAME, DownloadError, attachment_name, content_type, resolve_download, write_archive
from .jobs import JobRunner
from .uploads import UploadError, UploadStore

log = logging.getLogger(__name__)

UPLOAD_PATH = "/freqadv/upload"
DOWNLOAD_PREFIX = "/freqadv/download"
TOKEN_HEADER = "X-FreqAdv-Token"
LAUNCHER_PATH = "/paraview/"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
_NO_SNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class Session(Protocol):
    """What the routes need of the app."""

    token: str
    uploads: UploadStore
    jobs: JobRunner


def install_routes(app: web.Application, session: Session, bind_host: str) -> None:
    """Add the guard and the upload/download routes to trame's aiohttp application (before it
    starts: aiohttp freezes both lists then)."""
    app.middlewares.append(guard_middleware(allowed_hostnames(bind_host)))
    app.router.add_post(UPLOAD_PATH, _upload_handler(session))
    app.router.add_get(DOWNLOAD_PREFIX + "/{token}/{path:.+}", _download_handler(session))
    app.router.add_route("*", LAUNCHER_PATH, _launcher)


# --- guard ---------------------------------------------------------------------------------------


def allowed_hostnames(bind_host: str) -> frozenset[str] | None:
    """Host names a request may use: loopback names plus the bound address; None (any) when
    bound to every interface, where the machine's names cannot be listed."""
    if bind_host in _WILDCARD_HOSTS:
        return None
    return LOOPBACK_NAMES | {bind_host.strip("[]").lower()}


def refusal(host: str | None, origin: str | None, allowed: frozenset[str] | None) -> str | None:
    """Why a request with these headers is refused, or None to let it through."""
    if not host:
        return "missing Host header"
    if allowed is not None and _hostname(host) not in allowed:
        return f"host {host!r} is not served here"
    # An Origin, when sent, must be this server; "null" (sandboxed frames, files) is not.
    if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
        return f"cross-origin request from {origin!r} refused"
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guard_middleware(allowed: frozenset[str] | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp middleware refusing (403) what :func:`refusal` refuses."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        reason = refusal(request.headers.get("Host"), request.headers.get("Origin"), allowed)
        if reason is not None:
            log.warning("refused %s %s: %s", request.method, request.path, reason)
            return web.Response(status=403, text=f"forbidden: {reason}\n")
        return await handler(request)

    return guard


def _hostname(host: str) -> str:
    """'127.0.0.1:8080' -> '127.0.0.1', '[::1]:80' -> '::1'."""
    return (urlsplit(f"//{host}").hostname or "").lower()


# --- uploads and downloads -----------------------------------------------------------------------


def _upload_handler(session: Session) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def upload(request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), session.token):
            return _json_error("this upload does not come from the viewer's page", 403)
        try:
            upload_id = await session.uploads.receive(request.query.get("name", ""), request.content_length,
                                                      request.content.iter_chunked(1 << 20))
        except UploadError as err:
            return _json_error(str(err), err.status)
        return web.json_response({"id": upload_id}, headers=_NO_SNIFF)

    return upload


def _download_handler(session: Session) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def download(request: web.Request) -> web.StreamResponse:
        jobs, relative = session.jobs, request.match_info["path"]
        folder = jobs.results_folder
        if folder is None or not secrets.compare_digest(request.match_info["token"], jobs.token or ""):
            raise web.HTTPNotFound(text="no such download: the job is gone or was replaced\n")
        try:
            path = _archive(folder) if relative == ARCHIVE_NAME else resolve_download(folder, relative)
        except DownloadError as err:
            log.warning("refused download %r: %s", relative, err)
            raise web.HTTPNotFound(text="no such file in this job's results\n") from None
        headers = {**_NO_SNIFF, "Content-Type": content_type(path),
                   "Content-Disposition": f'attachment; filename="{attachment_name(relative)}"'}
        return web.FileResponse(path, headers=headers)

    return download


def websocket_url(page_path: str) -> str:
    """The page's websocket, as trame's client derives it: ``ws`` beside the page. USE_HOST is
    filled in by the client with its own host, and the scheme becomes wss under https."""
    path = urlsplit(page_path).path or "/"
    if path.endswith((".html", ".htm")):
        path = path.rsplit("/", 1)[0]
    return f"ws://USE_HOST{path.rstrip('/')}/ws"


async def _launcher(request: web.Request) -> web.Response:
    # The page's own address (behind a proxy's path prefix too) is the Referer; else the root.
    return web.json_response({"sessionURL": websocket_url(request.headers.get("Referer", "/"))}, headers=_NO_SNIFF)


def _archive(results: Any) -> Any:
    """The job's zip, beside (not inside) its results folder, made on first request."""
    target = results.parent / ARCHIVE_NAME
    return target if target.is_file() else write_archive(results, target)


def _json_error(message: str, status: int) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_NO_SNIFF)
