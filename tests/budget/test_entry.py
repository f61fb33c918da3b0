"""A spec's ``budget:`` entry: parsed into the resolved project, and checked with file:line like every field."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.spec.load import load_project
from orchestrator.spec.shot import BudgetEntry
from tests.helpers import write_two_board_spec


def with_budget(folder: Path, entry: str) -> Path:
    spec = write_two_board_spec(folder, 1, project="trailer")
    text = spec.read_text().replace("shots:\n", f"budget: {entry}\nshots:\n")
    spec.write_text(text)
    return spec


def test_the_entry_reaches_the_resolved_project(tmp_path: Path) -> None:
    spec = with_budget(tmp_path, "{url: 'redis://studio:6379/2', slots: 10, units_cap: 500}")
    assert load_project(spec).budget == BudgetEntry(url="redis://studio:6379/2", slots=10, units_cap=500.0)


def test_a_spec_without_the_entry_has_none(tmp_path: Path) -> None:
    assert load_project(write_two_board_spec(tmp_path, 1, project="trailer")).budget is None


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("{url: 'http://studio', slots: 4}", "redis://host:port/db"),
        ("{url: 'redis://studio', slots: 0}", "between 1 and 1000"),
        ("{slots: 4, units_cap: -5}", "at least 0"),
        ("{slots: 4, spend: 5}", "spend"),
    ],
)
def test_a_bad_entry_is_a_problem_at_its_line(tmp_path: Path, entry: str, words: str) -> None:
    spec = with_budget(tmp_path, entry)
    line = spec.read_text().splitlines().index(f"budget: {entry}") + 1
    with pytest.raises(SpecError) as caught:
        load_project(spec)
    [problem] = caught.value.problems
    assert problem.line == line and words in problem.message
