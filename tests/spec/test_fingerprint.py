"""Fingerprint properties: stable under what does not change the pixels, sensitive to everything that does."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from orchestrator.spec.fingerprint import (
    FieldChange,
    canonical_json,
    changed_fields,
    external_task_id,
    field_changes,
    fingerprint,
    fingerprint_of,
    request_record,
)
from orchestrator.spec.shot import DynamicMask, ImageRef, Location, ResolvedShot, TrajectoryPoint

hashes = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
texts = st.text(max_size=60)
points = st.builds(TrajectoryPoint, x=st.integers(0, 2000), y=st.integers(0, 2000))


def image(sha: str, ref: str = "boards/a.png") -> ImageRef:
    return ImageRef(source="path", ref=ref, path=Path("/specs") / ref, sha256=sha, width=640, height=360, format="PNG")


def shot(**overrides: Any) -> ResolvedShot:
    fields: dict[str, Any] = {
        "id": "s01",
        "index": 0,
        "project": "demo",
        "model": "kling-v1-6",
        "images": (image("a" * 64), image("b" * 64, "boards/b.png")),
        "prompt": "a boat at dawn",
    }
    fields.update(overrides)
    return ResolvedShot(**fields)


@st.composite
def shots(draw: st.DrawFn) -> ResolvedShot:
    images = tuple(image(h) for h in draw(st.lists(hashes, min_size=2, max_size=4)))
    masks = draw(
        st.lists(
            st.builds(
                DynamicMask,
                mask=hashes.map(image),
                trajectories=st.lists(points, min_size=2, max_size=5).map(tuple),
            ),
            max_size=2,
        )
    )
    return shot(
        model=draw(st.sampled_from(["kling-v1-6", "kling-v2"])),
        mode=draw(st.sampled_from(["std", "pro"])),
        duration=draw(st.sampled_from([5, 10])),
        aspect_ratio=draw(st.sampled_from(["16:9", "9:16", "1:1"])),
        cfg_scale=draw(st.none() | st.floats(0, 1)),
        prompt=draw(texts),
        negative_prompt=draw(st.none() | texts),
        images=images,
        static_mask=draw(st.none() | hashes.map(image)),
        dynamic_masks=tuple(masks),
    )


@given(shots(), st.integers(0, 500), st.text(max_size=20), st.none() | st.text(max_size=40))
def test_non_render_fields_do_not_change_the_fingerprint(
    base: ResolvedShot, index: int, shot_id: str, callback: str | None
) -> None:
    # Position in the spec, where the YAML node sits, the callback URL and a stale stored
    # fingerprint are not render fields; the shot id and project only name the render (they are in the external id,
    # not the fingerprint).
    moved = dataclasses.replace(
        base,
        index=index,
        id=shot_id,
        project="other",
        callback_url=callback,
        location=Location("elsewhere.yaml", 99, 3),
        fingerprint="stale",
    )
    assert fingerprint(moved) == fingerprint(base)


@given(shots(), st.text(min_size=1, max_size=30))
def test_moving_an_image_file_keeps_the_fingerprint(base: ResolvedShot, folder: str) -> None:
    moved = tuple(
        dataclasses.replace(img, ref=f"{folder}/{i}.png", path=Path("/else") / folder / f"{i}.png")
        for i, img in enumerate(base.images)
    )
    assert fingerprint(dataclasses.replace(base, images=moved)) == fingerprint(base)


@given(shots())
def test_fingerprint_is_a_pure_function_of_the_shot(base: ResolvedShot) -> None:
    rebuilt = ResolvedShot(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    assert fingerprint(rebuilt) == fingerprint(base)
    assert len(fingerprint(base)) == 64


@given(shots())
def test_the_fingerprint_of_a_shots_fields_is_the_shots(base: ResolvedShot) -> None:
    # The resolver hashes the fields before it builds the shot: both ways must agree, or every plan would say changed.
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base) if f.name != "fingerprint"}
    assert fingerprint_of(fields) == fingerprint(base) == fingerprint(ResolvedShot(**fields))


NEW_GROUP = DynamicMask(image("1" * 64), (TrajectoryPoint(1, 2), TrajectoryPoint(3, 4)))


def _other_hash(sha: str | None) -> str:
    return "f" * 64 if sha != "f" * 64 else "e" * 64


def _other_mask(s: ResolvedShot) -> tuple[DynamicMask, ...]:
    if not s.dynamic_masks:
        return (NEW_GROUP,)
    first, *rest = s.dynamic_masks
    other = "2" * 64 if first.mask.sha256 != "2" * 64 else "3" * 64
    return (DynamicMask(image(other), first.trajectories), *rest)


def _moved_point(s: ResolvedShot) -> tuple[DynamicMask, ...]:
    if not s.dynamic_masks:
        return (NEW_GROUP,)
    first, *rest = s.dynamic_masks
    *head, last = first.trajectories
    moved = (*head, TrajectoryPoint(last.x + 1, last.y))
    return (DynamicMask(first.mask, moved), *rest)


# Each render field, with a way to change it to a different value.
MUTATIONS: dict[str, Any] = {
    "model": lambda s, d: {"model": s.model + d.draw(st.text(min_size=1, max_size=5))},
    "mode": lambda s, d: {"mode": "pro" if s.mode == "std" else "std"},
    "duration": lambda s, d: {"duration": 10 if s.duration == 5 else 5},
    "aspect_ratio": lambda s, d: {"aspect_ratio": "1:1" if s.aspect_ratio != "1:1" else "9:16"},
    "cfg_scale": lambda s, d: {"cfg_scale": d.draw(st.floats(0, 1).filter(lambda v: v != s.cfg_scale))},
    "prompt": lambda s, d: {"prompt": s.prompt + d.draw(st.text(min_size=1, max_size=5))},
    "negative_prompt": lambda s, d: {"negative_prompt": (s.negative_prompt or "") + "x"},
    "images[0]": lambda s, d: {"images": (image(_other_hash(s.images[0].sha256)), *s.images[1:])},
    "image count": lambda s, d: {"images": (*s.images, image("c" * 64))},
    "static_mask": lambda s, d: {"static_mask": None if s.static_mask else image("d" * 64)},
    "dynamic mask image": lambda s, d: {"dynamic_masks": _other_mask(s)},
    "trajectory": lambda s, d: {"dynamic_masks": _moved_point(s)},
}


@given(shots(), st.sampled_from(sorted(MUTATIONS)), st.data())
def test_every_render_field_changes_the_fingerprint(base: ResolvedShot, name: str, data: st.DataObject) -> None:
    changed = dataclasses.replace(base, **MUTATIONS[name](base, data))
    assert fingerprint(changed) != fingerprint(base)


@given(shots())
def test_image_order_matters(base: ResolvedShot) -> None:
    swapped = dataclasses.replace(base, images=tuple(reversed(base.images)))
    if [i.sha256 for i in swapped.images] != [i.sha256 for i in base.images]:
        assert fingerprint(swapped) != fingerprint(base)


def test_trajectory_point_order_matters() -> None:
    a = shot(dynamic_masks=(DynamicMask(image("1" * 64), (TrajectoryPoint(1, 2), TrajectoryPoint(3, 4))),))
    b = shot(dynamic_masks=(DynamicMask(image("1" * 64), (TrajectoryPoint(3, 4), TrajectoryPoint(1, 2))),))
    assert fingerprint(a) != fingerprint(b)


def test_url_images_are_identified_by_url() -> None:
    a = shot(images=(ImageRef(source="url", ref="u", url="https://x/1.png"), image("a" * 64)))
    b = shot(images=(ImageRef(source="url", ref="u", url="https://x/2.png"), image("a" * 64)))
    assert fingerprint(a) != fingerprint(b)


def test_field_changes_name_fields_and_keep_old_and_new_values() -> None:
    old = request_record(shot())
    new = request_record(shot(mode="pro", prompt="a boat at dusk", images=(image("a" * 64), image("9" * 64))))
    changes = field_changes(old, new)
    assert [c.name for c in changes] == ["mode", "prompt", "images[1]"]
    assert changes[0] == FieldChange("mode", "std", "pro")
    assert [c.describe() for c in changes] == ["mode: std -> pro", "prompt", "images[1]"]
    assert changed_fields(old, new) == ["mode", "prompt", "images[1]"]


def test_field_changes_report_a_different_image_count_as_images() -> None:
    old = request_record(shot())
    new = request_record(shot(images=(image("a" * 64), image("b" * 64), image("c" * 64))))
    assert changed_fields(old, new) == ["images"]


def test_unset_scalar_is_described_as_unset() -> None:
    change = field_changes(request_record(shot()), request_record(shot(cfg_scale=0.5)))[0]
    assert change.describe() == "cfg_scale: (unset) -> 0.5"


def test_callback_url_is_recorded_but_not_compared() -> None:
    old, new = request_record(shot()), request_record(shot(callback_url="https://hooks.example.com/k"))
    assert new["callback_url"] == "https://hooks.example.com/k"
    assert field_changes(old, new) == []


@given(st.text(max_size=80), st.text(max_size=80))
def test_external_task_id_is_short_and_safe(project: str, shot_id: str) -> None:
    eid = external_task_id(shot(project=project, id=shot_id))
    assert len(eid) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in eid)


# --- the same properties through real specs: what the YAML looks like never matters -----------------------------

BASE_SPEC: dict[str, Any] = {
    "version": 1,
    "project": "demo",
    "output_dir": "renders",
    "defaults": {"mode": "std", "negative_prompt": "blurry, text"},
    "vars": {"style": "soft dawn light"},
    "image_sets": {"pier": ["boards/b0.png", "boards/b1.png"]},
    "shots": [
        {"id": "s1", "images": "pier", "prompt": "{{ hero }} walks, {{ style }}", "vars": {"hero": "Mara"}},
        {"id": "s2", "images": ["boards/b1.png", "boards/b2.png"], "prompt": "Waves", "duration": 10},
        {"id": "s3", "images": ["boards/b2.png", "boards/b0.png"], "prompt": "A lamp", "mode": "pro", "cfg_scale": 0.7},
    ],
}


@pytest.fixture
def boards(tmp_path: Path) -> Path:
    (tmp_path / "boards").mkdir()
    for i in range(3):
        Image.new("RGB", (640, 360), (80 * i, 120, 30 * i)).save(tmp_path / "boards" / f"b{i}.png")
    return tmp_path


def spec_fingerprints(folder: Path, text: str, name: str = "project.yaml") -> dict[str, str]:
    from orchestrator.spec.load import load_project

    path = folder / name
    path.write_text(text)
    return {shot.id: shot.fingerprint for shot in load_project(path).shots}


def shuffled(data: Any, draw: st.DrawFn) -> Any:
    """The same data with every mapping's keys in a drawn order (lists keep their order: it means something)."""
    if isinstance(data, dict):
        keys = draw(st.permutations(list(data)))
        return {key: shuffled(data[key], draw) for key in keys}
    if isinstance(data, list):
        return [shuffled(item, draw) for item in data]
    return data


@st.composite
def formattings(draw: st.DrawFn) -> str:
    data = shuffled(BASE_SPEC, draw)
    flow = draw(st.sampled_from([False, None]))
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=flow, indent=draw(st.integers(2, 6)), width=4096)
    if flow is False and draw(st.booleans()):
        # Comments before top-level keys and at the end of the file.
        lines = text.splitlines()
        text = "\n".join(f"# note {i}\n{line}" if not line.startswith(" ") else line for i, line in enumerate(lines))
        text += "\n# the end\n"
    return text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(formattings())
def test_spec_formatting_key_order_and_comments_keep_fingerprints(boards: Path, text: str) -> None:
    expected = spec_fingerprints(boards, yaml.safe_dump(BASE_SPEC, sort_keys=False), "base.yaml")
    assert spec_fingerprints(boards, text) == expected


def test_spec_var_rename_other_shots_and_moved_images_keep_fingerprints(boards: Path) -> None:
    expected = spec_fingerprints(boards, yaml.safe_dump(BASE_SPEC))
    renamed = yaml.safe_dump(BASE_SPEC).replace("hero", "person")
    assert "person" in renamed
    assert spec_fingerprints(boards, renamed, "renamed.yaml") == expected

    fewer = {**BASE_SPEC, "shots": [{"id": "s0", "images": "pier", "prompt": "new"}, BASE_SPEC["shots"][2]]}
    assert spec_fingerprints(boards, yaml.safe_dump(fewer), "fewer.yaml")["s3"] == expected["s3"]

    shutil.copytree(boards / "boards", boards / "art" / "moved")
    moved = yaml.safe_dump(BASE_SPEC).replace("boards/", "art/moved/")
    assert spec_fingerprints(boards, moved, "moved.yaml") == expected


def test_spec_render_field_edits_change_only_that_shot(boards: Path) -> None:
    expected = spec_fingerprints(boards, yaml.safe_dump(BASE_SPEC))
    edited = yaml.safe_dump(BASE_SPEC).replace("Waves", "Big waves")
    got = spec_fingerprints(boards, edited, "edited.yaml")
    assert [shot_id for shot_id in expected if got[shot_id] != expected[shot_id]] == ["s2"]
    s3 = {**BASE_SPEC["shots"][2], "images": ["boards/b0.png", "boards/b2.png"]}
    swapped = yaml.safe_dump({**BASE_SPEC, "shots": [*BASE_SPEC["shots"][:2], s3]})
    got = spec_fingerprints(boards, swapped, "swapped.yaml")
    assert [shot_id for shot_id in expected if got[shot_id] != expected[shot_id]] == ["s3"]
    callback = {**BASE_SPEC, "defaults": {**BASE_SPEC["defaults"], "callback_url": "https://hooks.example.com/k"}}
    assert spec_fingerprints(boards, yaml.safe_dump(callback), "callback.yaml") == expected


def test_the_fingerprint_of_a_known_shot_never_changes() -> None:
    # Computed once with ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``: however the
    # canonical JSON is built, every folder's recorded fingerprints must still match their unchanged shots.
    known = shot(
        prompt='Mara crosse le pont — 夜明け "quoted"',
        negative_prompt="blurry",
        cfg_scale=0.5,
        mode="pro",
        duration=10,
        dynamic_masks=(DynamicMask(mask=image("c" * 64), trajectories=(TrajectoryPoint(1, 2), TrajectoryPoint(3, 4))),),
    )
    assert fingerprint(known) == "b1e10fa860dacac467d1a86c051ff95355c46c3529690920228fdbef14a77fa4"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_canonical_json_is_json_dumps_with_sorted_keys_and_text_as_written(value: dict[str, Any]) -> None:
    assert canonical_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
