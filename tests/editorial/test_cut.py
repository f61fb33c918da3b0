"""The cut: the newest finished render stands in for each shot's select; a shot with none holds its board."""

from __future__ import annotations

from orchestrator.editorial.cut import PENDING_REVIEW
from tests.editorial.conftest import Store


def test_the_newest_finished_render_stands_in_for_the_select(store: Store) -> None:
    cut = store.cut()
    state = store.state()
    assert [shot.shot_id for shot in cut.shots] == ["shot0", "shot1", "shot2"]
    first, newest = state.renders_of("shot1")
    shot1 = cut.shots[1]
    assert shot1.media == (store.out / newest.outputs[0].path).absolute()
    assert shot1.media != (store.out / first.outputs[0].path).absolute()
    assert shot1.fingerprint == newest.fingerprint and shot1.prompt == "pan 1, slower"
    assert shot1.task_id == newest.task_id and shot1.take == 1 and shot1.cost == newest.cost
    assert all(shot.stand_in and shot.review_status == PENDING_REVIEW for shot in cut.shots)


def test_a_shot_without_a_finished_render_holds_its_first_board(store: Store) -> None:
    held = store.cut().shots[2]
    assert held.held and held.media is None and held.take is None
    assert held.board is not None and held.board.name == "b0.png" and held.spec_duration == 5


def test_a_render_whose_file_is_gone_is_no_select(store: Store) -> None:
    from orchestrator.editorial.cut import newest_finished

    renders = store.state().renders_of("shot0")
    assert newest_finished(renders, store.out) is not None
    assert newest_finished(renders, store.out / "elsewhere") is None
