"""The README tells the truth: its spec example validates against the demo's boards, and its commands exist."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.spec.load import check_project

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_spec_example_validates(tmp_path: Path) -> None:
    example = re.search(r"```yaml\n(.*?)```", README, re.S)
    assert example is not None
    shutil.copytree(ROOT / "specs" / "demo" / "boards", tmp_path / "boards")
    spec = tmp_path / "project.yaml"
    spec.write_text(example.group(1), encoding="utf-8")
    result = check_project(spec)
    assert result.errors == []
    assert result.project is not None and len(result.project.shots) == 2


def test_readme_names_the_demo_and_the_test_line() -> None:
    assert "orchestrator run specs/demo/project.yaml --provider local" in README
    assert ".venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest" in README
    assert "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest" in (
        ROOT / ".ci" / "run"
    ).read_text(encoding="utf-8")


def test_every_command_in_the_cli_reference_exists() -> None:
    documented = set(re.findall(r"^\| `orchestrator (\w+)", README, re.M))
    assert documented >= {"validate", "schema", "plan", "run", "diff", "report", "status", "simulate"}
    for command in documented:
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)
