from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.diff import (
    ADDED,
    CHANGED,
    REMOVED,
    UNCHANGED,
    diff_paths,
    diff_sides,
    diff_to_json,
    format_word_diff,
    load_side,
    side_from_manifest,
    split_revision,
    word_diff,
)
from orchestrator.errors import ConfigError, ManifestError, Problem, SpecError
from orchestrator.fingerprint import request_record
from orchestrator.manifest import Manifest, ShotRecord, save_manifest
from orchestrator.shot import ImageRef, ResolvedProject, ResolvedShot
from tests.helpers import hand_shot

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def shot(shot_id: str, **overrides: Any) -> ResolvedShot:
    default = (ImageRef(source="path", ref="a.png", sha256="a" * 64), ImageRef("path", "b.png", sha256="b" * 64))
    return hand_shot(shot_id, images=overrides.pop("images", default), **overrides)


def manifest_of(*shots: ResolvedShot, project: str = "demo") -> Manifest:
    return Manifest(
        project=project,
        shots={
            s.id: ShotRecord(status="succeeded", fingerprint=s.fingerprint, request=request_record(s)) for s in shots
        },
    )


def test_word_diff_marks_deleted_and_inserted_words() -> None:
    ops = word_diff("a boat at dawn, slowly", "a small boat at dusk, slowly")
    assert format_word_diff(ops) == "a {+small +}boat at [-dawn,-]{+dusk,+} slowly"


@given(st.text(max_size=40), st.text(max_size=40))
def test_word_diff_rebuilds_both_texts(old: str, new: str) -> None:
    ops = word_diff(old, new)
    assert "".join(op.text for op in ops if op.op != "insert") == old
    assert "".join(op.text for op in ops if op.op != "delete") == new


def test_shot_level_and_field_level_differences() -> None:
    a = side_from_manifest(manifest_of(shot("same"), shot("edit"), shot("gone")), label="a")
    b = side_from_manifest(
        manifest_of(shot("same"), shot("edit", mode="pro", prompt="prompt of the edit"), shot("new")), label="b"
    )
    result = diff_sides(a, b)
    assert [(s.shot_id, s.kind) for s in result.shots] == [
        ("same", UNCHANGED),
        ("edit", CHANGED),
        ("new", ADDED),
        ("gone", REMOVED),
    ]
    edit = result.shots[1]
    assert edit.fields == ["mode", "prompt"]
    assert edit.word_diffs is not None
    assert format_word_diff(edit.word_diffs["prompt"]) == "prompt of {+the +}edit"
    assert not result.equal
    assert result.counts() == {ADDED: 1, REMOVED: 1, CHANGED: 1, UNCHANGED: 1}


def test_equal_sides_and_json() -> None:
    result = diff_sides(
        side_from_manifest(manifest_of(shot("s1")), label="a"), side_from_manifest(manifest_of(shot("s1")), label="b")
    )
    assert result.equal
    data = diff_to_json(result)
    assert data["equal"] is True
    assert data["shots"] == [{"id": "s1", "kind": UNCHANGED, "fields": []}]


def test_other_project_is_not_equal() -> None:
    a = side_from_manifest(manifest_of(shot("s1")), label="a")
    b = side_from_manifest(manifest_of(shot("s1"), project="other"), label="b")
    assert not diff_sides(a, b).equal


def test_record_without_request_compares_by_fingerprint() -> None:
    a = Manifest(project="demo", shots={"s1": ShotRecord(status="pending", fingerprint="0" * 64)})
    b = manifest_of(shot("s1"))
    result = diff_sides(side_from_manifest(a, label="a"), side_from_manifest(b, label="b"))
    assert (result.shots[0].kind, result.shots[0].fields) == (CHANGED, ["fingerprint"])


def test_manifests_are_detected_by_content_not_name(tmp_path: Path) -> None:
    odd_name = tmp_path / "state.yaml"
    save_manifest(manifest_of(shot("s1")), odd_name)
    save_manifest(manifest_of(shot("s1"), shot("s2")), tmp_path / "out" / "manifest.json")
    unused = pytest.fail  # a spec loader that must not be called for manifests

    assert load_side(str(odd_name), load_spec=lambda p: unused("spec loader called")).kind == "manifest"
    folder = load_side(str(tmp_path / "out"), load_spec=lambda p: unused("spec loader called"))
    assert sorted(folder.shots) == ["s1", "s2"]
    assert diff_paths(str(odd_name), str(tmp_path / "out"), load_spec=lambda p: unused("x")).counts()[ADDED] == 1


def test_corrupt_manifest_and_missing_file_are_our_errors(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.json"
    bad.write_text('{"manifest_version": 1, "shots": {"s1": {"bogus": 1}}, "project": "x"}')
    with pytest.raises(ManifestError):
        load_side(str(bad))
    with pytest.raises(ConfigError, match="no such file"):
        load_side(str(tmp_path / "nope.yaml"))


def test_split_revision() -> None:
    assert split_revision("specs/a.yaml@HEAD~1") == (Path("specs/a.yaml"), "HEAD~1")
    assert split_revision("a.yaml") is None
    assert split_revision("a.yaml@") is None


# --- SPEC@REV, with a stand-in spec loader: {project, shots: {id: prompt}} ------------------------------------


def fake_loader(seen: list[Path]) -> Any:
    def load(path: Path) -> ResolvedProject:
        seen.append(path)
        data = yaml.safe_load(path.read_text())
        if "broken" in data:
            raise SpecError([Problem(str(path), 3, 1, "broken on purpose")])
        shots = tuple(shot(k, prompt=v, project=data["project"]) for k, v in data["shots"].items())
        return ResolvedProject(path, "", 1, data["project"], "kling-v1-6", path.parent / "renders", shots)

    return load


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    git(root, "init", "-q")
    spec = root / "specs" / "p.yaml"
    spec.write_text("project: demo\nshots: {s1: a boat at dawn, s2: gulls}\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    spec.write_text("project: demo\nshots: {s1: a boat at dusk, s3: waves}\n")
    git(root, "commit", "-q", "-am", "two")
    return root


@needs_git
def test_spec_at_revision(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []
    spec = repo / "specs" / "p.yaml"
    spec.write_text("project: demo\nshots: {s1: uncommitted}\n")  # the working copy must not matter for @REV

    result = diff_paths(f"{spec}@HEAD~1", f"{spec}@HEAD", load_spec=fake_loader(seen))

    assert [(s.shot_id, s.kind) for s in result.shots] == [("s1", CHANGED), ("s3", ADDED), ("s2", REMOVED)]
    assert result.shots[0].word_diffs is not None
    assert format_word_diff(result.shots[0].word_diffs["prompt"]) == "a boat at [-dawn-]{+dusk+}"
    # Read beside the spec (so relative paths resolve), then cleaned up.
    assert all(p.parent == spec.parent for p in seen)
    assert sorted(p.name for p in spec.parent.iterdir()) == ["p.yaml"]
    # A relative SPEC@REV from inside the repository works too.
    monkeypatch.chdir(repo)
    assert load_side("specs/p.yaml@HEAD~1", load_spec=fake_loader(seen)).label == "specs/p.yaml@HEAD~1"


@needs_git
def test_spec_at_revision_errors(repo: Path) -> None:
    spec = repo / "specs" / "p.yaml"
    with pytest.raises(ConfigError, match="cannot read the spec at that revision"):
        load_side(f"{spec}@no-such-rev", load_spec=fake_loader([]))
    with pytest.raises(ConfigError, match="is not a git revision"):
        load_side(f"{spec}@--output=x", load_spec=fake_loader([]))
    spec.write_text("broken: true\n")
    git(repo, "commit", "-q", "-am", "broken")
    with pytest.raises(SpecError) as caught:
        load_side(f"{spec}@HEAD", load_spec=fake_loader([]))
    assert caught.value.problems[0].file == f"{spec}@HEAD"
    assert sorted(p.name for p in spec.parent.iterdir()) == ["p.yaml"]


def test_diff_json_shape() -> None:
    a = side_from_manifest(manifest_of(shot("s1")), label="a")
    b = side_from_manifest(manifest_of(shot("s1", prompt="other words", duration=10)), label="b")
    data = json.loads(json.dumps(diff_to_json(diff_sides(a, b))))
    assert data["shots"][0]["changes"][0] == {"field": "duration", "old": 5, "new": 10}
    assert data["shots"][0]["word_diff"]["prompt"] == "[-prompt of s1-]{+other words+}"
