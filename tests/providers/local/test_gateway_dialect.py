"""The gateway dialect over loopback: CometAPI as a new-api gateway in front of several upstream Kling accounts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from orchestrator.providers.local import LocalSimulator
from orchestrator.providers.local.gateway import SATURATED

CREATE = "/kling/v1/videos/multi-image2video"


def _gateway(make_sim: Callable[..., LocalSimulator], **options: Any) -> LocalSimulator:
    options.setdefault("not_visible_for", 0.0)
    return make_sim(dialect="gateway", **options)


def _wait(client: httpx.Client, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] = client.get(f"{CREATE}/{task_id}").json()
        if answer["data"]["status"] in ("SUCCESS", "FAILURE") or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def test_create_answers_the_kling_envelope(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim)
    with make_client(sim) as client:
        answer = client.post(CREATE, json=make_body(external_task_id="g-1")).json()
    assert answer["code"] == 0 and answer["data"]["task_id"].isdigit()
    assert answer["data"]["task_info"] == {"external_task_id": "g-1"}


@pytest.mark.parametrize("inner", ["envelope", "task"])
def test_query_is_wrapped_in_the_gateway_task_record(make_sim, make_client, make_body, inner) -> None:
    sim = _gateway(make_sim, gateway_inner=inner)
    with make_client(sim) as client:
        task_id = client.post(CREATE, json=make_body(mode="pro")).json()["data"]["task_id"]
        first = client.get(f"{CREATE}/{task_id}").json()
        done = _wait(client, task_id)
    assert first["code"] == "success" and first["message"] == ""
    assert first["data"]["status"] in ("SUBMITTED", "IN_PROGRESS")
    record = done["data"]
    assert (record["task_id"], record["status"], record["progress"], record["fail_reason"]) == (
        task_id,
        "SUCCESS",
        "100%",
        "",
    )
    assert record["action"] and record["submit_time"] <= record["finish_time"]
    kling = record["data"]["data"] if inner == "envelope" else record["data"]
    if inner == "envelope":
        assert record["data"]["code"] == 0
    assert kling["task_status"] == "succeed" and kling["final_unit_deduction"] == "3.5"
    assert kling["task_result"]["videos"][0]["url"].endswith(f"/{task_id}.mp4")


def test_a_failed_task_says_why_and_is_not_charged(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim, failure_rate=1.0, failure_message="content moderation")
    with make_client(sim) as client:
        task_id = client.post(CREATE, json=make_body()).json()["data"]["task_id"]
        record = _wait(client, task_id)["data"]
    assert (record["status"], record["fail_reason"]) == ("FAILURE", "content moderation")
    assert "final_unit_deduction" not in record["data"]["data"]
    assert sim.stats().units_charged == {}


def test_a_fresh_task_is_not_visible_yet_then_is(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim, not_visible_for=0.3)
    with make_client(sim) as client:
        task_id = client.post(CREATE, json=make_body()).json()["data"]["task_id"]
        early = client.get(f"{CREATE}/{task_id}")
        time.sleep(0.35)
        later = client.get(f"{CREATE}/{task_id}")
    assert early.status_code == 400
    assert early.json() == {"code": "task_not_exist", "message": "task_not_exist", "data": None}
    assert later.status_code == 200 and later.json()["data"]["task_id"] == task_id
    assert sim.stats().faults["not_visible"] == 1


def test_no_list_and_no_lookup_by_external_id(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim)
    with make_client(sim) as client:
        client.post(CREATE, json=make_body(external_task_id="ext-1"))
        listing = client.get(CREATE, params={"pageNum": 1})
        by_external = [
            client.get(f"{CREATE}/ext-1"),
            client.get(f"{CREATE}/ext-1", params={"external_task_id": "true"}),
            client.get(CREATE, params={"external_task_id": "ext-1"}),
        ]
        unknown = client.get(f"{CREATE}/123456789")
        kling_direct = client.post("/v1/videos/multi-image2video", json=make_body())
    assert listing.status_code == 404 and listing.json()["error"]["message"].startswith("Invalid URL (GET ")
    assert [r.status_code for r in by_external] == [400, 400, 404]
    assert by_external[0].json()["code"] == by_external[1].json()["code"] == "task_not_exist"
    assert (unknown.status_code, unknown.json()["code"]) == (400, "task_not_exist")
    assert kling_direct.status_code == 404


def test_tasks_of_one_key_are_invisible_to_another(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim)
    with make_client(sim, key="alice") as alice, make_client(sim, key="bob") as bob:
        task_id = alice.post(CREATE, json=make_body()).json()["data"]["task_id"]
        assert bob.get(f"{CREATE}/{task_id}").json()["code"] == "task_not_exist"
        assert alice.get(f"{CREATE}/{task_id}").json()["code"] == "success"


def test_a_resend_on_another_upstream_account_is_billed_twice(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim, upstream_accounts=3, seed=3)
    with make_client(sim) as client:
        answers = [client.post(CREATE, json=make_body(external_task_id="resent")) for _ in range(12)]
    created = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    assert len(created) == 3  # once per upstream account, then every account knows the id
    for answer in refused:
        assert answer.status_code == 400 and answer.json()["code"] == "fail_to_fetch_task"
        upstream = json.loads(answer.json()["message"])  # the upstream's Kling error, as JSON text
        assert upstream["code"] == 1201 and "external_task_id" in upstream["message"]
    stats = sim.stats()
    assert stats.submissions == {"resent": 3}
    assert stats.billed == {"upstream-1": 1, "upstream-2": 1, "upstream-3": 1}
    assert (stats.duplicate_bills, stats.billed_twice) == (2, ["resent"])


def test_creates_spread_over_accounts_deterministically_with_a_seed(make_sim, make_client, make_body) -> None:
    def spread(seed: int) -> dict[str, int]:
        sim = _gateway(make_sim, upstream_accounts=3, seed=seed)
        with make_client(sim) as client:
            for _ in range(30):
                client.post(CREATE, json=make_body())
        return sim.stats().billed

    first = spread(11)
    assert first == spread(11)
    assert sum(first.values()) == 30 and len(first) == 3


def test_the_cap_is_per_account_and_a_full_pool_is_saturated(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim, upstream_accounts=2, concurrency_cap=1, render_time=5.0)
    with make_client(sim) as client:
        codes = [client.post(CREATE, json=make_body()) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert codes[2].json() == {"code": "fail_to_fetch_task", "message": SATURATED, "data": None}
    stats = sim.stats()
    assert stats.in_flight_by_account == {"upstream-1": 1, "upstream-2": 1}
    assert stats.faults["saturated"] == 1


def test_exhausted_accounts_are_skipped_until_none_is_left(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim, upstream_accounts=2, account_exhausted_after=1)
    with make_client(sim) as client:
        statuses = [client.post(CREATE, json=make_body()).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_bill_then_524_records_and_bills_the_task_but_answers_html(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim, bill_then_524_rate=1.0)
    with make_client(sim) as client:
        answer = client.post(CREATE, json=make_body(external_task_id="lost-answer"))
    assert answer.status_code == 524
    assert answer.headers["content-type"].startswith("text/html") and "<html>" in answer.text
    stats = sim.stats()
    assert stats.submissions == {"lost-answer": 1} and sum(stats.billed.values()) == 1
    assert stats.faults["bill_then_524"] == 1


def test_a_model_without_a_channel_answers_503_model_not_found(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim, disabled_models=frozenset({"kling-v2-1"}))
    with make_client(sim) as client:
        refused = client.post(CREATE, json=make_body(model_name="kling-v2-1"))
        accepted = client.post(CREATE, json=make_body())
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert (error["code"], error["type"]) == ("model_not_found", "comet_api_error")
    assert "no available channel for group default and model kling-v2-1" in error["message"]
    assert accepted.status_code == 200 and sim.stats().creates_accepted == 1


def test_bad_parameters_arrive_as_upstream_kling_json(make_sim, make_client, make_body) -> None:
    sim = _gateway(make_sim)
    with make_client(sim) as client:
        answer = client.post(CREATE, json=make_body(duration="7"))
    assert answer.status_code == 400 and answer.json()["data"] is None
    assert json.loads(answer.json()["message"])["code"] == 1201


def test_request_faults_use_gateway_shapes(make_sim, make_client) -> None:
    sim = _gateway(make_sim, rate_1302=1.0)
    with make_client(sim) as client:
        limited = client.get(f"{CREATE}/1")
    assert (limited.status_code, limited.json()["message"]) == (429, SATURATED)
    sim = _gateway(make_sim, rate_5xx=1.0)
    with make_client(sim) as client:
        answers = [client.get(f"{CREATE}/1") for _ in range(30)]
    statuses = {a.status_code for a in answers}
    assert statuses <= {500, 503, 504} and len(statuses) >= 2
    for answer in answers:
        if answer.status_code == 504:
            assert "<html>" in answer.text
        else:
            assert json.loads(answer.json()["message"])["code"] in (5000, 5001)


def test_a_missing_key_answers_the_gateway_error_shape(make_sim, make_client) -> None:
    sim = _gateway(make_sim)
    with make_client(sim, key=None) as anonymous:
        answer = anonymous.get(f"{CREATE}/1")
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "comet_api_error"


def test_upstream_accounts_and_bills_survive_a_restart(tmp_path, make_sim, make_client, make_body) -> None:
    options = {"state_dir": tmp_path / "state", "upstream_accounts": 2, "seed": 5, "render_jitter": 0.0}
    first = _gateway(make_sim, **options)
    with make_client(first) as client:
        ids = [client.post(CREATE, json=make_body(external_task_id="twice")).json()["data"]["task_id"]]
        ids += [client.post(CREATE, json=make_body(external_task_id="twice")).json()["data"]["task_id"]]
    before = first.stats()
    first.stop()
    second = _gateway(make_sim, **options)
    with make_client(second) as client:
        record = _wait(client, ids[1])["data"]
        again = client.post(CREATE, json=make_body(external_task_id="twice"))
    after = second.stats()
    assert record["status"] == "SUCCESS"
    assert after.billed == before.billed == {"upstream-1": 1, "upstream-2": 1}
    assert after.billed_twice == ["twice"]
    assert again.status_code == 400  # both accounts remember the id


@pytest.mark.parametrize("dialect", ["cometapi", "gateway"])
def test_std_5_second_tasks_charge_two_units(make_sim, make_client, make_body, dialect) -> None:
    sim = make_sim(dialect=dialect, not_visible_for=0.0, render_jitter=0.0)
    with make_client(sim) as client:
        client.post(CREATE, json=make_body(mode="std", duration="5"))
        deadline = time.monotonic() + 10
        while sim.stats().tasks.get("succeed") != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sum(sim.stats().units_charged.values()) == 2.0
