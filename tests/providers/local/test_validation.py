"""The simulator refuses every malformed request the wire contract names, like the real service."""

from __future__ import annotations

import base64
import functools
import io

import httpx
import pytest
from PIL import Image

from orchestrator.providers.local import LocalSimulator, SimulatorOptions

CREATE = "/kling/v1/videos/multi-image2video"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_image(size, fmt="PNG"):
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, fmt)
    return out.getvalue()


def _img(make_image, size, fmt="PNG"):
    return base64.b64encode(make_image(size, fmt=fmt)).decode()


@pytest.fixture(scope="module")
def shared_sim():
    # One server for the many refusal cases: they create nothing, so nothing leaks between them.
    with LocalSimulator(SimulatorOptions(cheap_video=True, render_time=0.1)) as sim:
        yield sim


@pytest.fixture
def shared_client(shared_sim):
    shared_sim.reset()
    with httpx.Client(base_url=shared_sim.base_url, headers={"Authorization": "Bearer k"}) as client:
        yield client


@functools.cache
def _bad_cases():
    board = _img(make_image, (320, 320))
    gif = base64.b64encode(b"GIF89a" + b"\0" * 64).decode()
    huge = base64.b64encode(PNG_MAGIC + b"\0" * (10 * 1024 * 1024)).decode()
    points = [{"x": 1, "y": 2}]
    return {
        "no image_list": ({"image_list": None}, "image_list"),
        "one image": ({"image_list": [{"image": board}]}, "image_list"),
        "five images": ({"image_list": [{"image": board}] * 5}, "image_list"),
        "item not an object": ({"image_list": [board, board]}, "image_list[0]"),
        "empty image": ({"image_list": [{"image": ""}, {"image": board}]}, "image_list[0].image"),
        "data: prefix": ({"image_list": [{"image": "data:image/png;base64," + board}, {"image": board}]}, "data:"),
        "not base64": ({"image_list": [{"image": board}, {"image": "%%%not base64%%%"}]}, "image_list[1].image"),
        "gif bytes": ({"image_list": [{"image": board}, {"image": gif}]}, "JPG/JPEG or PNG"),
        "too small": ({"image_list": [{"image": board}, {"image": _img(make_image, (299, 400))}]}, "300x300"),
        "too wide": ({"image_list": [{"image": board}, {"image": _img(make_image, (1000, 350))}]}, "aspect ratio"),
        "too tall": ({"image_list": [{"image": _img(make_image, (300, 800), "JPEG")}, {"image": board}]}, "aspect"),
        "over 10 MB": ({"image_list": [{"image": board}, {"image": huge}]}, "10 MB"),
        "prompt too long": ({"prompt": "x" * 501}, "prompt"),
        "prompt not text": ({"prompt": 5}, "prompt"),
        "negative prompt too long": ({"negative_prompt": "x" * 201}, "negative_prompt"),
        "unknown mode": ({"mode": "fast"}, "mode"),
        "duration as int": ({"duration": 5}, "duration"),
        "duration 7": ({"duration": "7"}, "duration"),
        "aspect 4:3": ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        "cfg_scale above 1": ({"cfg_scale": 1.5}, "cfg_scale"),
        "cfg_scale as text": ({"cfg_scale": "0.5"}, "cfg_scale"),
        "cfg_scale bool": ({"cfg_scale": True}, "cfg_scale"),
        "unknown model": ({"model_name": "kling-v9"}, "model_name"),
        "static mask not base64": ({"static_mask": "???"}, "static_mask"),
        "seven mask groups": ({"dynamic_masks": [{"mask": board, "trajectories": points * 2}] * 7}, "dynamic_masks"),
        "one trajectory point": ({"dynamic_masks": [{"mask": board, "trajectories": points}]}, "trajectories"),
        "78 trajectory points": ({"dynamic_masks": [{"mask": board, "trajectories": points * 78}]}, "trajectories"),
        "float trajectory": (
            {"dynamic_masks": [{"mask": board, "trajectories": [{"x": 1.5, "y": 2}, {"x": 1, "y": 2}]}]},
            "trajectories",
        ),
        "callback not http": ({"callback_url": "ftp://example.com/hook"}, "callback_url"),
        "empty external id": ({"external_task_id": ""}, "external_task_id"),
        "external id not text": ({"external_task_id": 42}, "external_task_id"),
    }


CASE_NAMES = [
    "no image_list",
    "one image",
    "five images",
    "item not an object",
    "empty image",
    "data: prefix",
    "not base64",
    "gif bytes",
    "too small",
    "too wide",
    "too tall",
    "over 10 MB",
    "prompt too long",
    "prompt not text",
    "negative prompt too long",
    "unknown mode",
    "duration as int",
    "duration 7",
    "aspect 4:3",
    "cfg_scale above 1",
    "cfg_scale as text",
    "cfg_scale bool",
    "unknown model",
    "static mask not base64",
    "seven mask groups",
    "one trajectory point",
    "78 trajectory points",
    "float trajectory",
    "callback not http",
    "empty external id",
    "external id not text",
]


def test_case_list_is_complete() -> None:
    assert sorted(CASE_NAMES) == sorted(_bad_cases())


@pytest.mark.parametrize("case", CASE_NAMES)
def test_malformed_create_is_refused_with_400_1201_naming_the_field(case, shared_client, make_body, shared_sim) -> None:
    changes, field = _bad_cases()[case]
    response = shared_client.post(CREATE, json=make_body(**changes))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == 1201
    assert field in answer["message"]
    assert answer["data"] is None and answer["request_id"]
    assert shared_sim.stats().creates_accepted == 0


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_body_that_is_not_a_json_object_is_1200(raw, shared_client) -> None:
    response = shared_client.post(CREATE, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == 1200


def test_every_optional_field_in_range_is_accepted(client, make_body) -> None:
    mask = _img(make_image, (320, 320))
    request = make_body(
        image_list=[{"image": "https://example.com/a.png"}, {"image": _img(make_image, (750, 300))}] * 2,
        prompt="p" * 500,
        negative_prompt="n" * 200,
        mode="pro",
        duration="10",
        aspect_ratio="9:16",
        cfg_scale=0,
        static_mask=mask,
        dynamic_masks=[{"mask": mask, "trajectories": [{"x": i, "y": i} for i in range(77)]}] * 6,
        callback_url="http://127.0.0.1:9/hook",
        external_task_id="proj-shot-abc",
        some_future_field=True,
    )
    response = client.post(CREATE, json=request)
    assert response.status_code == 200, response.text
    assert response.json()["code"] == 0


def test_model_name_may_be_left_out(client, make_body) -> None:
    assert client.post(CREATE, json=make_body(model_name=None)).json()["code"] == 0


@pytest.mark.parametrize(
    ("header", "code"),
    [(None, 1001), ("Basic abc", 1002), ("Token abc", 1002), ("Bearer", 1002)],
)
def test_create_and_query_need_a_bearer_token(header, code, sim, make_client, make_body) -> None:
    headers = {} if header is None else {"Authorization": header}
    with make_client(sim, key=None) as anonymous:
        for response in (
            anonymous.post(CREATE, json=make_body(), headers=headers),
            anonymous.get(f"{CREATE}/123", headers=headers),
            anonymous.get(CREATE, headers=headers),
        ):
            assert response.status_code == 401
            assert response.json()["code"] == code
    assert sim.stats().creates_accepted == 0


def test_only_listed_keys_are_accepted_when_keys_are_set(make_sim, make_client, make_body) -> None:
    sim = make_sim(api_keys=frozenset({"good"}))
    with make_client(sim, key="bad") as bad, make_client(sim, key="good") as good:
        refused = bad.post(CREATE, json=make_body())
        assert (refused.status_code, refused.json()["code"]) == (401, 1000)
        assert "bad" not in refused.text
        assert good.post(CREATE, json=make_body()).json()["code"] == 0


def test_kling_direct_prefix_is_served_too(client, make_body) -> None:
    created = client.post("/v1/videos/multi-image2video", json=make_body()).json()["data"]
    found = client.get(f"/v1/videos/multi-image2video/{created['task_id']}").json()
    assert found["data"]["task_id"] == created["task_id"]


def test_unknown_route_and_wrong_method_answer_an_envelope(client) -> None:
    for response in (client.get("/kling/v1/nothing"), client.delete(CREATE)):
        assert response.status_code == 404
        assert response.json()["code"] == 1202


def _create(*images: str) -> dict:
    return {"model_name": "kling-v1-6", "image_list": [{"image": i} for i in images], "prompt": "p"}


def test_an_image_that_passed_is_not_decoded_again(monkeypatch) -> None:
    import orchestrator.providers.local.validation as validation

    checked: list[str] = []
    real = validation._check_image_bytes
    monkeypatch.setattr(validation, "_CHECKED", validation._CheckedImages(4))
    monkeypatch.setattr(validation, "_check_image_bytes", lambda data, f: (checked.append(f), real(data, f)))
    image = _img(make_image, (320, 330))
    first = validation.parse_create(_create(image, image))
    second = validation.parse_create(_create(image, image))
    assert checked == ["image_list[0].image"]  # once, at the first sight of these bytes
    assert first.boards == second.boards and first.boards[0].data == make_image((320, 330))


def test_a_refused_image_is_refused_every_time_with_its_field(monkeypatch) -> None:
    import orchestrator.providers.local.validation as validation

    monkeypatch.setattr(validation, "_CHECKED", validation._CheckedImages(4))
    small = _img(make_image, (200, 200))
    for _ in range(2):
        with pytest.raises(validation.InvalidRequest, match=r"image_list\[1\].image is 200x200"):
            validation.parse_create(_create(_img(make_image, (320, 320)), small))
