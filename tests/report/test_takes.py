"""``status`` and ``report`` of a shot with takes and variants: each take (``wide#2``) and where it stands, a failed
take that is not the shot's current render among what needs attention, the review's select, status and note."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.report.status import locate_manifest, summarize
from orchestrator.review import Review
from orchestrator.spec.load import load_project
from orchestrator.store.manifest import FAILED, SUCCEEDED
from tests.helpers import write_board
from tests.plan.test_takes import SPEC, seed


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    write_board(tmp_path / "a.png", (400, 300), (200, 40, 40))
    write_board(tmp_path / "b.png", (400, 300), (40, 200, 40))
    path = tmp_path / "project.yaml"
    path.write_text(SPEC)
    project = load_project(path)
    seed(
        project,
        ("s01/wide", 1, SUCCEEDED),
        ("s01/wide", 2, FAILED),
        ("s01/pro", 1, SUCCEEDED),
        ("s01/pro", 2, SUCCEEDED),
        ("s02", 1, SUCCEEDED),
    )
    return path


def test_status_lists_each_take_and_a_failed_take_needing_attention(spec: Path) -> None:
    located = locate_manifest(str(spec), load_spec=lambda: load_project)
    summary = summarize(located.manifest, state=located.state)
    assert [(take.name, take.status) for take in summary.takes] == [
        ("pro", SUCCEEDED),
        ("pro#2", SUCCEEDED),
        ("wide", SUCCEEDED),
        ("wide#2", FAILED),
    ]
    # s01's current render is a finished one; its failed take is still named.
    assert [(problem.shot_id, problem.status) for problem in summary.problems] == [("s01 wide#2", FAILED)]
    assert summarize(located.manifest).takes == ()  # without the store, shots only, as before
    data = json.loads(CliRunner().invoke(cli, ["status", str(spec), "--json"]).output)
    assert {(row["key"], row["status"]) for row in data["takes"]} == {
        ("s01/pro", SUCCEEDED),
        ("s01/pro#2", SUCCEEDED),
        ("s01/wide", SUCCEEDED),
        ("s01/wide#2", FAILED),
    }
    text = CliRunner().invoke(cli, ["status", str(spec)], env={"COLUMNS": "200"}).output
    assert "pro succeeded, pro#2 succeeded, wide succeeded, wide#2 failed" in text


def test_report_shows_takes_the_select_and_the_review(spec: Path) -> None:
    review = Review.open(spec)
    pro_2 = next(row.number for row in review.shot("s01").takes if (row.ref.variant, row.ref.take) == ("pro", 2))
    review.select("s01", pro_2, by="alice")
    review.retake("s01", "slower <script>pan</script>", by="alice")
    result = CliRunner().invoke(cli, ["report", str(spec)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    page = (spec.parent / "out" / "report.html").read_text()
    assert '<table class="takes">' in page
    assert "<td>pro#2 (selected)</td>" in page and "<td>wide#2</td>" in page
    assert 'review: <span class="badge retake">retake</span>' in page and "select: pro take 2" in page
    assert "slower &lt;script&gt;pan&lt;/script&gt;" in page and "<script>pan" not in page
    # s02 has one take: no takes table for it, no review either.
    s02 = page[page.index('id="shot-s02"') :]
    assert '<table class="takes">' not in s02 and "review:" not in s02
