"""The store's values: output names that carry take, variant and attempt; requests that never hold secrets."""

from __future__ import annotations

import pytest

from orchestrator.store import FolderFacts, FolderState, RenderRecord, ShotRow, canonical_request, output_stem

FP = "0123456789abcdef" * 4


def test_output_names_of_take_one_without_variant_are_todays() -> None:
    assert output_stem(FP, attempt=1) == "0123456789ab"
    assert output_stem(FP, attempt=2) == "0123456789ab-r2"


def test_output_names_carry_take_and_variant() -> None:
    assert output_stem(FP, take=3, attempt=1) == "0123456789ab-t3"
    assert output_stem(FP, take=2, variant="wide", attempt=4) == "0123456789ab-t2-wide-r4"
    render = RenderRecord(render_id=1, shot_id="s01", fingerprint=FP, take=2, variant="wide", attempt=4)
    assert render.output_stem == "0123456789ab-t2-wide-r4"


def test_canonical_request_is_one_text_whatever_the_key_order() -> None:
    assert canonical_request({"b": 1, "a": [1, 2]}) == canonical_request({"a": [1, 2], "b": 1}) == '{"a":[1,2],"b":1}'


@pytest.mark.parametrize(
    "request_record",
    [
        {"prompt": "x", "api_key": "sk-live"},
        {"prompt": "x", "headers": {"Authorization": "Bearer t"}},
        {"images": ["data:image/png;base64,iVBORw0KGgo="]},
        {"images": ["iVBORw0KGgo" * 2000]},
    ],
)
def test_a_request_with_a_key_or_image_bytes_is_refused(request_record: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="never"):
        canonical_request(request_record)


def test_request_is_a_fresh_copy_each_time() -> None:
    render = RenderRecord(render_id=1, shot_id="s01", fingerprint=FP, request_json='{"prompt":"x"}')
    render.request["prompt"] = "changed"
    assert render.request == {"prompt": "x"}


def test_folder_state_finds_a_shots_renders_and_its_current_one() -> None:
    old = RenderRecord(render_id=1, shot_id="s01", fingerprint=FP)
    new = RenderRecord(render_id=2, shot_id="s01", fingerprint=FP, attempt=2)
    other = RenderRecord(render_id=3, shot_id="s02", fingerprint=FP)
    state = FolderState(
        facts=FolderFacts(project="pilot"),
        shots=(ShotRow("s01", 0, current_render_id=2), ShotRow("s02", 1)),
        renders=(old, new, other),
    )
    assert state.shot_ids == ("s01", "s02")
    assert state.renders_of("s01") == (old, new)
    assert state.current("s01") == new
    assert state.current("s02") is None
    assert state.current("nope") is None
    assert state.render(3) == other
