"""What turns the studio's shared budget on, and where it lives: ``BudgetConfig``, resolved from the command line
(``--budget URL --budget-slots N``), ``ORCHESTRATOR_BUDGET_URL`` and a spec's ``budget:`` entry, in that order.

Nothing here imports redis: a run without a budget never pays for it, and a URL given without the ``studio``
extra installed is one line saying what to install (``import_redis``). A Redis URL may carry a password, so the
URL itself is never shown: every message and ``repr`` uses ``redact(url)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from orchestrator.errors import ConfigError
from orchestrator.spec.shot import BudgetEntry

URL_VARIABLE = "ORCHESTRATOR_BUDGET_URL"
URL_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_LEASE_TTL = 600.0  # seconds a lease lives unrefreshed: a killed run's slots come back after this
DEFAULT_PREFIX = "orchestrator:budget"
INSTALL_HINT = "pip install 'orchestrator[studio]'"
_SECRET_QUERY_KEYS = ("pass", "auth", "token", "secret")


@dataclass(frozen=True)
class BudgetConfig:
    """A shared budget: ``slots`` tasks in flight for the whole account, an optional daily ``units_cap``.

    ``lease_ttl``: seconds after which a lease nobody refreshed is freed (a killed run's, or one whose create's
    outcome is unknown). ``prefix``: the keys' common prefix (one per provider account sharing a Redis).
    ``timeout``: seconds a Redis call may take before Redis counts as unreachable. ``wait_poll``: how often a run
    waiting for a slot asks again: every slot's wait for the next wave costs about this much, and an admission is one
    cheap script, so it is short.
    """

    url: str = field(repr=False)
    slots: int
    units_cap: float | None = None
    lease_ttl: float = DEFAULT_LEASE_TTL
    prefix: str = DEFAULT_PREFIX
    timeout: float = 2.0
    wait_poll: float = 0.05

    def __post_init__(self) -> None:
        check_url(self.url)
        if self.slots < 1:
            raise ConfigError(f"the shared budget needs at least 1 slot, not {self.slots}")
        if self.units_cap is not None and self.units_cap < 0:
            raise ConfigError(f"the studio's spend cap cannot be negative ({self.units_cap:g})")
        if self.lease_ttl <= 0:
            raise ConfigError(f"a lease must live more than 0 seconds, not {self.lease_ttl:g}")

    @property
    def display_url(self) -> str:
        """The URL with any password replaced by ``***``: the only form ever shown."""
        return redact(self.url)

    def __repr__(self) -> str:
        return (
            f"BudgetConfig(url={self.display_url!r}, slots={self.slots}, units_cap={self.units_cap}, "
            f"lease_ttl={self.lease_ttl:g}, prefix={self.prefix!r})"
        )


def resolve_budget(
    entry: BudgetEntry | None = None,
    *,
    url: str | None = None,
    slots: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> BudgetConfig | None:
    """The budget a run uses, or None when no URL is given anywhere (then nothing changes and nothing is needed).

    ``url``/``slots`` come from the command line and win; then ``ORCHESTRATOR_BUDGET_URL``; then the spec's entry.
    The cap only comes from the spec. A URL without a slot count is a ``ConfigError``: the count is the account's;
    so is a URL without redis-py installed.
    """
    env = os.environ if environ is None else environ
    chosen_url = url or env.get(URL_VARIABLE) or (entry.url if entry else None)
    if not chosen_url:
        return None
    chosen_slots = slots if slots is not None else (entry.slots if entry else None)
    if chosen_slots is None:
        raise ConfigError(
            f"the shared budget at {redact(chosen_url)} needs the account's slots: pass --budget-slots N "
            "or set `budget: {slots: N}` in the spec"
        )
    config = BudgetConfig(url=chosen_url, slots=chosen_slots, units_cap=entry.units_cap if entry else None)
    import_redis()  # now, before anything is sent: a run asked to share a budget must not run without it
    return config


def check_url(url: str) -> None:
    """A ``ConfigError`` (the URL redacted) unless ``url`` is a Redis URL redis-py can open."""
    scheme = urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise ConfigError(
            f"the budget URL {redact(url)} is not a Redis URL: use redis://host:port/db, rediss:// or unix:///path"
        )


def redact(url: str) -> str:
    """``url`` with its password (and any secret in its query) replaced by ``***``; a lone user part may be a
    password too (``redis://secret@host``), so it goes as well."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if has_password and user else f"***@{host}"
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        secret = [any(word in key.lower() for word in _SECRET_QUERY_KEYS) for key, _ in pairs]
        if netloc == parts.netloc and not any(secret):
            return url  # nothing to hide: as given (urlunsplit would turn unix:///path into unix:/path)
        query = urlencode(
            [(key, "***" if hidden else value) for (key, value), hidden in zip(pairs, secret, strict=True)], safe="*"
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query if pairs else parts.query, parts.fragment))
    except ValueError:
        return "<unparsable URL>"


def import_redis() -> ModuleType:
    """``redis.asyncio``, or one line saying what to install (the ``studio`` extra is optional)."""
    try:
        import redis.asyncio
    except ImportError:
        raise ConfigError(f"the shared budget needs redis-py, which is not installed: {INSTALL_HINT}") from None
    return redis.asyncio
