"""The annotation server: the page and its API for one session, on the user's own machine.

:func:`create_app` builds a Starlette application around a session; it keeps no state of its own.
Every request must carry the session's token (the ``token`` query parameter, or the
``X-Swiftcuda-Token`` header that the page sends): without it the answer is 403. Request bodies
are read up to a bound (a frame's mask, or a small JSON object) and refused past it (413). The API
names frames by index and export folders by name under ``--out``, so it reads and writes INPUT's
frames and ``--out`` only; a path that would lead elsewhere is refused (403). A request the session
cannot take is answered with a status and a one-line ``{"error": ...}``, never by stopping the
server.

API (JSON unless said otherwise; masks are (H, W) uint8 labels, row-major, one byte a pixel):

    GET    /                               the page
    GET    /static/NAME                    the page's scripts and style
    GET    /api/session                    the video: frames, names, size, fps; --out
    GET    /api/status                     objects, every frame's kind (run-length), the run's progress,
                                           where the next run would start
    GET    /api/frames/I/image             frame I as a picture
    GET    /api/frames/I/mask              frame I's labels (Content-Encoding: deflate; X-Mask-Kind
                                           given, predicted or stale; 204 when it has none)
    PUT    /api/frames/I/mask              frame I's labels as given (body: H*W bytes)
    DELETE /api/frames/I/mask              frame I's given mask removed
    POST   /api/frames/I/grabcut           {"box": [x0, y0, x1, y1]} -> the object in the box (H*W bytes, 0 or 1)
    POST   /api/objects                    {"name": optional} -> {"id", "name"}
    PATCH  /api/objects/ID                 {"name"}
    DELETE /api/objects/ID                 the object leaves every mask
    POST   /api/propagate                  start a run -> {"start", "chain_start", "fresh"}
    POST   /api/stop                       stop the run after the frame in progress
    POST   /api/export                     {"name": "masks", "overwrite": false} -> what was written (409: an
                                           earlier export is there)
    GET    /api/out/PATH                   a file under --out (an export's overlay video)
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, quote

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from swiftcuda.annotate.errors import Forbidden, NotFound, RequestError, TooLarge
from swiftcuda.annotate.export import DEFAULT_NAME, export_session, export_targets
from swiftcuda.annotate.grabcut import grabcut_box
from swiftcuda.annotate.propagate import Propagator
from swiftcuda.annotate.session import NONE, AnnotationSession, compress_labels
from swiftcuda.errors import InputError

logger = logging.getLogger(__name__)

TOKEN_HEADER = "x-swiftcuda-token"
#: The largest JSON body a request may carry.
JSON_LIMIT = 64 * 1024
STATIC_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_NO_STORE = {"Cache-Control": "no-store"}


def new_token() -> str:
    """A random token for one run of the server."""
    return secrets.token_urlsafe(24)


def static_folder() -> Path:
    """The page's files, shipped inside the package."""
    return Path(str(resources.files("swiftcuda.annotate") / "static"))


# -- the token ---------------------------------------------------------------------------------


class TokenGate:
    """ASGI middleware: every HTTP request without the token is answered 403 (nothing else runs)."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            response = JSONResponse(
                {"error": "no valid token: open the address swiftcuda annotate printed (it ends with ?token=...)"},
                status_code=403,
            )
            await response(scope, receive, send)
            return
        if scope["type"] == "websocket":  # none here
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope) -> bool:
        given = dict(scope["headers"]).get(TOKEN_HEADER.encode())
        if given is None:
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            given = values[-1].encode() if values else b""
        return secrets.compare_digest(given, self._token)


# -- requests ----------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused past ``limit`` bytes (announced or sent).

    Raises:
        TooLarge: the body is longer than ``limit``.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is {declared} bytes, more than the {limit} this request takes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is more than the {limit} bytes this request takes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> dict:
    """The request's JSON object (an empty body is {}).

    Raises:
        RequestError: not a JSON object. TooLarge: over :data:`JSON_LIMIT`.
    """
    body = await read_body(request, JSON_LIMIT)
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"the request body is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    return data


def _field(data: dict, name: str, kind: type, default=None):
    value = data.get(name, default)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise RequestError(f"{name!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_NO_STORE)


Handler = Callable[[Request], Awaitable[Response]]


def _answers_errors(handler: Handler) -> Handler:
    """The handler, with every failure answered as ``{"error": ...}`` and the right status."""

    async def handle(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as error:
            return _error(error.status, str(error))
        except InputError as error:
            return _error(400, str(error))
        except Exception as error:  # a bug: logged in full, answered in one line, the server goes on
            logger.exception("%s %s failed", request.method, request.url.path)
            return _error(500, f"internal error: {type(error).__name__}: {error}")

    return handle


# -- the application ---------------------------------------------------------------------------


def create_app(session: AnnotationSession, propagator: Propagator, token: str, out: Path) -> Starlette:
    """The server's ASGI application for ``session``.

    Args:
        session: the session the page edits.
        propagator: runs the engine over the session's video.
        token: the secret every request must carry.
        out: the --out folder (exports go there; the session's folder is inside it).
    """
    frames = session.frames
    height, width = frames.size
    static = static_folder()

    def frame_index(request: Request) -> int:
        index = request.path_params["index"]
        if not 0 <= index < len(frames):
            raise NotFound(f"frame {index} is out of range: the video has frames 0 to {len(frames) - 1}")
        return index

    async def page(request: Request) -> Response:
        return HTMLResponse(*render_page(static, token))

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        path = static / name
        if "/" in name or "\\" in name or name.startswith(".") or not path.is_file() or path.suffix not in STATIC_TYPES:
            raise NotFound(f"no page file {name!r}")
        return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})

    async def session_info(request: Request) -> Response:
        return JSONResponse(
            {
                "input": str(frames.path),
                "out": str(out),
                "session": str(session.folder),
                "frames": len(frames),
                "names": frames.names,
                "size": [height, width],
                "fps": frames.fps,
            },
            headers=_NO_STORE,
        )

    async def status(request: Request) -> Response:
        try:
            plan = session.plan()
            next_run = {"start": plan.start, "chain_start": plan.chain_start, "fresh": plan.fresh}
        except RequestError as error:
            next_run = {"error": str(error)}
        return JSONResponse(
            {"session": session.describe(), "run": propagator.status(), "plan": next_run}, headers=_NO_STORE
        )

    async def picture(request: Request) -> Response:
        content, media_type = await run_in_threadpool(frames.picture, frame_index(request))
        headers = {"Cache-Control": "private, max-age=86400"}
        if isinstance(content, Path):
            return FileResponse(content, media_type=media_type, headers=headers)
        return Response(content, media_type=media_type, headers=headers)

    async def get_mask(request: Request) -> Response:
        kind, payload = session.mask_payload(frame_index(request))
        headers = {**_NO_STORE, "X-Mask-Kind": kind}
        if kind == NONE or payload is None:
            return Response(status_code=204, headers=headers)
        return Response(
            payload, media_type="application/octet-stream", headers={**headers, "Content-Encoding": "deflate"}
        )

    async def put_mask(request: Request) -> Response:
        index = frame_index(request)
        body = await read_body(request, height * width)
        if len(body) != height * width:
            raise RequestError(
                f"the mask is {len(body)} bytes: send {height}x{width} = {height * width} bytes, one label a pixel"
            )
        labels = np.frombuffer(body, dtype=np.uint8).reshape(height, width)
        await run_in_threadpool(session.set_given, index, labels)
        return JSONResponse({"frame": index, "kind": session.kind(index)}, headers=_NO_STORE)

    async def delete_mask(request: Request) -> Response:
        index = frame_index(request)
        await run_in_threadpool(session.clear_given, index)
        return JSONResponse({"frame": index, "kind": session.kind(index)}, headers=_NO_STORE)

    async def grabcut(request: Request) -> Response:
        index = frame_index(request)
        box = (await read_json(request)).get("box")
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        ):
            raise RequestError('give the box as {"box": [x0, y0, x1, y1]} in pixels')
        image = await run_in_threadpool(frames.image, index)
        mask = await run_in_threadpool(grabcut_box, image, tuple(int(round(v)) for v in box))
        return Response(
            compress_labels(mask.astype(np.uint8)),
            media_type="application/octet-stream",
            headers={**_NO_STORE, "Content-Encoding": "deflate", "X-Mask-Pixels": str(int(mask.sum()))},
        )

    async def add_object(request: Request) -> Response:
        name = _field(await read_json(request), "name", str)
        object_id = await run_in_threadpool(session.add_object, name)
        return JSONResponse({"id": object_id, "name": session.objects[object_id]}, headers=_NO_STORE)

    async def rename_object(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        name = _field(await read_json(request), "name", str)
        if name is None:
            raise RequestError('give the new name as {"name": "..."}')
        await run_in_threadpool(session.rename_object, object_id, name)
        return JSONResponse({"id": object_id, "name": session.objects[object_id]}, headers=_NO_STORE)

    async def remove_object(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        await run_in_threadpool(session.remove_object, object_id)
        return JSONResponse({"removed": object_id}, headers=_NO_STORE)

    async def propagate(request: Request) -> Response:
        plan = await run_in_threadpool(propagator.start)
        return JSONResponse(
            {"start": plan.start, "chain_start": plan.chain_start, "fresh": plan.fresh}, headers=_NO_STORE
        )

    async def stop(request: Request) -> Response:
        propagator.stop()
        return JSONResponse({"stopping": propagator.running}, headers=_NO_STORE)

    async def export(request: Request) -> Response:
        data = await read_json(request)
        name = _field(data, "name", str, DEFAULT_NAME)
        overwrite = _field(data, "overwrite", bool, False)
        masks, overlay = export_targets(out, name, session.folder)
        report = await run_in_threadpool(export_session, session, masks, overlay, overwrite)
        root = out.resolve()
        return JSONResponse(
            {
                "masks": str(report.masks),
                "overlay": str(report.overlay),
                "frames": report.frames,
                "without_mask": report.without_mask,
                "stale": report.stale,
                "overlay_url": f"api/out/{quote(str(report.overlay.relative_to(root)))}",
            },
            headers=_NO_STORE,
        )

    async def out_file(request: Request) -> Response:
        relative = request.path_params["path"]
        root = out.resolve()
        path = (root / relative).resolve()
        if path != root and root not in path.parents:
            raise Forbidden(f"{relative} is outside {out}: only files under --out are served")
        if not path.is_file():
            raise NotFound(f"no file {relative} under {out}")
        return FileResponse(path, headers=_NO_STORE)

    routes = [
        Route("/", page),
        Route("/static/{name:path}", _answers_errors(static_file)),
        Route("/api/session", _answers_errors(session_info)),
        Route("/api/status", _answers_errors(status)),
        Route("/api/frames/{index:int}/image", _answers_errors(picture)),
        Route("/api/frames/{index:int}/mask", _answers_errors(get_mask), methods=["GET"]),
        Route("/api/frames/{index:int}/mask", _answers_errors(put_mask), methods=["PUT"]),
        Route("/api/frames/{index:int}/mask", _answers_errors(delete_mask), methods=["DELETE"]),
        Route("/api/frames/{index:int}/grabcut", _answers_errors(grabcut), methods=["POST"]),
        Route("/api/objects", _answers_errors(add_object), methods=["POST"]),
        Route("/api/objects/{object_id:int}", _answers_errors(rename_object), methods=["PATCH"]),
        Route("/api/objects/{object_id:int}", _answers_errors(remove_object), methods=["DELETE"]),
        Route("/api/propagate", _answers_errors(propagate), methods=["POST"]),
        Route("/api/stop", _answers_errors(stop), methods=["POST"]),
        Route("/api/export", _answers_errors(export), methods=["POST"]),
        Route("/api/out/{path:path}", _answers_errors(out_file)),
    ]

    async def not_found(request: Request, exc) -> Response:
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    app.add_middleware(TokenGate, token=token)
    return app


def render_page(static: Path, token: str) -> tuple[str, int, dict]:
    """The page's HTML with the token in its module import map, and its response headers.

    The page's modules import each other by bare names ("annotate/api.js"), which the import map
    resolves to URLs carrying the token, so no module is loaded without it.
    """
    modules = sorted(path.name for path in static.glob("*.js"))
    imports = {f"annotate/{name}": f"/static/{name}?token={quote(token)}" for name in modules}
    import_map = json.dumps({"imports": imports}, indent=1)
    html = (static / "index.html").read_text(encoding="utf-8")
    html = html.replace("{{IMPORT_MAP}}", import_map).replace("{{TOKEN}}", quote(token))
    digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    policy = (
        f"default-src 'self'; script-src 'self' 'sha256-{digest}'; img-src 'self' blob: data:; "
        "style-src 'self'; connect-src 'self'; media-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    return html, 200, {**_NO_STORE, "Content-Security-Policy": policy, "Referrer-Policy": "no-referrer"}
