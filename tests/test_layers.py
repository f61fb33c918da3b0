"""Each stage imports only the stages before it (docs/architecture.md, "Stages and what each may import").

Read from the source with ``ast``, lazy imports inside functions included: a shortcut through a later stage fails
here, not in a review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"

# stage -> the parts of the package it may import (besides itself). ``errors`` and ``config`` are everyone's.
ALLOWED: dict[str, set[str]] = {
    "store": set(),
    # The spec checks its ``pricing:`` keys against the rate card's names.
    "spec": {"plan.pricing"},
    "providers": {"spec"},
    # The review's decisions (a file beside the spec, and what it asks for: retakes, stale approvals) are read by the
    # plan, which renders what they ask; ``diff`` compares them between two revisions. Never the review app.
    "plan": {"spec", "store", "review.decisions", "review.takes", "review.api"},
    "review": {"spec", "store"},
    # The budget's backoff is the run's one retry policy.
    "budget": {"spec", "run.limits"},
    "run": {"spec", "plan", "store", "providers", "budget"},
    "report": {"spec", "plan", "store", "review.decisions"},
    "editorial": {"spec", "store", "review.decisions"},
}
SHARED = {"errors", "config", "listen", "__version__"}


def imports_of(path: Path) -> set[str]:
    """The ``orchestrator.*`` modules a file imports, anywhere in it, without the ``orchestrator.`` prefix."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "orchestrator":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("orchestrator."):
                found.add(node.module.removeprefix("orchestrator."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("orchestrator.") for a in node.names if a.name.startswith("orchestrator."))
    return found


def allowed(stage: str, target: str) -> bool:
    if target.split(".")[0] in {stage, *SHARED}:
        return True
    return any(target == rule or target.startswith(rule + ".") for rule in ALLOWED[stage])


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_a_stage_imports_only_what_comes_before_it(stage: str) -> None:
    wrong = sorted(
        f"{path.relative_to(PACKAGE.parent)} imports orchestrator.{target}"
        for path in (PACKAGE / stage).rglob("*.py")
        for target in imports_of(path)
        if not allowed(stage, target)
    )
    assert not wrong, "\n".join(wrong)


def test_nothing_but_the_cli_imports_the_cli_and_no_stage_imports_the_api() -> None:
    wrong = sorted(
        f"{path.relative_to(PACKAGE.parent)} imports orchestrator.{target}"
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in {"cli", "__main__.py"}
        for target in imports_of(path)
        if target.split(".")[0] == "cli"
        or (target.split(".")[0] in {"api", "adopt"} and path.relative_to(PACKAGE).parts[0] in ALLOWED)
    )
    assert not wrong, "\n".join(wrong)
