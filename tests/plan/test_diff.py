from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import ConfigError, ManifestError, SpecError
from orchestrator.plan.diff import (
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
from orchestrator.spec.fingerprint import request_record
from orchestrator.spec.shot import ImageRef, ResolvedShot
from orchestrator.store.manifest import Manifest, ShotRecord, save_manifest
from tests.helpers import hand_shot, write_board

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


# --- SPEC@REV: a real git repository, real boards, the real spec loader ----------------------------------------

SPEC = """\
version: 1
project: demo
image_sets:
  pair: [boards/a.png, boards/b.png]
shots:
  - {id: s1, images: pair, prompt: a boat at dawn}
  - {id: s2, images: [boards/a.png, boards/c.png], prompt: gulls}
"""


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Two commits: HEAD~1 has SPEC; HEAD changes s1's prompt, drops s2 and adds s3."""
    root = tmp_path / "repo"
    for index, name in enumerate("abc"):
        write_board(root / "specs" / "boards" / f"{name}.png", colour=(index * 50, 10, 10))
    git(root, "init", "-q")
    spec = root / "specs" / "p.yaml"
    spec.write_text(SPEC)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "one")
    spec.write_text(SPEC.replace("at dawn", "at dusk").replace("id: s2", "id: s3"))
    git(root, "commit", "-q", "-am", "two")
    return root


@needs_git
def test_spec_at_revision(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = repo / "specs" / "p.yaml"
    spec.write_text("version: 1\nproject: other\nshots: []\n")  # the working copy must not matter for @REV

    result = diff_paths(f"{spec}@HEAD~1", f"{spec}@HEAD")

    assert [(s.shot_id, s.kind) for s in result.shots] == [("s1", CHANGED), ("s3", ADDED), ("s2", REMOVED)]
    assert result.shots[0].word_diffs is not None
    assert format_word_diff(result.shots[0].word_diffs["prompt"]) == "a boat at [-dawn-]{+dusk+}"
    assert sorted(p.name for p in spec.parent.iterdir()) == ["boards", "p.yaml"]  # nothing written beside it
    # A relative SPEC@REV from inside the repository works too.
    monkeypatch.chdir(repo)
    assert load_side("specs/p.yaml@HEAD~1").label == "specs/p.yaml@HEAD~1"


@needs_git
def test_spec_at_revision_reads_the_boards_as_they_were_then(repo: Path) -> None:
    # Redraw a board and commit it: the spec's text is the same, the render is not.
    spec = repo / "specs" / "p.yaml"
    board = repo / "specs" / "boards" / "b.png"
    write_board(board, colour=(1, 2, 3))
    git(repo, "commit", "-q", "-am", "redraw b")
    result = diff_paths(f"{spec}@HEAD~1", f"{spec}@HEAD")
    assert [(s.shot_id, s.kind, s.fields) for s in result.shots if s.kind != UNCHANGED] == [
        ("s1", CHANGED, ["images[1]"])
    ]
    # The work tree, redrawn again but not committed, differs from HEAD, and HEAD from itself not at all.
    write_board(board, colour=(9, 9, 9))
    assert [s.fields for s in diff_paths(f"{spec}@HEAD", str(spec)).shots if s.kind == CHANGED] == [["images[1]"]]
    assert diff_paths(f"{spec}@HEAD", f"{spec}@HEAD").equal
    # Each revision's board is identified by the content it had then, whatever the cache saw before.
    old, new, now = (load_side(label).shots["s1"] for label in (f"{spec}@HEAD~1", f"{spec}@HEAD", str(spec)))
    assert len({str(side.request["images"][1]) for side in (old, new, now)}) == 3


@needs_git
def test_a_board_missing_at_the_revision_is_one_line_naming_it(repo: Path) -> None:
    spec = repo / "specs" / "p.yaml"
    write_board(repo / "specs" / "boards" / "new.png", colour=(7, 7, 7))  # in the work tree only
    spec.write_text(SPEC.replace("boards/c.png", "boards/new.png"))
    git(repo, "commit", "-q", "-m", "spec only", "--", "specs/p.yaml")
    with pytest.raises(SpecError) as caught:
        load_side(f"{spec}@HEAD")
    [problem] = caught.value.problems
    assert problem.format() == f"{spec}@HEAD:7:37: shot s2: images[1] `boards/new.png` does not exist at HEAD"
    assert load_side(str(spec)).shots["s2"].request  # the work tree has it


@needs_git
def test_spec_at_revision_errors(repo: Path, tmp_path: Path) -> None:
    spec = repo / "specs" / "p.yaml"
    with pytest.raises(ConfigError, match=r"cannot read the spec at that revision .'no-such-rev' is not a commit"):
        load_side(f"{spec}@no-such-rev")
    with pytest.raises(ConfigError, match="is not a git revision"):
        load_side(f"{spec}@--output=x")
    with pytest.raises(ConfigError, match=r"specs/gone.yaml is not in HEAD"):
        load_side(f"{repo / 'specs' / 'gone.yaml'}@HEAD")
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(ConfigError, match="not inside a git repository"):
        load_side(f"{outside / 'p.yaml'}@HEAD")
    spec.write_text("version: 1\nproject: demo\nshots: []\n")
    git(repo, "commit", "-q", "-am", "broken")
    with pytest.raises(SpecError) as caught:
        load_side(f"{spec}@HEAD")
    assert caught.value.problems[0].file == f"{spec}@HEAD"
    assert sorted(p.name for p in spec.parent.iterdir()) == ["boards", "p.yaml"]


def test_diff_json_shape() -> None:
    a = side_from_manifest(manifest_of(shot("s1")), label="a")
    b = side_from_manifest(manifest_of(shot("s1", prompt="other words", duration=10)), label="b")
    data = json.loads(json.dumps(diff_to_json(diff_sides(a, b))))
    assert data["shots"][0]["changes"][0] == {"field": "duration", "old": 5, "new": 10}
    assert data["shots"][0]["word_diff"]["prompt"] == "[-prompt of s1-]{+other words+}"


def test_a_side_is_read_from_the_store_as_a_folder_or_as_its_database(tmp_path: Path) -> None:
    from orchestrator.store.manifest import ManifestStore

    out = tmp_path / "out"
    store = ManifestStore.open(out / "manifest.json", project="demo")
    store.update("s1", status="succeeded", fingerprint="f" * 64, request={"prompt": "from the store"}, attempts=1)
    store.close()
    stale = Manifest(project="demo", shots={"old": ShotRecord(status="succeeded", request={"prompt": "stale"})})
    save_manifest(stale, out / "manifest.json")  # a manifest.json that says otherwise: the database is the truth
    for side in (load_side(str(out)), load_side(str(out / "renders.db"))):
        assert set(side.shots) == {"s1"} and side.shots["s1"].request == {"prompt": "from the store"}
    assert set(load_side(str(out / "manifest.json")).shots) == {"s1"}  # beside its database, the file is not read


# --- variants: the store's renders compared variant by variant ------------------------------------------------------

VARIANTS_SPEC = """\
version: 1
project: demo
output_dir: out
shots:
  - {id: s1, images: [a.png, b.png], prompt: "a boat at dawn"}
  - id: s2
    images: [a.png, b.png]
    prompt: "gulls"
    takes: 2
    variants: {wide: {prompt: "gulls over the bay"}, pro: {mode: pro}}
"""


def rendered_variants(tmp_path: Path) -> Path:
    """The spec above, and a store holding what a run of it left: every take of every request finished."""
    from orchestrator.spec.load import load_project
    from orchestrator.store import RenderStore

    write_board(tmp_path / "a.png", (400, 300), (200, 40, 40))
    write_board(tmp_path / "b.png", (400, 300), (40, 200, 40))
    spec = tmp_path / "p.yaml"
    spec.write_text(VARIANTS_SPEC)
    project = load_project(spec)
    store = RenderStore.open(project.output_dir, project="demo", stamp_run=False)
    try:
        for request in project.shots:
            for take in range(1, request.takes + 1):
                render = store.new_render(
                    request.id,
                    fingerprint=request.fingerprint,
                    request=request_record(request),
                    take=take,
                    variant=request.variant,
                )
                store.update_render(render.render_id, status="succeeded")
    finally:
        store.close(finished=False)
    return spec


def test_a_spec_against_its_store_compares_a_shot_with_variants_variant_by_variant(tmp_path: Path) -> None:
    spec = rendered_variants(tmp_path)
    out = str(tmp_path / "out")
    same = diff_paths(out, str(spec))
    kinds = [(s.shot_id, s.kind) for s in same.shots]
    assert kinds == [("s1", UNCHANGED), ("s2/wide", UNCHANGED), ("s2/pro", UNCHANGED)]
    assert same.counts()[ADDED] == same.counts()[REMOVED] == 0

    spec.write_text(VARIANTS_SPEC.replace("gulls over the bay", "gulls over the harbour"))
    edited = {s.shot_id: s for s in diff_paths(out, str(spec)).shots}
    assert (edited["s2/wide"].kind, edited["s2/wide"].fields) == (CHANGED, ["prompt"])
    assert format_word_diff(edited["s2/wide"].word_diffs["prompt"]) == "gulls over the [-bay-]{+harbour+}"
    assert edited["s2/pro"].kind == UNCHANGED and edited["s1"].kind == UNCHANGED

    # A snapshot given as a file reads the same; two specs still compare request by request.
    snapshot = diff_paths(str(tmp_path / "out" / "manifest.json"), str(spec))
    assert {s.shot_id: s.kind for s in snapshot.shots} == {k: v.kind for k, v in edited.items()}
    both = diff_paths(str(spec), str(spec))
    assert [s.shot_id for s in both.shots] == ["s1", "s2/wide", "s2/pro"] and both.equal


def test_a_variant_the_spec_dropped_shows_as_removed(tmp_path: Path) -> None:
    spec = rendered_variants(tmp_path)
    spec.write_text(VARIANTS_SPEC.replace(", pro: {mode: pro}", ""))
    result = diff_paths(str(tmp_path / "out"), str(spec))
    kinds = [(s.shot_id, s.kind) for s in result.shots]
    assert kinds == [("s1", UNCHANGED), ("s2/wide", UNCHANGED), ("s2/pro", REMOVED)]
