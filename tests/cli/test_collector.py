"""The cyclic collector while ``plan`` and ``validate`` build a spec's values: paused, then as it was."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import orchestrator.plan.diff
from orchestrator.cli import cli
from orchestrator.cli.collector import paused_collector
from tests.helpers import write_two_board_spec


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_paused_inside_and_enabled_again_after(collector_on: None) -> None:
    with paused_collector():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_still_enables_it_again(collector_on: None) -> None:
    with pytest.raises(ValueError), paused_collector():
        raise ValueError("boom")
    assert gc.isenabled()


def test_a_collector_paused_by_someone_else_stays_paused(collector_on: None) -> None:
    gc.disable()
    with paused_collector(), paused_collector():
        pass
    assert not gc.isenabled()
    gc.enable()


def test_plan_and_validate_load_the_spec_with_the_collector_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector_on: None
) -> None:
    spec = write_two_board_spec(tmp_path, 3, project="demo")
    seen: list[bool] = []
    real = orchestrator.plan.diff.default_spec_loader()

    def loader(path: Any, **options: Any) -> Any:
        seen.append(gc.isenabled())
        return real(path, **options)

    monkeypatch.setattr("orchestrator.cli.plan.default_spec_loader", lambda: loader)
    monkeypatch.setattr("orchestrator.cli.validate.check_project", _recording(seen))
    for command in ("plan", "validate"):
        result = CliRunner().invoke(cli, [command, str(spec)])
        assert result.exit_code == 0, result.output
        assert gc.isenabled()  # the command leaves the process's collector as it found it
    assert seen == [False, False]


def _recording(seen: list[bool]) -> Any:
    from orchestrator.spec.load import check_project

    def check(path: Any, **options: Any) -> Any:
        seen.append(gc.isenabled())
        return check_project(path, **options)

    return check


def test_the_process_skips_the_collection_at_exit_once_a_command_asked(tmp_path: Path) -> None:
    # Exit handlers run last registered first: the one registered before ours sees what ours did.
    script = (
        "import atexit, gc\n"
        "atexit.register(lambda: print(gc.get_freeze_count() > 0))\n"
        "from orchestrator.cli.collector import skip_collection_at_exit\n"
        "skip_collection_at_exit()\n"
        "skip_collection_at_exit()\n"
        "print(len([1]))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60, cwd=repo
    )
    assert done.stdout.split() == ["1", "True"]


def test_plan_imports_neither_the_run_nor_the_report(tmp_path: Path) -> None:
    # `plan` of a big production is mostly start-up and imports: the HTTP client, the event loop, video decoding,
    # numpy, the simulator's web framework and the HTML report are for other commands.
    spec = write_two_board_spec(tmp_path, 2, project="demo")
    script = (
        "import sys\n"
        "from orchestrator.cli import main\n"
        f"sys.argv = ['orchestrator', 'plan', {str(spec)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('httpx', 'httpcore', 'anyio', 'numpy', 'av', 'starlette', 'uvicorn', 'orchestrator.report.html')\n"
        "print(sorted(name for name in sys.modules if name in heavy or name.split('.')[0] in heavy))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60, cwd=repo
    )
    assert done.stdout.splitlines()[-1] == "[]", done.stdout
    assert "2 new" in done.stdout
