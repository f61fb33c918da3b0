"""``orchestrator budget`` against a real Redis, and ``run --budget``: one line per problem, never a password."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from orchestrator import api
from orchestrator.budget.config import URL_VARIABLE, BudgetConfig
from orchestrator.budget.shared import SharedBudget
from orchestrator.cli import cli
from tests.budget.servers import RedisServer, free_port
from tests.helpers import write_two_board_spec


def take_slots(url: str, *, ttl: float = 600.0) -> None:
    """Two slots of `trailer` on render-01 (one re-keyed, one charged task), one of `teaser` on render-02."""

    async def take() -> None:
        config = BudgetConfig(url=url, slots=3, units_cap=10, lease_ttl=ttl)
        async with SharedBudget.connect(config, project="trailer", host="render-01") as trailer:
            await trailer.admit("ext-1", units=2)
            await trailer.bind("ext-1", "task-1", units=2)
            await trailer.admit("ext-2", units=2)
            await trailer.admit("ext-0", units=1)
            await trailer.release("ext-0", charged=1.5)
        async with SharedBudget.connect(config, project="teaser", host="render-02") as teaser:
            await teaser.admit("ext-3", units=1)

    anyio.run(take)


def test_budget_shows_slots_by_owner_cooldown_and_spend(redis_server: RedisServer) -> None:
    take_slots(redis_server.url)
    result = CliRunner().invoke(cli, ["budget", "--budget", redis_server.url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1:5] == [
        "slots: 3 of 3 in use",
        "  teaser on render-02: 1",
        "  trailer on render-01: 2",
        "cooldown: none",
    ]
    assert "1.5 units, 5 reserved in flight; cap 10 (3.5 left)" in lines[5]


def test_budget_json_reads_the_environment(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    take_slots(redis_server.url, ttl=0.001)  # every lease lapses at once: swept, their reservations spent
    monkeypatch.setenv(URL_VARIABLE, redis_server.url)
    result = CliRunner().invoke(cli, ["budget", "--json"])
    assert result.exit_code == 0, result.output
    state = json.loads(result.output)
    assert (state["ok"], state["in_use"], state["slots"], state["cap"]) == (True, 0, 3, 10)
    assert state["spent"] == pytest.approx(1.5 + 2 + 2 + 1)


def test_budget_lists_leases_about_to_expire(redis_server: RedisServer) -> None:
    take_slots(redis_server.url)

    async def age() -> None:  # every lease but task-1 has 200 s left: more than half of 600 s gone
        async with SharedBudget.connect(BudgetConfig(url=redis_server.url, slots=3), project="x") as budget:
            client: Any = budget._client
            for key in ("ext-2", "ext-3"):
                await client.zincrby("{orchestrator:budget}:leases", -400_000, key)

    anyio.run(age)
    result = CliRunner().invoke(cli, ["budget", "--budget", redis_server.url])
    assert "2 leases about to expire (unrefreshed for over half of 600 s):" in result.output
    assert "  ext-2  trailer on render-01, expires in 200 s" in result.output


def test_budget_without_a_url_or_redis_is_one_line() -> None:
    missing = CliRunner().invoke(cli, ["budget"])
    assert (missing.exit_code, missing.output) == (
        1,
        f"error: no budget to show: pass --budget redis://host:port/db or set {URL_VARIABLE}\n",
    )
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    away = CliRunner().invoke(cli, ["budget", "--budget", url])
    assert away.exit_code == 1 and away.output.count("\n") == 1
    assert "cannot be reached" in away.output and "hunter2" not in away.output and "***@127.0.0.1" in away.output
    as_json = CliRunner().invoke(cli, ["budget", "--budget", url, "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.output)["ok"] is False


def test_budget_is_listed_in_the_help() -> None:
    assert "budget    Show the studio's shared budget" in CliRunner().invoke(cli, ["--help"]).output


def test_run_budget_without_slots_is_one_line_and_sends_nothing(tmp_path: Path) -> None:
    spec = write_two_board_spec(tmp_path, 2, project="trailer")
    result = CliRunner().invoke(cli, ["run", str(spec), "--budget", "redis://:hunter2@127.0.0.1:1/0"])
    assert result.exit_code == 1
    assert result.output == (
        "error: the shared budget at redis://***@127.0.0.1:1/0 needs the account's slots: pass --budget-slots N "
        "or set `budget: {slots: N}` in the spec\n"
    )
    assert not (tmp_path / "out").exists()


def test_run_budget_reaches_the_run_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sending gate reads RunOptions.budget: the command line's URL and slots, over the spec's, with its cap.
    spec = write_two_board_spec(tmp_path, 1, project="trailer")
    spec.write_text(
        spec.read_text().replace("shots:\n", "budget: {url: 'redis://spec/0', slots: 8, units_cap: 40}\nshots:\n")
    )
    seen: list[BudgetConfig | None] = []

    async def capture(**kwargs: Any) -> Any:
        seen.append(kwargs["options"].budget)
        raise SystemExit(0)

    monkeypatch.setattr(api, "_run", capture)
    CliRunner().invoke(cli, ["run", str(spec), "--budget", "redis://cli:6379/1", "--budget-slots", "3"])
    assert seen == [BudgetConfig(url="redis://cli:6379/1", slots=3, units_cap=40)]
    seen.clear()
    CliRunner().invoke(cli, ["run", str(spec)])
    assert seen == [BudgetConfig(url="redis://spec/0", slots=8, units_cap=40)]
