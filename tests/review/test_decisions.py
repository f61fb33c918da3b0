"""The decisions file and the review functions: round trips, atomic writes, stable bytes, stale approvals, retakes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import DecisionError, SpecError
from orchestrator.review import (
    APPROVED,
    HOLD,
    PENDING_REVIEW,
    RETAKE,
    UNRENDERED,
    Decision,
    Decisions,
    Review,
    TakeRef,
    decision_changes,
    load_decisions,
    save_decisions,
)
from orchestrator.review import decisions as decisions_module
from orchestrator.store.manifest import SUCCEEDED

from .conftest import OLD_FINGERPRINT, Production

FP = "a" * 64


def test_a_file_round_trips_every_field(tmp_path: Path) -> None:
    path = tmp_path / "project.review.yaml"
    decisions = Decisions(
        path,
        {
            "s02": Decision("s02", RETAKE, TakeRef(FP, 2, "wide"), 3, "slower: ünïcode ok\nsecond line", "bo", "T2"),
            "s01": Decision("s01", APPROVED, TakeRef(FP, 1), None, "", "alice", "2026-12-02T00:30:00.000Z"),
        },
    )
    save_decisions(decisions, order=["s01", "s02"])
    assert load_decisions(path) == decisions
    text = path.read_text()
    assert text.index("s01:") < text.index("s02:")  # spec order, not the order decisions were made
    assert yaml.safe_load(text)["shots"]["s02"]["select"] == {"take": 2, "variant": "wide", "fingerprint": FP}


def test_the_same_decisions_give_the_same_bytes_and_one_change_is_a_small_diff(tmp_path: Path) -> None:
    path = tmp_path / "p.review.yaml"
    shots = {f"s{i:02}": Decision(f"s{i:02}", APPROVED, TakeRef(FP, 1), None, "", "al", "T") for i in range(20)}
    save_decisions(Decisions(path, dict(reversed(list(shots.items())))), order=sorted(shots))
    first = path.read_text()
    save_decisions(Decisions(path, shots), order=sorted(shots))
    assert path.read_text() == first
    shots["s07"] = Decision("s07", HOLD, TakeRef(FP, 1), None, "wait", "al", "T")
    save_decisions(Decisions(path, shots), order=sorted(shots))
    changed = set(path.read_text().splitlines()) ^ set(first.splitlines())
    assert 0 < len(changed) <= 3


def test_a_failed_write_keeps_the_old_file_and_says_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.review.yaml"
    save_decisions(Decisions(path, {"s01": Decision("s01", HOLD)}))
    before = path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(DecisionError, match="cannot write the decisions \\(No space left on device\\)"):
        save_decisions(Decisions(path, {"s01": Decision("s01", APPROVED, TakeRef(FP))}))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_a_broken_file_is_one_located_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "p.review.yaml"
    path.write_text(
        "version: 1\nshots:\n  s01:\n    status: aproved\n  s02:\n    status: approved\n"
        "    select: {take: 0, fingerprint: abc}\n  s03: {status: hold, colour: red}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_decisions(path)
    lines = [problem.format() for problem in caught.value.problems]
    assert lines[0] == f"{path}:4:13: unknown status 'aproved'; use one of pending-review, approved, retake, hold"
    assert any(line.startswith(f"{path}:7:") and "`fingerprint`" in line for line in lines)
    assert any(line.startswith(f"{path}:7:") and "`take`" in line for line in lines)
    assert any(line.startswith(f"{path}:8:") and "unknown key 'colour'" in line for line in lines)


def test_only_the_safe_loader_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.review.yaml"
    path.write_text("version: 1\nshots: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(SpecError):
        load_decisions(path)


# --- the functions, on a store with several renders per shot -----------------------------------------------------


def test_takes_lists_every_render_current_request_first(production: Production) -> None:
    s01, s02, s03 = production.review.shots()
    assert [(row.number, row.ref.take, row.status, row.stale) for row in s01.takes] == [
        (1, 1, SUCCEEDED, False),
        (2, 2, SUCCEEDED, False),
        (3, 3, "failed", False),
    ]
    assert [(row.ref.fingerprint == OLD_FINGERPRINT, row.stale) for row in s02.takes] == [(False, False), (True, True)]
    assert (s01.status, s02.status, s03.status) == (PENDING_REVIEW, PENDING_REVIEW, UNRENDERED)
    assert s01.takes[0].video is not None and (production.out / s01.takes[0].video).is_file()
    assert s01.takes[2].video is None and s01.takes[0].cost == 2.0


def test_select_approve_and_the_file_they_write(production: Production) -> None:
    review = production.review
    review.select("s01", 2, by="alice")
    shot = review.shot("s01")
    assert shot.selected is not None and shot.selected.ref == TakeRef(production.shot("s01").fingerprint, 2)
    review.approve("s01", by="bo", note="the one")
    data = yaml.safe_load(production.decisions.read_text())["shots"]["s01"]
    assert data["status"] == APPROVED and data["by"] == "bo" and data["note"] == "the one"
    assert data["select"] == {"take": 2, "fingerprint": production.shot("s01").fingerprint}
    assert review.shot("s01").status == APPROVED


def test_a_fresh_clone_and_store_keep_the_select(production: Production, tmp_path: Path) -> None:
    """The select names fingerprint and take: another folder's store, with other render ids, finds the same take."""
    production.review.select("s01", 2, by="al")
    clone = Review(production.spec, production.review.project, out=tmp_path / "elsewhere")
    assert clone.shot("s01").selected is None  # nothing rendered there yet
    other = Production(production.spec, tmp_path / "elsewhere", clone)
    other.add_take("s01", 2)  # a different render id, same request and take
    selected = clone.shot("s01").selected
    assert selected is not None and selected.ref.take == 2


def test_an_approval_goes_stale_when_the_shot_changes(production: Production) -> None:
    production.review.approve("s02", 1, by="al")
    assert production.review.stale_approvals() == ()
    production.spec.write_text(production.spec.read_text().replace("gulls lift off", "gulls settle on"))
    changed = Review.open(production.spec)
    assert changed.shot("s02").status == "approved (stale)"
    assert changed.stale_approvals() == ("s02",)
    selected = changed.shot("s02").selected  # the approved take is still listed, now of an older request
    assert selected is not None and selected.stale and selected.number == 1  # the newest of the older ones first


def test_a_retake_wants_one_more_take_until_it_is_rendered(production: Production) -> None:
    review = production.review
    with pytest.raises(DecisionError, match="needs a note"):
        review.retake("s01", "  ")
    review.retake("s01", "slower at the end", by="al")
    review.retake("s01", "slower, and warmer", by="al")  # asked again before it was rendered: the same take
    (wanted,) = review.pending_retakes()
    assert (wanted.shot_id, wanted.take, wanted.note) == ("s01", 4, "slower, and warmer")
    production.add_take("s01", 4)
    assert review.pending_retakes() == ()
    assert [row.ref.take for row in review.shot("s01").takes] == [1, 2, 3, 4]  # the old takes stay


def test_refusals_are_one_line_each(production: Production) -> None:
    review = production.review
    with pytest.raises(DecisionError, match="no shot 's99'"):
        review.select("s99", 1)
    with pytest.raises(DecisionError, match="no take 7; pick 1 to 3"):
        review.select("s01", 7)
    with pytest.raises(DecisionError, match="take 3 is failed, not finished"):
        review.select("s01", 3)
    with pytest.raises(DecisionError, match="2 finished takes and none selected"):
        review.approve("s01")
    with pytest.raises(DecisionError, match="older request"):
        review.approve("s02", 2)
    with pytest.raises(DecisionError, match="nothing to retake"):
        review.retake("s03", "again")
    with pytest.raises(DecisionError, match="control characters"):
        review.hold("s01", "\x1b[31mred")
    assert not production.decisions.exists()


def test_decision_changes_name_what_changed(tmp_path: Path) -> None:
    path = tmp_path / "p.review.yaml"
    old = Decisions(path, {"s01": Decision("s01", PENDING_REVIEW, TakeRef(FP, 1)), "s02": Decision("s02", HOLD)})
    new = Decisions(
        path,
        {
            "s01": Decision("s01", APPROVED, TakeRef(FP, 2), by="al"),
            "s02": Decision("s02", HOLD, by="someone else", at="later"),  # decided again, nothing new
            "s03": Decision("s03", RETAKE, TakeRef(FP, 1), 2, "too fast"),
        },
    )
    changes = decision_changes(old, new)
    assert [change.shot_id for change in changes] == ["s01", "s03"]
    assert changes[0].describe() == (f"pending-review -> approved; select take 1 ({FP[:12]}) -> take 2 ({FP[:12]})")
    assert "retake wants take 2" in changes[1].describe()
    assert decision_changes(new, new) == ()


def test_the_written_file_is_what_the_loader_reads(production: Production) -> None:
    production.review.hold("s03", "waiting for the new boards", by="al")
    text = production.decisions.read_text()
    assert text.startswith("# Review decisions for project.yaml")
    assert decisions_module.load_decisions(production.decisions).get("s03").note == "waiting for the new boards"
