"""The root command group: its lazy command table, and a ``--help`` that imports nothing heavy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.cli._app import COMMAND_MODULES, printable

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("av", "numpy", "starlette", "httpx")

# Runs the CLI in a fresh interpreter, then reports which of the heavy modules it imported.
PROBE = """
import json, sys
from orchestrator.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps([name for name in HEAVY if name in sys.modules]))
"""


def heavy_modules_imported(*args: str) -> list[str]:
    code = f"HEAVY = {HEAVY!r}\nimport sys\nsys.argv = ['orchestrator', *{list(args)!r}]\n{PROBE}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    imported: list[str] = json.loads(done.stdout.splitlines()[-1])
    return imported


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["plan", "--help"],
        ["diff", "--help"],
        ["validate", "--help"],
        ["report", "--help"],
        ["status", "--help"],
        ["--version"],
    ],
)
def test_help_imports_no_video_stack_nor_http_client(args: list[str]) -> None:
    assert heavy_modules_imported(*args) == []


def test_root_help_lists_every_command_with_its_summary_without_importing_it() -> None:
    code = (
        "import sys\nsys.argv = ['orchestrator', '--help']\nfrom orchestrator.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print([m for m in sys.modules if m.startswith('orchestrator.cli.') and m != 'orchestrator.cli._app'])"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    *help_lines, loaded = done.stdout.splitlines()
    assert loaded == "[]"
    listed = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in help_lines if line.startswith("  ")}
    for name, lazy in COMMAND_MODULES.items():
        assert listed.get(name) == lazy.summary


def test_every_table_entry_is_a_command_of_its_module() -> None:
    runner = CliRunner()
    for name in COMMAND_MODULES:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert result.output.startswith(f"Usage: cli {name}") or f" {name} " in result.output.splitlines()[0]


@pytest.mark.parametrize(
    ("command", "code"),
    [("validate", 1), ("run", 1), ("plan", 1), ("report", 1), ("status", 1), ("diff", 2)],  # diff: 1 is "different"
)
def test_a_missing_spec_is_the_same_one_line_in_every_command(tmp_path: Path, command: str, code: int) -> None:
    missing = tmp_path / "missing.yaml"
    args = [command, str(missing)] + ([str(ROOT / "specs" / "demo" / "project.yaml")] if command == "diff" else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == code
    assert result.stderr.splitlines()[0] == f"{missing}:1:1: no such file"
    if command != "validate":  # validate adds its summary line
        assert result.stderr.splitlines() == [f"{missing}:1:1: no such file"]


@pytest.mark.parametrize("command", ["validate", "run", "plan"])
def test_a_folder_given_as_spec_is_one_line_too(tmp_path: Path, command: str) -> None:
    result = CliRunner().invoke(cli, [command, str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"{tmp_path}:1:1: is a directory, not a spec file"


@pytest.mark.parametrize(
    ("text", "newlines", "shown"),
    [
        ("s001  new  2 units", False, "s001  new  2 units"),  # printable ASCII: as it is
        ("tab\there", False, "tab\there"),  # a tab is kept: it moves the cursor only along the line
        ("two\nlines", True, "two\nlines"),
        ("two\nlines", False, "two\\nlines"),
        ("caf\u00e9 \u202eevil", False, "caf\u00e9 \\u202eevil"),
        ("", False, ""),
    ],
)
def test_printable_leaves_plain_text_alone_and_escapes_the_rest(text: str, newlines: bool, shown: str) -> None:
    assert printable(text, newlines=newlines) == shown
