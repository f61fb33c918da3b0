from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ConfigError, ManifestError
from orchestrator.manifest import FAILED, PENDING_REMOTE, SUCCEEDED, Manifest, Render, ShotRecord, save_manifest
from orchestrator.status import locate_manifest, looks_like_manifest, spent_units, summarize


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
    with pytest.raises(ConfigError, match=r"no manifest\.json here"):
        locate_manifest(None, load_spec=no_spec)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no such file"):
        locate_manifest("nope.json", load_spec=no_spec)  # type: ignore[arg-type]
    with pytest.raises(ManifestError, match="no manifest here"):
        locate_manifest(str(tmp_path), load_spec=no_spec)  # type: ignore[arg-type]
