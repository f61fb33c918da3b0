"""Every error orchestrator raises, in one tree.

Messages are written for the person at the terminal: they say what is wrong and, where it helps, what to do.
Third-party errors (yaml, jsonschema, jinja2, httpx, av) are wrapped at the boundary where they occur, so none of
them ever reaches a user as a traceback.

    OrchestratorError
    ├── SpecError                   a spec has one or more problems (``.problems``, each with file:line and shot)
    ├── ConfigError                 bad option or environment (missing COMETAPI_KEY, unknown provider, ...)
    ├── ManifestError               manifest unreadable, corrupt or from another project; never overwritten
    │   ├── ManifestLockedError     another run holds the manifest's lock
    │   └── StoreError              the render store (renders.db, its snapshot) cannot be used; never repaired
    │       ├── StoreCorruptError   not a database, damaged pages, or a snapshot that does not parse
    │       ├── ForeignStoreError   a database some other program made, or another project's store
    │       └── NewerStoreError     a store written by a newer orchestrator (a schema version this one lacks)
    ├── ProviderError               the provider answered with an error, or could not be reached
    │   ├── TransientError          worth retrying later (``.retry_after`` seconds, if the provider said)
    │   │   ├── RateLimitedError    1302, or HTTP 429 without a business code
    │   │   ├── ConcurrencyLimitError  1303: too many tasks in flight for the account
    │   │   │   └── UpstreamSaturatedError  a gateway's HTTP 429 without a Kling code: its upstream pool is full
    │   │   ├── ServerError         5000-5002, HTTP 5xx, non-JSON gateway pages
    │   │   └── NetworkError        timeouts, refused or dropped connections (``.ambiguous`` if sent)
    │   ├── ShotRejectedError       this request will never succeed (1200-1203, 1300, 1301): fail the shot only
    │   │   └── DuplicateExternalIdError  1201 for an external_task_id the account has already used
    │   ├── AccountError            fatal for the whole run (auth 1000-1004, account 1100-1104, 1304)
    │   │   └── ModelNotEnabledError  the gateway has no channel for this model in the key's group (503)
    │   └── TaskNotFoundError       no task with that id (or external id) at the provider
    ├── DownloadError               a finished video could not be fetched or verified; retried on its own
    ├── BudgetError                 the studio's shared budget (Redis) refused or failed a call
    │   ├── BudgetUnavailableError  Redis cannot be reached: stop admitting, follow the tasks, retry later
    │   └── BudgetExhaustedError    the next create would pass the studio's spend cap (``.left`` units)
    ├── RunAbortedError             a run stopped early (fatal account error, interrupt); the manifest is intact
    └── EditorialError              a timeline, reel or edit cannot be written or read (export, reel, conform)
"""

from __future__ import annotations

from dataclasses import dataclass


class OrchestratorError(Exception):
    """Base class of every error orchestrator raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Problem:
    """One problem found in a spec, located at a YAML node.

    ``severity`` is ``"error"`` or ``"warning"``; warnings do not fail validation unless asked to.
    """

    file: str
    line: int
    column: int
    message: str
    shot: str | None = None
    severity: str = "error"

    def format(self) -> str:
        """``FILE:LINE:COL: shot <id>: message``: the form editors and terminals link to."""
        where = f"{self.file}:{self.line}:{self.column}"
        who = f" shot {self.shot}:" if self.shot else ""
        level = " warning:" if self.severity == "warning" else ""
        return f"{where}:{level}{who} {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "shot": self.shot,
            "severity": self.severity,
            "message": self.message,
        }


class SpecError(OrchestratorError):
    """A spec could not be loaded or resolved. ``problems`` lists every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        first = errors[0].format() if errors else "invalid spec"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


class ConfigError(OrchestratorError):
    """A command-line option, setting or environment variable is wrong or missing."""


class ManifestError(OrchestratorError):
    """A manifest cannot be used. The file is left untouched."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ManifestLockedError(ManifestError):
    """Another live run holds the lock on this manifest."""


class StoreError(ManifestError):
    """An output folder's render store cannot be used. ``path`` names the file; it is left exactly as it was."""


class StoreCorruptError(StoreError):
    """The database or snapshot is damaged or is not one at all."""


class ForeignStoreError(StoreError):
    """The file is a database of another program, or the store of another project."""


class NewerStoreError(StoreError):
    """The store was written by a newer orchestrator; this one does not know its schema and will not guess."""


class DecisionError(OrchestratorError):
    """A review decision cannot be made or kept: an unknown shot or take, a decisions file that cannot be written."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ProviderError(OrchestratorError):
    """The video provider answered with an error, or could not be reached.

    Context attributes are filled where known; none of them ever holds the API key.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
        provider_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.request_id = request_id
        self.task_id = task_id
        self.provider_message = provider_message


class TransientError(ProviderError):
    """Worth retrying after a delay; ``retry_after`` is the provider's own hint in seconds, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **context: object) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.retry_after = retry_after

    @property
    def may_have_reached_provider(self) -> bool:
        """Could the request have been acted on? Only after a server error or a connection lost once sent: a create
        failing so must be looked up by external id before it is ever sent again."""
        return False


class RateLimitedError(TransientError):
    """Requests too fast (1302, or HTTP 429 without a business code)."""


class ConcurrencyLimitError(TransientError):
    """Too many tasks in flight for the account (1303). Lower concurrency and retry."""


class UpstreamSaturatedError(ConcurrencyLimitError):
    """A gateway answered HTTP 429 with no Kling code: every upstream account behind it is at its limit (the gateway
    already tried the others). Back off like 1303, only longer (``retry_after`` is at least 5 s)."""


class ServerError(TransientError):
    """The provider or its gateway failed (5000-5002, HTTP 5xx, an HTML or non-JSON answer)."""

    @property
    def may_have_reached_provider(self) -> bool:
        return True


class NetworkError(TransientError):
    """The request timed out or the connection failed.

    ``ambiguous`` is true when the request may have reached the provider (sent, then no answer): a create that fails
    this way must be looked up by external id before it is ever sent again.
    """

    def __init__(self, message: str, *, ambiguous: bool = True, **context: object) -> None:
        super().__init__(message, **context)  # type: ignore[arg-type]
        self.ambiguous = ambiguous

    @property
    def may_have_reached_provider(self) -> bool:
        return self.ambiguous


class ShotRejectedError(ProviderError):
    """The provider refuses this request for good (1200-1203, 1300, 1301). Only this shot fails."""


class DuplicateExternalIdError(ShotRejectedError):
    """The account already has a task with this external_task_id (1201): it was submitted before."""


class AccountError(ProviderError):
    """A problem with the account or key that stops the whole run (1000-1004, 1100-1104, 1304)."""


class ModelNotEnabledError(AccountError):
    """The gateway serves no upstream channel for the requested model in the key's group: a configuration error,
    retrying does not help (CometAPI's HTTP 503 ``model_not_found``)."""


class TaskNotFoundError(ProviderError):
    """The provider knows no task with this id or external id."""


class DownloadError(OrchestratorError):
    """A finished video could not be downloaded or failed verification. The task itself succeeded."""

    def __init__(self, message: str, *, url: str | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.url = url
        self.retryable = retryable


class RunAbortedError(OrchestratorError):
    """A run stopped before every shot was done. What was recorded is safe in the manifest; run again to resume."""


class EditorialError(OrchestratorError):
    """A timeline, reel or editor's edit cannot be written or read: an unknown format, unreadable media, a bad edit."""


class BudgetError(OrchestratorError):
    """The studio's shared budget (docs/budget.md) refused a call or answered something unexpected."""


class BudgetUnavailableError(BudgetError):
    """The budget's Redis cannot be reached. A run stops taking new slots, keeps following its tasks, and admits
    again once Redis answers."""


class BudgetExhaustedError(BudgetError):
    """The next create would pass the studio's spend cap. ``cap`` and ``left`` in units; tasks in flight finish."""

    def __init__(self, message: str, *, cap: float, left: float) -> None:
        super().__init__(message)
        self.cap = cap
        self.left = left
