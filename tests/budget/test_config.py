"""Where a budget comes from (command line, environment, spec), its checks, and passwords never shown."""

from __future__ import annotations

import sys

import pytest

from orchestrator.budget.config import URL_VARIABLE, BudgetConfig, redact, resolve_budget
from orchestrator.errors import ConfigError
from orchestrator.spec.shot import BudgetEntry


def test_no_url_anywhere_means_no_budget() -> None:
    assert resolve_budget(None, environ={}) is None
    assert resolve_budget(BudgetEntry(slots=4, units_cap=100), environ={}) is None


def test_the_command_line_wins_over_the_environment_and_the_spec() -> None:
    entry = BudgetEntry(url="redis://spec:6379/0", slots=4, units_cap=100)
    env = {URL_VARIABLE: "redis://env:6379/0"}
    assert resolve_budget(entry, environ={}) == BudgetConfig(url="redis://spec:6379/0", slots=4, units_cap=100)
    from_env = resolve_budget(entry, environ=env)
    assert from_env is not None and from_env.url == "redis://env:6379/0"
    from_cli = resolve_budget(entry, url="redis://cli:6379/1", slots=2, environ=env)
    assert from_cli == BudgetConfig(url="redis://cli:6379/1", slots=2, units_cap=100)


def test_a_url_without_slots_is_one_clear_line_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_budget(None, url="redis://:hunter2@studio:6379/0", environ={})
    message = str(caught.value)
    assert "--budget-slots" in message and "redis://***@studio:6379/0" in message and "hunter2" not in message


def test_a_url_that_is_not_redis_is_refused_redacted() -> None:
    with pytest.raises(ConfigError) as caught:
        BudgetConfig(url="http://admin:hunter2@studio/", slots=2)
    assert "not a Redis URL" in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@studio:6379/0", "redis://***@studio:6379/0"),
        ("redis://render:hunter2@studio:6379/0", "redis://render:***@studio:6379/0"),
        ("redis://hunter2@studio", "redis://***@studio"),
        ("rediss://studio:6380/1?password=hunter2&db=2", "rediss://studio:6380/1?password=***&db=2"),
        ("unix:///run/redis.sock?db=3", "unix:///run/redis.sock?db=3"),
    ],
)
def test_redact_hides_every_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_the_config_repr_never_shows_the_password() -> None:
    config = BudgetConfig(url="redis://:hunter2@studio:6379/0", slots=3)
    assert "hunter2" not in repr(config) and "***" in repr(config)


@pytest.mark.parametrize(
    ("fields", "words"),
    [({"slots": 0}, "at least 1 slot"), ({"units_cap": -1}, "cannot be negative"), ({"lease_ttl": 0}, "lease")],
)
def test_impossible_numbers_are_refused(fields: dict[str, float], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        BudgetConfig(url="redis://studio", **{"slots": 2, **fields})  # type: ignore[arg-type]


def test_a_url_without_redis_installed_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigError) as caught:
        resolve_budget(None, url="redis://studio:6379/0", slots=2, environ={})
    assert str(caught.value) == (
        "the shared budget needs redis-py, which is not installed: pip install 'orchestrator[studio]'"
    )
