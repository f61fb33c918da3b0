"""Turning a provider's answer into one of our errors: business code first, HTTP status second.

HTTP 429 carries both retryable codes (1302, 1303) and final ones (1100-1102), so the business code decides whenever
there is one. The error shapes are those of docs/wire.md ("Errors"): Kling's envelope ``{"code", "message",
"request_id"}``, the gateway's ``{"error": {"message", "type", "param", "code"}}`` and its task errors
``{"code": "task_not_exist", "message", "data"}`` (a string code; an upstream Kling error comes as JSON text inside
``message``, and is classified on the Kling code inside). HTML or other non-JSON answers come from proxies, gateways
or a wrong base URL. Every message is scrubbed of the provider's secrets (and anything that looks like a bearer token,
an ``sk-`` key or a JWT) before it goes into an exception.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal

import httpx

from orchestrator.errors import (
    AccountError,
    ConcurrencyLimitError,
    DuplicateExternalIdError,
    ModelNotEnabledError,
    NetworkError,
    ProviderError,
    RateLimitedError,
    ServerError,
    ShotRejectedError,
    TaskNotFoundError,
    TransientError,
    UpstreamSaturatedError,
)

Operation = Literal["create", "get", "find", "list"]


Secrets = str | Iterable[str] | None
"""What to scrub from messages: one secret, several (an access key, a secret key, a signed token), or none."""

_MAX_PROVIDER_MESSAGE = 300
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_SK_TOKEN = re.compile(r"sk-[A-Za-z0-9_\-]{6,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]*)?")
_RATE_LIMIT_WORDS = ("rate_limit", "rate limit", "too_many", "too many requests")
_DUPLICATE_HINTS = ("external_task_id", "external task id", "duplicate", "already exist")

# ``{key}`` and ``{url}`` name the provider's own settings (``Hints``); they are filled in when a message is composed.
_KEY_ADVICE = "check {key}"
_ACCOUNT_ADVICE = "top up or fix the account"
_URL_ADVICE = "is {url} right?"


@dataclass(frozen=True)
class Hints:
    """Which settings an error message tells the user to check: the provider's own environment variables."""

    key: str = "COMETAPI_KEY"
    base_url: str = "COMETAPI_BASE_URL"


COMETAPI_HINTS = Hints()


@dataclass(frozen=True)
class _Rule:
    """One row of the classification table: which error, and what to tell the user."""

    kind: type[ProviderError]
    summary: str


_CODE_RULES: tuple[tuple[range, _Rule], ...] = (
    (range(1000, 1003), _Rule(AccountError, f"authentication failed: {_KEY_ADVICE}")),
    (range(1003, 1005), _Rule(AccountError, f"the token is not valid yet or has expired: {_KEY_ADVICE}")),
    (range(1100, 1103), _Rule(AccountError, f"account problem (arrears or resource pack used up): {_ACCOUNT_ADVICE}")),
    (range(1103, 1104), _Rule(AccountError, "no permission for this API or model: check the account's access")),
    (range(1104, 1105), _Rule(AccountError, f"the provider refused the account: {_ACCOUNT_ADVICE}")),
    (range(1200, 1204), _Rule(ShotRejectedError, "the provider rejected the request")),
    (range(1300, 1302), _Rule(ShotRejectedError, "refused by the provider's content or platform policy")),
    (range(1302, 1303), _Rule(RateLimitedError, "requests too fast (rate limited)")),
    (range(1303, 1304), _Rule(ConcurrencyLimitError, "too many tasks in flight for the account")),
    (range(1304, 1305), _Rule(AccountError, "blocked by the account's IP whitelist policy")),
    (range(5000, 5003), _Rule(ServerError, "the provider had a server error")),
)

_STATUS_RULES: tuple[tuple[range, _Rule], ...] = (
    (range(300, 400), _Rule(AccountError, f"the provider answered with a redirect: {_URL_ADVICE}")),
    (range(401, 402), _Rule(AccountError, f"authentication failed: {_KEY_ADVICE}")),
    (range(402, 403), _Rule(AccountError, f"payment required: {_ACCOUNT_ADVICE}")),
    (range(403, 404), _Rule(AccountError, "no permission for this API or model: check the account's access")),
    (range(404, 405), _Rule(AccountError, f"the provider has no such route: {_URL_ADVICE}")),
    (range(408, 409), _Rule(ServerError, "the provider timed out")),
    (range(429, 430), _Rule(RateLimitedError, "requests too fast (rate limited)")),
    (range(400, 500), _Rule(ShotRejectedError, "the provider rejected the request")),
    (range(500, 600), _Rule(ServerError, "the provider had a server error")),
)

_NOT_FOUND = _Rule(TaskNotFoundError, "no such task at the provider")
_DUPLICATE = _Rule(
    DuplicateExternalIdError, "the provider already has a task with this external_task_id: it was submitted before"
)
_MODEL_NOT_ENABLED = _Rule(
    ModelNotEnabledError,
    "the model is not enabled for your key's group at the gateway: enable it for the group, or use another model",
)
_SATURATED = _Rule(UpstreamSaturatedError, "the gateway's upstream accounts are all busy (saturated): backing off")
_UPSTREAM_FETCH = _Rule(ServerError, "the gateway could not fetch the task from its upstream provider")

# The gateway's own string codes (docs/wire.md, "Through the CometAPI gateway"), for any operation.
_STRING_RULES: Mapping[str, _Rule] = {
    "model_not_found": _MODEL_NOT_ENABLED,
    "fail_to_fetch_task": _UPSTREAM_FETCH,
}


@dataclass(frozen=True)
class Answer:
    """What could be read from a response body, whichever shape it had."""

    is_json: bool
    body: Any = None
    code: int | None = None
    message: str | None = None
    request_id: str | None = None
    error_code: str | None = None  # the gateway's string code ("success", "task_not_exist", ...) when not a number
    error_shape: bool = False  # the gateway's {"error": {...}}: an error whatever the HTTP status

    @property
    def succeeded(self) -> bool:
        """A JSON object that reports no error: code 0, the gateway's ``"success"``, or no code at all."""
        if not isinstance(self.body, dict) or self.error_shape or self.code not in (None, 0):
            return False
        return self.error_code is None or self.error_code.lower() == "success"


def read_answer(content: bytes) -> Answer:
    """Parse a body into an ``Answer``; never raises (non-JSON bodies give ``is_json=False``)."""
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        return Answer(is_json=False)
    if not isinstance(body, dict):
        return Answer(is_json=body is not None, body=body)
    error_shape = isinstance(body.get("error"), dict)
    source: Mapping[str, Any] = body["error"] if error_shape else body
    code, error_code = _parse_code(source.get("code"))
    message = source.get("message")
    request_id = body.get("request_id") or source.get("request_id")
    inner = _kling_error_inside(message) if code is None else None
    if inner is not None:
        # A gateway passing on an upstream Kling error: the Kling code inside decides.
        code, _ = _parse_code(inner.get("code"))
        message = inner.get("message") or message
        request_id = request_id or inner.get("request_id")
    return Answer(
        is_json=True,
        body=body,
        code=code,
        message=str(message) if message is not None else None,
        request_id=str(request_id) if request_id else None,
        error_code=error_code,
        error_shape=error_shape,
    )


def _kling_error_inside(message: object) -> Mapping[str, Any] | None:
    """The Kling envelope a gateway wrote as JSON text into its own ``message``, if that is what it holds."""
    if not isinstance(message, str) or not message.lstrip().startswith("{"):
        return None
    try:
        inner = json.loads(message)
    except ValueError:
        return None
    if isinstance(inner, dict) and _parse_code(inner.get("code"))[0] is not None:
        return inner
    return None


def _parse_code(raw: object) -> tuple[int | None, str | None]:
    if isinstance(raw, bool) or raw is None:
        return None, None
    if isinstance(raw, int):
        return raw, None
    text = str(raw).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text), None
    return None, text or None


def redact(text: str, *, secret: Secrets) -> str:
    """``text`` with the secrets, bearer tokens, ``sk-`` style tokens and JWTs replaced: safe for messages and logs."""
    for value in _secret_values(secret):
        text = text.replace(value, "<redacted>")
    text = _BEARER.sub(r"\1<redacted>", text)
    text = _JWT.sub("<redacted-jwt>", text)
    return _SK_TOKEN.sub("sk-<redacted>", text)


def _secret_values(secret: Secrets) -> list[str]:
    values = [secret] if isinstance(secret, str) else list(secret or ())
    # Longest first: a secret that contains another must go whole.
    return sorted((value for value in values if value), key=len, reverse=True)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date); ``None`` if absent or bad."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def classify_error(
    *,
    http_status: int,
    content: bytes,
    headers: Mapping[str, str] | None = None,
    operation: Operation = "create",
    task_id: str | None = None,
    secret: Secrets = None,
    hints: Hints = COMETAPI_HINTS,
) -> ProviderError:
    """The error for a failed answer (or a 2xx answer that is not a success envelope).

    The business code decides first, the gateway's string code second, the HTTP status last. ``operation`` matters
    for lookups: a 404, 1203 or ``task_not_exist`` to a ``get``/``find`` means the task is unknown
    (``TaskNotFoundError``), while to a create a 404 means a missing model or route. ``secret`` (one or several) is
    scrubbed from every message; ``hints`` names the settings the advice points at.
    """
    headers = headers or {}
    answer = read_answer(content)
    request_id = answer.request_id or headers.get("x-request-id") or None
    provider_message = _provider_message(answer, content, secret=secret)
    rule = _pick_rule(answer, http_status=http_status, operation=operation, content=content, headers=headers)
    if rule.kind is ShotRejectedError and answer.code == 1201 and _mentions_duplicate(provider_message):
        rule = _DUPLICATE
    kind = rule.kind
    summary = rule.summary.replace("{key}", hints.key).replace("{url}", hints.base_url)
    message = _compose(summary, code=answer.code, http_status=http_status, provider_message=provider_message)
    context: dict[str, Any] = {
        "code": answer.code,
        "http_status": http_status,
        "request_id": request_id,
        "task_id": task_id,
        "provider_message": provider_message or None,
    }
    if issubclass(kind, TransientError):
        return kind(message, retry_after=_retry_after(kind, headers), **context)
    return kind(message, **context)


def _pick_rule(
    answer: Answer,
    *,
    http_status: int,
    operation: Operation,
    content: bytes,
    headers: Mapping[str, str],
) -> _Rule:
    lookup = operation in ("get", "find")
    known = _lookup(_CODE_RULES, answer.code) if answer.code else None
    if lookup and (answer.code == 1203 or (known is None and answer.is_json and http_status == 404)):
        return _NOT_FOUND
    if known is not None:
        return known
    word = (answer.error_code or "").lower()
    if lookup and word == "task_not_exist":
        return _NOT_FOUND
    if word in _STRING_RULES:
        return _STRING_RULES[word]
    if http_status == 429 and answer.is_json and answer.code is None and not _is_rate_limit(word):
        return _SATURATED
    if answer.code:
        return _unknown_code_rule(answer.code, http_status)
    if 300 <= http_status < 400:
        return _redirect_rule(headers)
    if not answer.is_json:
        return _non_json_rule(http_status, content=content, headers=headers)
    if 200 <= http_status < 300:
        return _Rule(ServerError, "the provider sent an answer that is not a Kling task")
    return _lookup(_STATUS_RULES, http_status) or _Rule(ServerError, f"unexpected HTTP status {http_status}")


def _unknown_code_rule(code: int, http_status: int) -> _Rule:
    status_rule = _lookup(_STATUS_RULES, http_status)
    if status_rule is not None:
        return status_rule
    if 5000 <= code < 6000:
        return _Rule(ServerError, "the provider had a server error")
    return _Rule(ShotRejectedError, "the provider rejected the request")


def _is_rate_limit(word: str) -> bool:
    return any(hint in word for hint in _RATE_LIMIT_WORDS)


def _redirect_rule(headers: Mapping[str, str]) -> _Rule:
    location = headers.get("location", "")
    where = f" to {location}" if location else ""
    return _Rule(AccountError, f"the provider answered with a redirect{where}: {_URL_ADVICE}")


def _non_json_rule(http_status: int, *, content: bytes, headers: Mapping[str, str]) -> _Rule:
    if http_status == 404:
        return _Rule(AccountError, f"the provider answered 404 with a web page, not the Kling API: {_URL_ADVICE}")
    if http_status in (401, 402, 403):
        return _lookup(_STATUS_RULES, http_status) or _Rule(AccountError, _KEY_ADVICE)
    if http_status == 429:
        return _Rule(RateLimitedError, "requests too fast (rate limited)")
    kind = "a web page" if _looks_like_html(content, headers) else "an answer that is not JSON"
    if 400 <= http_status < 500:
        return _Rule(ShotRejectedError, f"the provider rejected the request with {kind}")
    if http_status >= 500:
        return _Rule(ServerError, f"the provider or its gateway failed and sent {kind}")
    return _Rule(ServerError, f"the provider sent {kind} instead of the Kling API's JSON: {_URL_ADVICE}")


def _lookup(table: tuple[tuple[range, _Rule], ...], value: int) -> _Rule | None:
    for codes, rule in table:
        if value in codes:
            return rule
    return None


def _looks_like_html(content: bytes, headers: Mapping[str, str]) -> bool:
    if "html" in headers.get("content-type", "").lower():
        return True
    return content.lstrip()[:1] == b"<"


def _provider_message(answer: Answer, content: bytes, *, secret: Secrets) -> str:
    if answer.message:
        text = answer.message
    elif answer.error_code:
        text = answer.error_code
    elif not answer.is_json and content and not _looks_like_html(content, {}):
        text = content[:_MAX_PROVIDER_MESSAGE].decode("utf-8", errors="replace")
    else:
        text = ""
    # Scrub before cutting: a secret cut in half would no longer be recognised.
    return redact(" ".join(text.split()), secret=secret)[:_MAX_PROVIDER_MESSAGE]


def _mentions_duplicate(message: str) -> bool:
    lowered = message.lower()
    return any(hint in lowered for hint in _DUPLICATE_HINTS)


def _compose(summary: str, *, code: int | None, http_status: int, provider_message: str) -> str:
    facts = f"code {code}, HTTP {http_status}" if code is not None else f"HTTP {http_status}"
    said = f": {provider_message}" if provider_message else ""
    return f"{summary} ({facts}{said})"


def _retry_after(kind: type[ProviderError], headers: Mapping[str, str]) -> float | None:
    # The provider's own hint only. The floors that 1303 and a saturated gateway call for are the retry policy's
    # (``orchestrator.run.options.RetryPolicy.floor_for``): one place, and one switch that makes backoff instant in
    # tests.
    return parse_retry_after(headers.get("retry-after"))


_NOT_SENT: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def network_error(exc: httpx.HTTPError, *, operation: Operation = "create", task_id: str | None = None) -> NetworkError:
    """The ``NetworkError`` for a transport failure. ``ambiguous`` unless the request surely never left.

    A refused connection, a connect timeout or a pool timeout happen before any byte is sent; a read timeout, a
    dropped connection or a protocol error may come after the provider received (and billed) the create.
    """
    ambiguous = not isinstance(exc, _NOT_SENT)
    what = _describe_transport_error(exc)
    tail = " (the request may have reached the provider)" if ambiguous and operation == "create" else ""
    return NetworkError(f"could not reach the provider: {what}{tail}", ambiguous=ambiguous, task_id=task_id)


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connecting timed out"
    if isinstance(exc, httpx.PoolTimeout):
        return "no free connection in the pool in time"
    if isinstance(exc, httpx.TimeoutException):
        return "the answer timed out"
    if isinstance(exc, httpx.ConnectError):
        return "the connection was refused or the host is unknown"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was dropped"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "the connection broke"
    return type(exc).__name__
