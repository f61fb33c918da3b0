"""One client for every Kling-compatible provider: the ``Provider`` protocol over ``wire`` and ``http``.

A provider is this class with four settings (docs/wire.md): its base URL, its route prefix (``/kling`` through
CometAPI, none at Kling), its auth (an ``httpx.Auth`` that also names the secrets to scrub from messages) and its
``Capabilities``. ``orchestrator.providers.cometapi`` and ``orchestrator.providers.kling`` are those settings and
their environment; a third provider is one more small file like them.

It never retries on its own (the scheduler decides, from the error's class), with one exception owned by the auth:
Kling's JWT is signed afresh and the call sent once more on 1003/1004. Secrets live in the auth object and nowhere
else: not in ``repr``, not in messages, not in logs; downloads to another origin than the API's never carry them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import anyio.to_thread
import httpx

from orchestrator.errors import ShotRejectedError, TaskNotFoundError
from orchestrator.providers import http
from orchestrator.providers.base import DEFAULT_MAX_DOWNLOAD_BYTES, MAX_LIST_PAGE, Capabilities, Download, Task
from orchestrator.providers.classify import Hints, Operation, network_error
from orchestrator.providers.wire import (
    TASKS_PATH,
    Base64Cache,
    ListReader,
    Reply,
    all_encoded,
    encoded_body,
    parse_task,
    read_reply,
    with_external_id,
)
from orchestrator.spec.fingerprint import external_task_id as default_external_id
from orchestrator.spec.shot import ResolvedShot

__all__ = ["Dialect", "ProviderClient", "SecretAuth"]

logger = logging.getLogger(__name__)


class SecretAuth(httpx.Auth):
    """An ``httpx.Auth`` that knows its secrets, so that the client can scrub them from every message."""

    def secrets(self) -> Sequence[str]:
        return ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<hidden>)"


@dataclass(frozen=True)
class Dialect:
    """How a provider spells the Kling routes, and which of its settings a message points the user at."""

    route_prefix: str
    hints: Hints

    @property
    def route(self) -> str:
        return f"{self.route_prefix}{TASKS_PATH}"


class ProviderClient:
    """Kling multi-image-to-video over one ``httpx.AsyncClient``. Use as ``async with``.

    Every method makes one HTTP call (``find_task`` up to three; the auth may resend once) and raises
    ``orchestrator.errors`` types.
    """

    # The ways to look a task up by external id (docs/wire.md), in the order first tried; see ``_lookup_request``.
    LOOKUP_FORMS: tuple[str, ...] = ("path", "path-flag", "query")

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        dialect: Dialect,
        auth: SecretAuth,
        capabilities: Capabilities,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout = http.DEFAULT_TIMEOUT,
        max_connections: int = http.DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.name = name
        self.capabilities = capabilities
        self.dialect = dialect
        self.base_url = http.checked_base_url(base_url, setting=dialect.hints.base_url, key_setting=dialect.hints.key)
        self._auth = auth
        self._origin = httpx.URL(self.base_url)
        self._cache = Base64Cache()
        self._lookup_form: str | None = None
        self._lists = ListReader()
        self._client = http.build_client(
            base_url=self.base_url, auth=auth, transport=transport, timeout=timeout, max_connections=max_connections
        )

    @property
    def route(self) -> str:
        return self.dialect.route

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- the protocol ---------------------------------------------------------------------------------------------

    async def create_task(self, shot: ResolvedShot, *, external_task_id: str | None = None) -> Task:
        external = external_task_id or default_external_id(shot)
        # Reading, hashing and encoding up to four 10 MB images (and the JSON around them) stays off the event loop;
        # when every image is already encoded in the cache, the body is a small JSON dump, cheaper than the hop.
        encode = partial(encoded_body, shot, external_task_id=external, cache=self._cache)
        content = encode() if all_encoded(shot, self._cache) else await anyio.to_thread.run_sync(encode)
        reply = await self._call("POST", self.route, content=content, operation="create")
        task = parse_task(reply.data, request_id=reply.request_id)
        if task.external_task_id is None:
            # Some answers leave task_info empty; the id we sent is still the task's.
            task = with_external_id(task, external)
        return task

    async def get_task(self, task_id: str) -> Task:
        path = f"{self.route}/{quote(task_id, safe='')}"
        reply = await self._call("GET", path, operation="get", task_id=task_id)
        return parse_task(reply.data, request_id=reply.request_id)

    async def list_tasks(self, *, page_size: int) -> list[Task]:
        """The most recent tasks, newest first: one call, whose ``data`` must be an array of tasks.

        Kling documents this route; the CometAPI gateway does not (its ``capabilities`` say so), so an answer of any
        other shape is a ``ShotRejectedError`` (a definite "this provider does not list"), and items that are not
        tasks are skipped.
        """
        size = min(max(1, page_size), MAX_LIST_PAGE)
        params = {"pageNum": "1", "pageSize": str(size)}
        reply = await self._call("GET", self.route, params=params, operation="list")
        if not isinstance(reply.data, list):
            message = "the provider does not list tasks (its answer is not a list)"
            raise ShotRejectedError(message, request_id=reply.request_id)
        return self._lists.read(reply.data, request_id=reply.request_id)

    async def find_task(self, external_task_id: str) -> Task | None:
        """Try the lookup forms (the one that worked last time first); ``None`` if none finds the task.

        A form the provider does not support looks like "not found", so every form is tried before concluding.
        Transient and account errors propagate: "could not ask" must never be mistaken for "not there".
        """
        forms = sorted(self.LOOKUP_FORMS, key=lambda form: form != self._lookup_form)
        for form in forms:
            task = await self._find_with(form, external_task_id)
            if task is not None:
                self._lookup_form = form
                return task
        return None

    async def download(self, url: str, dest: Path, *, max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES) -> Download:
        """Stream ``url`` into ``dest`` (see ``orchestrator.providers.http.download``); the auth goes only to the
        API's own origin, never to a CDN."""
        return await http.download(self._client, url, dest, origin=self._origin, max_bytes=max_bytes)

    # --- internals ------------------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        operation: Operation,
        task_id: str | None = None,
    ) -> Reply:
        """One API call: the success answer's ``Reply``, or a classified error."""
        try:
            response = await self._client.request(method, path, content=content, params=params)
        except httpx.HTTPError as exc:
            logger.debug("%s %s failed: %s", method, path, type(exc).__name__)
            raise network_error(exc, operation=operation, task_id=task_id) from None
        logger.debug("%s %s -> HTTP %s", method, path, response.status_code)
        return read_reply(
            response,
            operation=operation,
            task_id=task_id,
            secret=self._auth.secrets(),
            hints=self.dialect.hints,
        )

    async def _find_with(self, form: str, external_task_id: str) -> Task | None:
        path, params = self._lookup_request(form, external_task_id)
        try:
            reply = await self._call("GET", path, params=params, operation="find")
        except (TaskNotFoundError, ShotRejectedError):
            return None  # this form says "no such task", or is not understood here
        return _match(
            reply.data, external_task_id=external_task_id, by_path=form != "query", request_id=reply.request_id
        )

    def _lookup_request(self, form: str, external_task_id: str) -> tuple[str, dict[str, str] | None]:
        path = f"{self.route}/{quote(external_task_id, safe='')}"
        if form == "path":
            return path, None
        if form == "path-flag":
            return path, {"external_task_id": "true"}
        return self.route, {"external_task_id": external_task_id}


def _match(data: object, *, external_task_id: str, by_path: bool, request_id: str | None) -> Task | None:
    """The task in a lookup answer that is ours, if any.

    A list (or a server that ignored our query and listed everything) must name our id; a by-path answer that
    names no external id is accepted, since the server found it under the id we gave.
    """
    candidates = data if isinstance(data, list) else [data]
    for item in candidates:
        if not isinstance(item, Mapping) or not item.get("task_id"):
            continue
        task = parse_task(item, request_id=request_id)
        if task.external_task_id == external_task_id:
            return task
        if task.external_task_id is None and by_path and not isinstance(data, list):
            return with_external_id(task, external_task_id)
    return None
