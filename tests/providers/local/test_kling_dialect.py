"""The kling dialect (Kling direct) over loopback: /v1 routes only, a JWT per request, lookups and the list."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import httpx
import jwt
import pytest

from orchestrator.errors import ConfigError
from orchestrator.providers.local import LocalSimulator, SimulatorOptions
from orchestrator.providers.local.kling_auth import sign_token

CREATE = "/v1/videos/multi-image2video"
ACCESS, SECRET = LocalSimulator.LOCAL_ACCESS_KEY, LocalSimulator.LOCAL_SECRET_KEY


class KlingAuth(httpx.Auth):
    """Signs a fresh token for every request, as a Kling client does."""

    def __init__(self, access: str = ACCESS, secret: str = SECRET) -> None:
        self.access, self.secret = access, secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {sign_token(self.access, self.secret)}"
        yield request


@pytest.fixture
def kling(make_sim: Callable[..., LocalSimulator]) -> LocalSimulator:
    return make_sim(dialect="kling")


@pytest.fixture
def client(kling: LocalSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kling.base_url, auth=KlingAuth(), timeout=10) as c:
        yield c


def _raw(kling: LocalSimulator, header: str | None) -> httpx.Response:
    headers = {"Authorization": header} if header is not None else {}
    return httpx.get(f"{kling.base_url}{CREATE}", headers=headers, timeout=10)


def _wait(client: httpx.Client, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        data: dict[str, Any] = client.get(f"{CREATE}/{task_id}").json()["data"]
        if data["task_status"] in ("succeed", "failed") or time.monotonic() > deadline:
            return data
        time.sleep(0.05)


def test_create_query_list_and_lookups_work_under_v1(client, make_body) -> None:
    created = client.post(CREATE, json=make_body(external_task_id="k-1"))
    assert created.status_code == 200 and created.json()["code"] == 0
    task_id = created.json()["data"]["task_id"]
    assert client.get(f"{CREATE}/{task_id}").json()["data"]["task_id"] == task_id
    assert [t["task_id"] for t in client.get(CREATE).json()["data"]] == [task_id]
    for response in (
        client.get(f"{CREATE}/k-1"),
        client.get(f"{CREATE}/k-1", params={"external_task_id": "true"}),
        client.get(CREATE, params={"external_task_id": "k-1"}),
    ):
        assert response.json()["data"]["task_id"] == task_id


def test_a_lookup_that_finds_nothing_means_not_created(client) -> None:
    response = client.get(CREATE, params={"external_task_id": "never-sent"})
    assert (response.status_code, response.json()["code"]) == (404, 1203)


def test_kling_prefixed_routes_do_not_exist(client, make_body) -> None:
    for response in (client.post(f"/kling{CREATE}", json=make_body()), client.get(f"/kling{CREATE}/1")):
        assert (response.status_code, response.json()["code"]) == (404, 1202)


def test_a_succeeded_task_carries_its_units(client, make_body) -> None:
    task_id = client.post(CREATE, json=make_body(mode="pro", duration="10")).json()["data"]["task_id"]
    assert _wait(client, task_id)["final_unit_deduction"] == "7"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, 1001),
        ("Basic abc", 1002),
        ("Bearer not-a-jwt", 1002),
        (f"Bearer {sign_token(ACCESS, 'the-wrong-secret-but-long-enough-for-hs256')}", 1000),
        (f"Bearer {sign_token('someone-else', SECRET)}", 1000),
        (f"Bearer {sign_token(ACCESS, SECRET, now=time.time() - 3600)}", 1004),
        (f"Bearer {sign_token(ACCESS, SECRET, now=time.time() + 600)}", 1003),
        (f"Bearer {jwt.encode({'iss': ACCESS}, SECRET, algorithm='HS256')}", 1002),  # no exp
        (f"Bearer {LocalSimulator.LOCAL_API_KEY}", 1002),  # a CometAPI-style key is not a token
    ],
)
def test_bad_tokens_answer_401_with_kling_codes(kling, header, code) -> None:
    response = _raw(kling, header)
    assert (response.status_code, response.json()["code"]) == (401, code)
    assert SECRET not in response.text


def test_configured_key_pairs_replace_the_default(make_sim, make_body) -> None:
    sim = make_sim(dialect="kling", kling_keys={"ak-team": "sk-team-secret-of-thirty-two-bytes!"})
    with httpx.Client(
        base_url=sim.base_url, auth=KlingAuth("ak-team", "sk-team-secret-of-thirty-two-bytes!"), timeout=10
    ) as team:
        assert team.post(CREATE, json=make_body()).json()["code"] == 0
    assert _raw(sim, f"Bearer {sign_token(ACCESS, SECRET)}").json()["code"] == 1000


def test_short_secret_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="32 bytes"):
        SimulatorOptions(dialect="kling", kling_keys={"ak": "short"})


def test_faults_answer_in_the_kling_envelope(make_sim) -> None:
    sim = make_sim(dialect="kling", rate_1302=1.0)
    response = _raw(sim, f"Bearer {sign_token(ACCESS, SECRET)}")
    assert (response.status_code, response.json()["code"]) == (429, 1302)
    assert sim.stats().dialect == "kling"


def test_the_cap_and_exhaustion_apply_to_the_access_key(make_sim, make_body) -> None:
    sim = make_sim(dialect="kling", concurrency_cap=1, render_time=5.0)
    with httpx.Client(base_url=sim.base_url, auth=KlingAuth(), timeout=10) as c:
        assert c.post(CREATE, json=make_body()).json()["code"] == 0
        refused = c.post(CREATE, json=make_body())
    assert (refused.status_code, refused.json()["code"]) == (429, 1303)
