"""The review app over loopback with httpx: the token, the Host check, what files it serves, its headers, decisions."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from orchestrator.review import decisions as decisions_module
from orchestrator.review.app import CONTENT_SECURITY_POLICY, cookie_name
from orchestrator.review.server import ReviewServer

from .conftest import Production


@pytest.fixture
def server(production: Production) -> Iterator[ReviewServer]:
    with ReviewServer(production.review) as running:
        yield running


@pytest.fixture
def client(server: ReviewServer) -> Iterator[httpx.Client]:
    """A client that opened the printed address: it holds the cookie, and sends the token header on changes."""
    with httpx.Client(base_url=server.base_url, timeout=10) as opened:
        first = opened.get(server.url)
        assert first.status_code == 303 and first.headers["location"] == "/"
        opened.headers["X-Review-Token"] = server.token
        yield opened


def test_the_printed_address_trades_its_token_for_a_strict_cookie(server: ReviewServer) -> None:
    assert server.url.startswith("http://127.0.0.1:") and "token=" in server.url
    with httpx.Client(base_url=server.base_url) as browser:
        response = browser.get(server.url)
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        page = browser.get("/")
        assert page.status_code == 200 and 'content="' + server.token + '"' in page.text


@pytest.mark.parametrize("path", ["/", "/api/state", "/static/app.js", "/files/s01/x.mp4", "/boards/s01/0"])
def test_without_the_token_nothing_is_served(server: ReviewServer, path: str) -> None:
    response = httpx.get(server.base_url + path)
    assert response.status_code == 403
    assert "orchestrator review" in response.text and "s01" not in response.text


def test_a_wrong_token_is_refused_in_the_address_and_in_the_cookie(server: ReviewServer) -> None:
    assert httpx.get(server.base_url + "/?token=guess").status_code == 403
    assert httpx.get(server.base_url + "/api/state", cookies={cookie_name(server.port): "guess"}).status_code == 403


def test_a_change_needs_the_token_header_as_well_as_the_cookie(production: Production, server: ReviewServer) -> None:
    """A form posted by another site carries no custom header (and SameSite=Strict keeps the cookie off it too)."""
    with httpx.Client(base_url=server.base_url) as browser:
        browser.get(server.url)
        response = browser.post("/api/decide", json={"action": "hold", "shot": "s01"})
        assert response.status_code == 403
        wrong = browser.post("/api/decide", json={"action": "hold", "shot": "s01"}, headers={"X-Review-Token": "x"})
        assert wrong.status_code == 403
    assert not production.decisions.exists()


def test_a_foreign_host_header_is_refused(server: ReviewServer, client: httpx.Client) -> None:
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own host name."""
    response = client.get("/api/state", headers={"Host": "evil.example"})
    assert response.status_code == 421
    assert client.get("/api/state", headers={"Host": f"localhost:{server.port}"}).status_code == 200


def test_every_response_has_a_strict_content_security_policy(client: httpx.Client) -> None:
    for path in ("/", "/api/state", "/static/app.js", "/nope"):
        headers = client.get(path).headers
        assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert headers["x-content-type-options"] == "nosniff"
        assert "access-control-allow-origin" not in headers
    refused = httpx.get(client.base_url.join("/api/state"))
    assert refused.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "default-src 'none'" in CONTENT_SECURITY_POLICY


def test_the_page_has_no_inline_script_or_style(client: httpx.Client) -> None:
    page = client.get("/").text
    assert "<script>" not in page and "<script src=" in page and "style=" not in page and "<style" not in page


def test_only_videos_of_the_output_folder_are_served(production: Production, client: httpx.Client) -> None:
    state = client.get("/api/state").json()
    url = state["shots"][0]["takes"][0]["url"]
    video = client.get(url)
    assert video.status_code == 200 and video.content[4:8] == b"ftyp"
    ranged = client.get(url, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and len(ranged.content) == 10  # seeking needs ranges
    secret = production.spec.parent / "secret.mp4"
    secret.write_bytes(b"not yours")
    (production.out / "s01" / "link.mp4").symlink_to(secret)
    for path in (
        "/files/../secret.mp4",
        "/files/%2e%2e/secret.mp4",
        "/files/s01/%2e%2e/%2e%2e/secret.mp4",
        "/files/s01/link.mp4",
        "/files/renders.db",
        "/files/manifest.json",
        f"/files/{production.out}/s01/x.mp4",
        "/files//etc/passwd",
    ):
        assert client.get(path).status_code == 404, path


def test_boards_are_served_by_shot_and_place_only(production: Production, client: httpx.Client) -> None:
    board = client.get("/boards/s01/0")
    assert board.status_code == 200 and board.headers["content-type"] == "image/png"
    assert board.content == (production.spec.parent / "boards" / "a.png").read_bytes()
    assert client.get("/boards/s01/9").status_code == 404
    assert client.get("/boards/nope/0").status_code == 404
    assert client.get("/boards/..%2fproject.yaml/0").status_code == 404


def test_decisions_go_through_the_library_into_the_file(production: Production, client: httpx.Client) -> None:
    response = client.post("/api/decide", json={"action": "select", "shot": "s01", "take": 2})
    assert response.status_code == 200
    response = client.post("/api/decide", json={"action": "approve", "shot": "s01"})
    shots = {shot["id"]: shot for shot in response.json()["shots"]}
    assert shots["s01"]["status"] == "approved"
    retake = client.post("/api/decide", json={"action": "retake", "shot": "s02", "note": "warmer light"})
    assert retake.status_code == 200
    written = yaml.safe_load(production.decisions.read_text())["shots"]
    assert written["s01"]["status"] == "approved" and written["s01"]["select"]["take"] == 2
    assert written["s02"] == {**written["s02"], "status": "retake", "note": "warmer light", "retake": {"take": 2}}
    assert written["s01"]["by"] == (os.environ.get("USER") or written["s01"]["by"])


def test_a_refused_or_failed_decision_is_an_error_the_page_can_show(
    production: Production, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = client.post("/api/decide", json={"action": "select", "shot": "s01", "take": 3})
    assert refused.status_code == 409 and refused.json() == {
        "ok": False,
        "error": "s01: take 3 is failed, not finished: pick a finished take",
    }

    def full_disk(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decisions_module, "write_atomic", full_disk)
    failed = client.post("/api/decide", json={"action": "hold", "shot": "s01"})
    assert failed.status_code == 409 and "No space left on device" in failed.json()["error"]
    assert client.post("/api/decide", content=b"action=hold", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.post("/api/decide", json={"action": "delete", "shot": "s01"}).status_code == 400


def test_text_from_the_spec_reaches_the_page_as_data_never_markup(production: Production, client: httpx.Client) -> None:
    production.review.hold("s01", "<img src=x onerror=alert(1)>")
    state = client.get("/api/state").json()
    assert state["shots"][0]["decision"]["note"] == "<img src=x onerror=alert(1)>"  # JSON; the page sets textContent
    assert client.get("/api/state").headers["content-type"] == "application/json"
    script = client.get("/static/app.js").text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script


def test_a_new_render_in_the_store_shows_in_the_next_state(production: Production, client: httpx.Client) -> None:
    before = client.get("/api/state").json()["shots"][2]
    assert before["id"] == "s03" and before["takes"] == []
    production.add_take("s03", 1)
    after = client.get("/api/state").json()["shots"][2]
    assert [take["take"] for take in after["takes"]] == [1] and after["status"] == "pending-review"


def test_a_path_that_climbs_out_is_refused_as_sent_on_the_wire(production: Production, server: ReviewServer) -> None:
    """httpx tidies ``..`` away; a raw request keeps it, and the app must resolve and refuse it itself."""
    (production.spec.parent / "secret.mp4").write_bytes(b"not yours")
    for raw in ("/files/s01/../../secret.mp4", "/files/s01/%2e%2e/%2e%2e/secret.mp4"):
        request = (
            f"GET {raw} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Cookie: {cookie_name(server.port)}={server.token}\r\nConnection: close\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(request.encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 404"), (raw, answer[:80])
        assert b"not yours" not in answer


def test_an_edited_spec_is_followed_and_its_changed_approval_shows_stale(
    production: Production, client: httpx.Client
) -> None:
    assert client.post("/api/decide", json={"action": "approve", "shot": "s02", "take": 1}).status_code == 200
    spec = production.spec.read_text()
    production.spec.write_text(spec.replace("gulls lift off", "gulls settle on"))
    shots = {shot["id"]: shot for shot in client.get("/api/state").json()["shots"]}
    assert shots["s02"]["status"] == "approved (stale)" and shots["s02"]["prompt"] == "gulls settle on the water"
    production.spec.write_text(spec.replace("prompt:", "prompt_:", 1))
    broken = client.get("/api/state")
    assert broken.status_code == 500 and "project.yaml:" in broken.json()["error"]  # the page shows the line


def test_two_reviews_open_at_once_keep_their_own_cookies(production: Production, server: ReviewServer) -> None:
    """Cookies ignore ports: one name for every review would let the second page log the first one out."""
    with ReviewServer(production.review) as other, httpx.Client() as browser:
        browser.get(server.url)
        browser.get(other.url)
        assert browser.get(server.base_url + "/api/state").status_code == 200
        assert browser.get(other.base_url + "/api/state").status_code == 200
