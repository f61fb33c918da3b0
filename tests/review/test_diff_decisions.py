"""``orchestrator diff`` shows decisions that changed between two revisions of a spec (its ``.review.yaml``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.plan.diff import diff_paths

from .conftest import Production

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def versioned(production: Production) -> Production:
    """The production in git: HEAD has s01 selected (take 1) and s02 on hold."""
    production.review.select("s01", 1, by="al")
    production.review.hold("s02", "boards coming", by="al")
    root = production.spec.parent
    (root / ".gitignore").write_text("out/\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "selects")
    return production


def test_diff_names_each_decision_that_changed(versioned: Production) -> None:
    versioned.review.approve("s01", 2, by="bo")
    versioned.review.hold("s02", "boards coming", by="someone else")  # decided again, the same: not a change
    spec = str(versioned.spec)
    result = CliRunner().invoke(cli, ["diff", f"{spec}@HEAD", spec])
    assert result.exit_code == 1, result.output
    fingerprint = versioned.shot("s01").fingerprint[:12]
    assert (
        f"@ s01  decision: pending-review -> approved; select take 1 ({fingerprint}) -> take 2 ({fingerprint})"
        in result.output.splitlines()
    )
    assert "s02" not in result.output
    assert result.output.splitlines()[-1] == "0 added, 0 removed, 0 changed, 3 unchanged, 1 decision changed"
    data = json.loads(CliRunner().invoke(cli, ["diff", f"{spec}@HEAD", spec, "--json"]).output)
    (change,) = data["decisions"]
    assert change["id"] == "s01" and change["old"]["status"] == "pending-review"
    assert change["new"]["status"] == "approved" and change["new"]["select"]["take"] == 2


def test_the_same_decisions_are_no_difference(versioned: Production) -> None:
    spec = str(versioned.spec)
    result = diff_paths(f"{spec}@HEAD", spec)
    assert result.decisions == () and result.equal


def test_a_revision_without_the_file_has_no_decisions(versioned: Production) -> None:
    root = versioned.spec.parent
    git(root, "rm", "-q", "--cached", versioned.decisions.name)
    git(root, "commit", "-qm", "no decisions yet")
    result = diff_paths(f"{versioned.spec}@HEAD", str(versioned.spec))
    assert [change.shot_id for change in result.decisions] == ["s01", "s02"]
    assert all(change.old is None for change in result.decisions)
