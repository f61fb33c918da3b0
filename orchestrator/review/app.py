"""The review app: a Starlette application serving one spec's review page, its JSON and its files.

Security, because a page on loopback is still reachable from every other site open in the same browser:

- a random token, given in the printed address, is required on every request: the first ``GET /?token=...`` sets it
  as a cookie (``HttpOnly``, ``SameSite=Strict``: another site's requests do not carry it) and redirects to the
  address without it; every ``POST`` must also carry it in the ``X-Review-Token`` header, which no other origin can
  add without a CORS preflight this app never answers;
- the ``Host`` header must be the address the server listens on (a DNS-rebinding page has its own host name);
- only the output folder's videos and the spec's boards are served: a video path is resolved and must stay inside
  the folder, a board is named by shot and position, never by path;
- every response has a strict Content-Security-Policy (scripts and styles from the app only, nothing inline), and
  the page builds its DOM with ``textContent``: text from specs and stores is never markup.

See docs/review.md.
"""

from __future__ import annotations

import hmac
import html
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.review.api import Review, ShotReview
from orchestrator.review.decisions import REVIEW_STATUSES
from orchestrator.review.takes import TakeRow

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE_PREFIX = "orchestrator_review_"  # + the port: cookies ignore ports, and two reviews may be open at once
TOKEN_HEADER = "x-review-token"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".m4v"})
MAX_BODY = 16_384  # a decision is a few hundred bytes; a note at most 2,000 characters
ACTIONS = ("select", "approve", "retake", "hold")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_name(port: int) -> str:
    return f"{COOKIE_PREFIX}{port}"


def create_app(review: Review, *, token: str, port: int) -> ASGIApp:
    """The app for ``review``, listening on ``127.0.0.1:port`` (it answers that Host and ``localhost:port`` only)."""
    pages = _Pages(review, token)
    app = Starlette(
        routes=[
            Route("/", pages.index),
            Route("/static/{name}", pages.static),
            Route("/favicon.ico", pages.no_icon),
            Route("/api/state", pages.state),
            Route("/api/decide", pages.decide, methods=["POST"]),
            Route("/files/{path:path}", pages.file),
            Route("/boards/{shot}/{index:int}", pages.board),
        ]
    )
    hosts = frozenset({f"127.0.0.1:{port}", f"localhost:{port}"})
    return _Guard(app, token=token, hosts=hosts, cookie=cookie_name(port))


# --- the guard: token, host, headers ----------------------------------------------------------------------------


class _Guard:
    """Pure ASGI middleware: refuses a wrong Host or a missing token before any route runs; adds the headers."""

    def __init__(self, app: ASGIApp, *, token: str, hosts: frozenset[str], cookie: str) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts
        self.cookie = cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        if headers.get("host", "").lower() not in self.hosts:
            return PlainTextResponse("unknown host: open the address `orchestrator review` printed", status_code=421)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope["method"] == "GET" and scope["path"] == "/" and "token" in query:
            if not self._valid(query["token"][0]):
                return PlainTextResponse("wrong token: open the address `orchestrator review` printed", 403)
            # Trade the token in the address for a cookie, and drop it from the address bar and the history.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
            return response
        cookie = _cookies(headers.get("cookie", "")).get(self.cookie, "")
        if not self._valid(cookie):
            return PlainTextResponse("no token: open the address `orchestrator review` printed", status_code=403)
        if scope["method"] not in ("GET", "HEAD") and not self._valid(headers.get(TOKEN_HEADER, "")):
            return PlainTextResponse("a change needs the token in the X-Review-Token header", status_code=403)
        return None

    def _valid(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.token.encode())


def _cookies(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            found.setdefault(name, value)
    return found


# --- the routes -------------------------------------------------------------------------------------------------


class _Pages:
    def __init__(self, review: Review, token: str) -> None:
        self.review = review
        self.token = token

    @property
    def out_dir(self) -> Path:
        return self.review.out_dir.resolve()

    async def index(self, request: Request) -> Response:
        page = _static_text("index.html").replace("{{TOKEN}}", html.escape(self.token, quote=True))
        title = html.escape(f"review: {self.review.project.project}", quote=True)
        return Response(page.replace("{{TITLE}}", title), media_type="text/html; charset=utf-8")

    async def no_icon(self, request: Request) -> Response:
        return Response(status_code=204)  # browsers ask for one; a 404 would be noise in the console

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return PlainTextResponse("not found", status_code=404)
        return Response(_static_text(name), media_type=f"{STATIC_FILES[name]}; charset=utf-8")

    async def state(self, request: Request) -> Response:
        try:
            shots = await anyio.to_thread.run_sync(self._current_shots)
        except OrchestratorError as exc:
            return JSONResponse({"ok": False, "error": _message(exc)}, status_code=500)
        return JSONResponse({"ok": True, **self._state_json(shots)})

    async def decide(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"ok": False, "error": "send JSON"}, status_code=415)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"ok": False, "error": "the request is too large"}, status_code=413)
        try:
            asked = json.loads(body)
            action, shot_id = asked["action"], asked["shot"]
            if action not in ACTIONS or not isinstance(shot_id, str):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"ok": False, "error": f"ask for one of {', '.join(ACTIONS)} on a shot"}, 400)
        try:
            await anyio.to_thread.run_sync(self._decide, action, shot_id, asked)
        except OrchestratorError as exc:
            return JSONResponse({"ok": False, "error": _message(exc)}, status_code=409)
        return await self.state(request)

    def _current_shots(self) -> tuple[ShotReview, ...]:
        # The spec may be edited while the page is open: follow it, so a changed shot's approval shows as stale.
        self.review = self.review.reloaded()
        return self.review.shots()

    def _decide(self, action: str, shot_id: str, asked: dict[str, Any]) -> None:
        take, note = asked.get("take"), asked.get("note")
        if take is not None and (not isinstance(take, int) or isinstance(take, bool)):
            raise _BadRequest("`take` is a number")
        if note is not None and not isinstance(note, str):
            raise _BadRequest("`note` is text")
        if action == "select":
            if take is None:
                raise _BadRequest("pick a take")
            self.review.select(shot_id, take, note=note)
        elif action == "approve":
            self.review.approve(shot_id, take, note=note)
        elif action == "retake":
            self.review.retake(shot_id, note or "")
        else:
            self.review.hold(shot_id, note)

    async def file(self, request: Request) -> Response:
        target = _inside(self.out_dir, request.path_params["path"])
        if target is None or target.suffix.lower() not in VIDEO_SUFFIXES:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(target)

    async def board(self, request: Request) -> Response:
        try:
            shot = self.review.project.shot(request.path_params["shot"])
            image = shot.images[request.path_params["index"]]
        except (KeyError, IndexError):
            return PlainTextResponse("not found", status_code=404)
        if image.path is None or not image.path.is_file():
            return PlainTextResponse("not found", status_code=404)
        media = {"PNG": "image/png", "JPEG": "image/jpeg"}.get(image.format or "", "application/octet-stream")
        return FileResponse(image.path, media_type=media)

    # --- JSON for the page ------------------------------------------------------------------------------------

    def _state_json(self, shots: tuple[ShotReview, ...]) -> dict[str, Any]:
        data = {
            "project": self.review.project.project,
            "decisions": self.review.decisions_file.name,
            "statuses": list(REVIEW_STATUSES),
            "shots": [self._shot_json(shot) for shot in shots],
        }
        return data

    def _shot_json(self, review: ShotReview) -> dict[str, Any]:
        shot = review.shot
        data = review.to_json()
        data["boards"] = [
            {"url": f"/boards/{quote(shot.id, safe='')}/{index}", "ref": image.ref}
            for index, image in enumerate(shot.images)
            if image.path is not None
        ]
        data["prompt"] = shot.prompt
        data["negative_prompt"] = shot.negative_prompt
        data["params"] = {
            "model": shot.model,
            "mode": shot.mode,
            "duration": shot.duration,
            "aspect_ratio": shot.aspect_ratio,
            "cfg_scale": shot.cfg_scale,
            "fingerprint": shot.fingerprint[:12],
        }
        data["takes"] = [self._take_json(row) for row in review.takes]
        return data

    def _take_json(self, row: TakeRow) -> dict[str, Any]:
        data = row.to_json()
        data["url"] = f"/files/{quote(row.video)}" if row.video else None
        request = row.render.request
        data["prompt"] = request.get("prompt")
        data["params"] = {key: request.get(key) for key in ("mode", "duration", "aspect_ratio") if key in request}
        return data


class _BadRequest(OrchestratorError):
    """A decision asked for in a way the page never sends (a hand-made request)."""


def _message(exc: OrchestratorError) -> str:
    if isinstance(exc, SpecError):
        return "; ".join(problem.format() for problem in exc.problems)
    return exc.message


def _inside(folder: Path, relative: str) -> Path | None:
    """``folder/relative`` resolved, if it is a regular file inside ``folder`` (no ``..``, no symlink out)."""
    if "\0" in relative or relative.startswith("/"):
        return None
    try:
        target = (folder / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if not target.is_relative_to(folder) or not target.is_file():
        return None
    return target


def _static_text(name: str) -> str:
    return resources.files("orchestrator.review").joinpath("static", name).read_text(encoding="utf-8")
