"""The public API is curated: every exported name resolves, and nothing else leaks into ``__all__``."""

from __future__ import annotations

import subprocess
import sys

import orchestrator


def test_every_exported_name_resolves() -> None:
    for name in orchestrator.__all__:
        assert getattr(orchestrator, name) is not None, name


def test_exports_are_the_documented_api() -> None:
    assert set(orchestrator.__all__) >= {"load_project", "check_project", "plan_project", "run_project", "SpecError"}
    public = {name for name in dir(orchestrator) if not name.startswith("_")}
    # Submodules imported as a side effect are fine; any other public name must be exported on purpose.
    modules = {name for name in public if type(getattr(orchestrator, name)).__name__ == "module"}
    assert public - modules - set(orchestrator.__all__) <= {"TYPE_CHECKING", "Any", "annotations", "importlib"}


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        orchestrator.does_not_exist  # noqa: B018
    except AttributeError as exc:
        assert "does_not_exist" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_package_and_cli_stays_light() -> None:
    # validate on 10,000 shots must finish in seconds: the CLI must not load the HTTP client or the video stack.
    code = (
        "import sys, orchestrator.cli; "
        "heavy = [m for m in ('httpx', 'av', 'numpy', 'starlette', 'uvicorn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
