from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.errors import ConfigError, ManifestError
from orchestrator.report.status import (
    UNCONFIRMED_REASON,
    charged_units,
    locate_manifest,
    looks_like_manifest,
    spent_units,
    summarize,
)
from orchestrator.store.manifest import (
    FAILED,
    PENDING,
    PENDING_REMOTE,
    PROCESSING,
    SUCCEEDED,
    UNCONFIRMED,
    Manifest,
    Render,
    ShotRecord,
    save_manifest,
)


def no_spec() -> object:
    raise AssertionError("the spec loader must not be asked for")


def test_summary_counts_problems_and_units() -> None:
    manifest = Manifest(
        project="demo",
        shots={
            "a": ShotRecord(status=SUCCEEDED, cost=1.0),
            "b": ShotRecord(status=SUCCEEDED, cost=3.5),
            "c": ShotRecord(status=FAILED, error="content moderation"),
            "d": ShotRecord(status=PENDING_REMOTE),
        },
    )
    summary = summarize(manifest)
    assert summary.total == 4
    assert summary.counts[SUCCEEDED] == 2
    assert summary.counts[FAILED] == 1
    assert summary.counts["pending"] == 0
    assert [(p.shot_id, p.reason) for p in summary.problems] == [
        ("c", "content moderation"),
        ("d", "no reason recorded"),
    ]
    assert summary.units == 4.5


def test_spent_units_counts_history_once() -> None:
    earlier = Render("e" * 64, "1", None, [], {}, cost=3.5)
    current_again = Render("f" * 64, "2", None, [], {}, cost=1.0)
    record = ShotRecord(status=SUCCEEDED, task_id="2", cost=1.0, history=[earlier, current_again])
    assert spent_units(record) == 4.5


def charged_manifest() -> Manifest:
    return Manifest(
        project="demo",
        shots={
            "a": ShotRecord(status=SUCCEEDED, task_id="1", cost=2.0, charged=2.0),
            "b": ShotRecord(status=SUCCEEDED, task_id="2", cost=3.5),  # an older manifest: no charged figure
            "c": ShotRecord(status=FAILED, task_id="3", error="content moderation", charged=0.0),
            "d": ShotRecord(status=PROCESSING, task_id="4"),
            "e": ShotRecord(status=UNCONFIRMED, error="create timed out; attach the task id or resend"),
            "f": ShotRecord(status=UNCONFIRMED),
            "g": ShotRecord(status=PENDING),  # never sent: nothing to charge
        },
    )


def test_units_estimated_and_charged_and_shots_without_a_charged_figure() -> None:
    summary = summarize(charged_manifest())
    assert (summary.estimated, summary.charged) == (5.5, 2.0)
    assert summary.uncharged == ("b", "d", "e", "f")


def test_unconfirmed_shots_need_attention_with_what_to_do() -> None:
    problems = {p.shot_id: (p.status, p.reason) for p in summarize(charged_manifest()).problems}
    assert problems == {
        "c": (FAILED, "content moderation"),
        "e": (UNCONFIRMED, "create timed out; attach the task id or resend"),
        "f": (UNCONFIRMED, UNCONFIRMED_REASON),
    }
    assert "may have been billed" in UNCONFIRMED_REASON and "attach its id" in UNCONFIRMED_REASON


def test_charged_units_count_history_once_and_a_failed_task_as_zero() -> None:
    earlier = Render("e" * 64, "1", None, [], {}, cost=3.5, charged=3.5)
    failed = Render("d" * 64, "0", None, [], {}, cost=None, charged=0.0)
    current_again = Render("f" * 64, "2", None, [], {}, cost=2.0, charged=2.0)
    record = ShotRecord(status=SUCCEEDED, task_id="2", cost=2.0, charged=2.0, history=[failed, earlier, current_again])
    assert charged_units(record) == 5.5
    assert spent_units(record) == 5.5


def test_status_command_shows_both_figures_and_unconfirmed_shots(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    save_manifest(charged_manifest(), path)
    result = CliRunner().invoke(cli, ["status", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "unconfirmed" in result.output and "may have been billed" in result.output
    line = "est. 5.5 units, charged 2 units (no charged figure yet for 4 shots: b, d, e, f)"
    assert result.output.splitlines()[-1] == line
    data = json.loads(CliRunner().invoke(cli, ["status", str(path), "--json"]).output)
    assert (data["units_estimated"], data["units_charged"], data["units"]) == (5.5, 2.0, 5.5)
    assert data["uncharged"] == ["b", "d", "e", "f"]
    assert data["counts"][UNCONFIRMED] == 2
    assert {"id": "f", "status": UNCONFIRMED, "reason": UNCONFIRMED_REASON} in data["problems"]


def test_locate_manifest_by_file_folder_or_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_manifest(Manifest(project="demo"), tmp_path / "renders" / "manifest.json")
    path = tmp_path / "renders" / "manifest.json"
    assert looks_like_manifest(path)
    assert locate_manifest(str(path), load_spec=no_spec).manifest.project == "demo"  # type: ignore[arg-type]
    assert locate_manifest(str(path.parent), load_spec=no_spec).path == path  # type: ignore[arg-type]
    monkeypatch.chdir(tmp_path)
    assert locate_manifest(None, load_spec=no_spec).path == Path("renders/manifest.json")  # type: ignore[arg-type]
    monkeypatch.chdir(path.parent)
    assert locate_manifest(None, load_spec=no_spec).path == Path("manifest.json")  # type: ignore[arg-type]


def test_locate_manifest_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no renders\.db or manifest\.json here"):
        locate_manifest(None, load_spec=no_spec)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no such file"):
        locate_manifest("nope.json", load_spec=no_spec)  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match="no manifest here"):
        locate_manifest(str(tmp_path), load_spec=no_spec)  # type: ignore[arg-type]


def test_with_no_target_a_folder_whose_run_has_written_no_snapshot_yet_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.store.manifest import ManifestStore

    store = ManifestStore.open(tmp_path / "renders" / "manifest.json", project="p")  # a first run, still working
    store.update("s1", status="submitted", fingerprint="f", attempts=1, task_id="7")
    store.save()
    try:
        monkeypatch.chdir(tmp_path)
        located = locate_manifest(None, load_spec=no_spec)  # type: ignore[arg-type]
        assert located.manifest.shots["s1"].task_id == "7"
        assert not (tmp_path / "renders" / "manifest.json").exists()
    finally:
        store.release()
