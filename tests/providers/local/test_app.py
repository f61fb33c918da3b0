"""The simulator over real loopback HTTP: tasks, lookups, listing, limits, faults, files and admin routes."""

from __future__ import annotations

import time

import av
import httpx
import pytest

CREATE = "/kling/v1/videos/multi-image2video"


def _wait_for(client, task_id, statuses=("succeed", "failed"), timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        data = client.get(f"{CREATE}/{task_id}").json()["data"]
        if data["task_status"] in statuses or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def test_create_answers_the_contract_envelope(client, make_body) -> None:
    answer = client.post(CREATE, json=make_body(external_task_id="p-s1-abc")).json()
    assert answer["code"] == 0 and answer["message"] == "SUCCEED" and answer["request_id"]
    data = answer["data"]
    assert set(data) == {"task_id", "task_status", "task_info", "created_at", "updated_at"}
    assert data["task_id"].isdigit() and isinstance(data["task_id"], str)
    assert data["task_status"] == "submitted"
    assert data["task_info"] == {"external_task_id": "p-s1-abc"}
    assert data["created_at"] > 1_600_000_000_000  # milliseconds


def test_task_without_external_id_has_empty_task_info(client, make_body) -> None:
    assert client.post(CREATE, json=make_body()).json()["data"]["task_info"] == {}


def test_task_runs_to_succeed_with_a_downloadable_h264_video(client, make_body, tmp_path) -> None:
    task_id = client.post(CREATE, json=make_body(duration="10", aspect_ratio="9:16")).json()["data"]["task_id"]
    data = _wait_for(client, task_id)
    assert data["task_status"] == "succeed"
    assert data["task_status_msg"] == ""
    assert data["updated_at"] >= data["created_at"]
    [video] = data["task_result"]["videos"]
    assert video["duration"] == "10.0" and isinstance(video["id"], str)
    response = httpx.get(video["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert int(response.headers["content-length"]) == len(response.content)
    path = tmp_path / "v.mp4"
    path.write_bytes(response.content)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (36, 64)  # cheap 9:16
        assert container.duration / 1_000_000 == pytest.approx(10.0, abs=0.5)


def test_status_is_not_succeed_before_the_render_time(make_sim, make_client, make_body) -> None:
    sim = make_sim(render_time=30.0, render_jitter=0.0, processing_after=0.0)
    with make_client(sim) as client:
        task_id = client.post(CREATE, json=make_body()).json()["data"]["task_id"]
        time.sleep(0.2)  # long enough for the cheap file to be written
        data = client.get(f"{CREATE}/{task_id}").json()["data"]
    assert data["task_status"] == "processing"
    assert data["task_result"] == {}


def test_failure_rate_ends_tasks_failed_with_the_message(make_sim, make_client, make_body) -> None:
    sim = make_sim(failure_rate=1.0, failure_message="risk control")
    with make_client(sim) as client:
        task_id = client.post(CREATE, json=make_body()).json()["data"]["task_id"]
        data = _wait_for(client, task_id)
    assert data["task_status"] == "failed"
    assert data["task_status_msg"] == "risk control"
    assert data["task_result"] == {}
    assert sim.stats().faults["task_failed"] == 1


def test_lookup_by_external_id_in_all_three_forms(client, make_body) -> None:
    task_id = client.post(CREATE, json=make_body(external_task_id="proj-shot-1")).json()["data"]["task_id"]
    forms = [
        client.get(f"{CREATE}/proj-shot-1"),
        client.get(f"{CREATE}/proj-shot-1", params={"external_task_id": "true"}),
        client.get(CREATE, params={"external_task_id": "proj-shot-1"}),
    ]
    for response in forms:
        assert response.status_code == 200
        data = response.json()["data"]
        assert data["task_id"] == task_id
        assert data["task_info"] == {"external_task_id": "proj-shot-1"}


def test_unknown_task_is_404_1203(client) -> None:
    for response in (
        client.get(f"{CREATE}/123456"),
        client.get(f"{CREATE}/nope", params={"external_task_id": "true"}),
        client.get(CREATE, params={"external_task_id": "nope"}),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == 1203


def test_tasks_are_private_to_their_key(sim, make_client, make_body) -> None:
    with make_client(sim, key="alice") as alice, make_client(sim, key="bob") as bob:
        task_id = alice.post(CREATE, json=make_body(external_task_id="same")).json()["data"]["task_id"]
        assert bob.get(f"{CREATE}/{task_id}").status_code == 404
        # external ids are unique per account, not globally
        assert bob.post(CREATE, json=make_body(external_task_id="same")).json()["code"] == 0


def test_duplicate_external_id_is_refused_and_counted(client, make_body, sim) -> None:
    first = client.post(CREATE, json=make_body(external_task_id="p-s-1"))
    second = client.post(CREATE, json=make_body(external_task_id="p-s-1"))
    assert first.json()["code"] == 0
    assert second.status_code == 400
    assert second.json()["code"] == 1201
    assert "external_task_id" in second.json()["message"]
    stats = sim.stats()
    assert stats.submissions == {"p-s-1": 1}
    assert (stats.creates_attempted, stats.creates_accepted, stats.duplicates_refused) == (2, 1, 1)


def test_list_pages_newest_first(client, make_body) -> None:
    ids = [client.post(CREATE, json=make_body()).json()["data"]["task_id"] for _ in range(5)]
    pages = [client.get(CREATE, params={"pageNum": n, "pageSize": 2}).json()["data"] for n in (1, 2, 3, 4)]
    assert [len(page) for page in pages] == [2, 2, 1, 0]
    assert [task["task_id"] for page in pages for task in page] == list(reversed(ids))
    assert len(client.get(CREATE).json()["data"]) == 5  # default page size 30


@pytest.mark.parametrize(
    "params", [{"pageNum": 0}, {"pageNum": 1001}, {"pageSize": 0}, {"pageSize": 501}, {"pageNum": "x"}]
)
def test_list_rejects_out_of_range_paging(client, params) -> None:
    response = client.get(CREATE, params=params)
    assert response.status_code == 400
    assert response.json()["code"] == 1201


def test_concurrency_cap_answers_1303_and_is_never_exceeded(make_sim, make_client, make_body) -> None:
    sim = make_sim(concurrency_cap=2, render_time=0.8, render_jitter=0.0)
    with make_client(sim) as client:
        codes = [client.post(CREATE, json=make_body()) for _ in range(3)]
        assert [r.json()["code"] for r in codes] == [0, 0, 1303]
        assert codes[2].status_code == 429
        assert codes[2].json()["message"] == "parallel task over resource pack limit"
        _wait_for(client, codes[0].json()["data"]["task_id"])
        _wait_for(client, codes[1].json()["data"]["task_id"])
        # Slots come back when tasks end, not when the create call returns.
        assert client.post(CREATE, json=make_body()).json()["code"] == 0
    stats = sim.stats()
    assert stats.max_in_flight == 2
    assert stats.faults["1303"] == 1


def test_account_exhausted_after_n_creates_answers_1102(make_sim, make_client, make_body) -> None:
    sim = make_sim(account_exhausted_after=1)
    with make_client(sim) as client:
        assert client.post(CREATE, json=make_body()).json()["code"] == 0
        refused = client.post(CREATE, json=make_body())
    assert (refused.status_code, refused.json()["code"]) == (429, 1102)


def _codes(sim, make_client, count):
    with make_client(sim) as client:
        return [client.get(CREATE).json()["code"] for _ in range(count)]


def test_fault_rates_are_roughly_honoured_and_repeat_with_a_seed(make_sim, make_client) -> None:
    options = {"rate_1302": 0.2, "rate_5xx": 0.1, "seed": 42}
    first = _codes(make_sim(**options), make_client, 300)
    second = _codes(make_sim(**options), make_client, 300)
    assert first == second
    assert 35 <= first.count(1302) <= 85  # 20% of 300 is 60
    server_errors = [c for c in first if c >= 5000]
    assert 10 <= len(server_errors) <= 45  # 10% of the remaining ~240
    assert set(server_errors) <= {5000, 5001, 5002}


def test_5xx_faults_use_matching_http_statuses(make_sim, make_client) -> None:
    sim = make_sim(rate_5xx=1.0)
    with make_client(sim) as client:
        pairs = {(r.status_code, r.json()["code"]) for r in (client.get(CREATE) for _ in range(30))}
    assert pairs <= {(500, 5000), (503, 5001), (504, 5002)}
    assert len(pairs) >= 2


def test_rate_1303_refuses_creates_only(make_sim, make_client, make_body) -> None:
    sim = make_sim(rate_1303=1.0)
    with make_client(sim) as client:
        refused = client.post(CREATE, json=make_body())
        assert (refused.status_code, refused.json()["code"]) == (429, 1303)
        assert client.get(CREATE).json()["code"] == 0


def test_dropped_connection_is_a_transport_error(make_sim, make_client) -> None:
    sim = make_sim(drop_rate=1.0)
    with make_client(sim) as client, pytest.raises(httpx.TransportError):
        client.get(CREATE)
    assert sim.stats().faults == {"drop": 1}


def test_drop_after_create_records_the_task_but_loses_the_answer(make_sim, make_client, make_body) -> None:
    sim = make_sim(drop_after_create_rate=1.0)
    with make_client(sim) as client:
        with pytest.raises(httpx.TransportError):
            client.post(CREATE, json=make_body(external_task_id="ambiguous-1"))
        # The create was billed: the lookup finds it, and a resubmission is refused as a duplicate.
        assert client.get(CREATE, params={"external_task_id": "ambiguous-1"}).json()["code"] == 0
        sim.configure(drop_after_create_rate=0.0)
        assert client.post(CREATE, json=make_body(external_task_id="ambiguous-1")).json()["code"] == 1201
    assert sim.stats().submissions == {"ambiguous-1": 1}


def test_video_route_serves_only_rendered_files(client) -> None:
    assert client.get("/_sim/videos/123.mp4").status_code == 404
    assert client.get("/_sim/videos/..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/_sim/videos/notes.txt").status_code == 404


def test_stats_route_matches_stats_and_counts_routes(client, make_body, sim) -> None:
    task_id = client.post(CREATE, json=make_body(external_task_id="e1")).json()["data"]["task_id"]
    client.get(f"{CREATE}/{task_id}")
    answer = client.get("/_sim/stats").json()
    assert answer["code"] == 0
    data = answer["data"]
    assert data["submissions"] == {"e1": 1}
    assert data["requests"][f"POST {CREATE}"] == 1
    assert data["requests"][f"GET {CREATE}/{{id}}"] == 1
    assert data["max_in_flight"] == 1
    assert data["creates_accepted"] == sim.stats().creates_accepted == 1


def test_config_route_changes_knobs_at_runtime(client, sim) -> None:
    answer = client.post("/_sim/config", json={"rate_1302": 1.0})
    assert answer.json()["data"]["rate_1302"] == 1.0
    assert client.get(CREATE).json()["code"] == 1302
    assert sim.options.rate_1302 == 1.0
    client.post("/_sim/config", json={"rate_1302": 0})
    assert client.get(CREATE).json()["code"] == 0


@pytest.mark.parametrize("change", [{"rate_1302": 2}, {"no_such_knob": 1}, {"cheap_video": "yes"}, [1]])
def test_config_route_refuses_bad_changes(client, change) -> None:
    response = client.post("/_sim/config", json=change)
    assert response.status_code == 400
    assert response.json()["code"] in (1200, 1201)


def test_reset_route_forgets_tasks_and_counters(client, make_body, sim) -> None:
    client.post(CREATE, json=make_body(external_task_id="gone"))
    assert client.post("/_sim/reset").json()["code"] == 0
    assert client.get(CREATE, params={"external_task_id": "gone"}).status_code == 404
    assert sim.stats().submissions == {}


def test_every_authenticated_create_counts_as_attempted(make_sim, make_client, make_body) -> None:
    sim = make_sim(rate_1303=1.0)
    with make_client(sim) as client, make_client(sim, key=None) as anonymous:
        client.post(CREATE, json=make_body(duration="7"))  # invalid
        client.post(CREATE, json=make_body())  # 1303
        anonymous.post(CREATE, json=make_body())  # 401: not an attempt on any account
    stats = sim.stats()
    assert (stats.creates_attempted, stats.creates_accepted) == (2, 0)
    assert stats.requests[f"POST {CREATE}"] == 3


def test_cheap_videos_are_encoded_once_per_boards_duration_and_aspect(make_sim, make_client, make_body, monkeypatch):
    import orchestrator.providers.local.app as app

    encoded: list[str] = []
    real = app.render_animatic

    def counting(boards, **kw):
        encoded.append(kw["aspect_ratio"])
        real(boards, **kw)

    monkeypatch.setattr(app, "render_animatic", counting)
    sim = make_sim(render_time=0.05, render_jitter=0.0)
    with make_client(sim) as client:
        ids = [client.post(CREATE, json=make_body()).json()["data"]["task_id"]]
        _wait_for(client, ids[0])  # encoded and remembered before the repeats arrive
        ids += [client.post(CREATE, json=make_body()).json()["data"]["task_id"] for _ in range(2)]
        ids.append(client.post(CREATE, json=make_body(aspect_ratio="9:16")).json()["data"]["task_id"])
        videos = [httpx.get(_wait_for(client, i)["task_result"]["videos"][0]["url"]).content for i in ids]
    assert sorted(encoded) == ["16:9", "9:16"]  # the two repeats were served from the memo
    assert videos[0] == videos[1] == videos[2] != videos[3]
    assert all(v[4:8] == b"ftyp" for v in videos)


def test_full_videos_are_rendered_for_every_task(make_sim, make_client, make_body, monkeypatch):
    import orchestrator.providers.local.app as app

    calls: list[object] = []
    monkeypatch.setattr(app, "render_animatic", lambda boards, **kw: (calls.append(kw), kw["dest"].write_bytes(b"x")))
    sim = make_sim(cheap_video=False, render_time=0.05, render_jitter=0.0)
    with make_client(sim) as client:
        for _ in range(2):
            _wait_for(client, client.post(CREATE, json=make_body()).json()["data"]["task_id"])
    assert len(calls) == 2  # each full-size animatic carries its own caption: no memo


@pytest.mark.parametrize(
    ("mode", "duration", "units"), [("std", "5", "2"), ("std", "10", "4"), ("pro", "5", "3.5"), ("pro", "10", "7")]
)
def test_a_succeeded_task_carries_final_unit_deduction_by_the_rate_card(client, make_body, mode, duration, units):
    task_id = client.post(CREATE, json=make_body(mode=mode, duration=duration)).json()["data"]["task_id"]
    running = client.get(f"{CREATE}/{task_id}").json()["data"]
    assert "final_unit_deduction" not in running  # only once it has finished
    assert _wait_for(client, task_id)["final_unit_deduction"] == units


def test_models_sent_through_gateways_are_accepted_and_charged_by_the_same_card(client, make_body) -> None:
    task_id = client.post(CREATE, json=make_body(model_name="kling-v2-5-turbo")).json()["data"]["task_id"]
    assert _wait_for(client, task_id)["final_unit_deduction"] == "2"
