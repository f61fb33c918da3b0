"""The review page in a real headless Chromium (Debian's, driven by Playwright): playback in sync, the keyboard,
decisions written to the file, a failed write shown, and a take a run finishes appearing without a reload.

Skipped, with the reason, where Playwright or ``/usr/bin/chromium`` is missing (``.ci/run`` installs both).
Set ``REVIEW_SCREENSHOT=path.png`` to keep a screenshot of the page (the README's is made so).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.review import decisions as decisions_module
from orchestrator.review.server import ReviewServer

from .conftest import Production

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (set CHROMIUM to another executable)", allow_module_level=True)

TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--autoplay-policy=no-user-gesture-required"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, production: Production) -> Iterator[Any]:
    with ReviewServer(production.review) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        opened = context.new_page()
        errors: list[str] = []
        opened.on("pageerror", lambda error: errors.append(str(error)))
        opened.on("console", lambda message: errors.append(message.text) if _is_error(message) else None)
        opened.goto(server.url)
        opened.wait_for_selector("#takes .take video")
        try:
            yield opened
        finally:
            context.close()
        assert errors == []  # no script error, no CSP violation


def _is_error(message: Any) -> bool:
    # A refused decision is a 409 on purpose (the page shows it); Chromium logs every non-2xx response as well.
    return bool(message.type == "error" and "status of 409" not in message.text)


def wait_until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def decisions(production: Production) -> dict[str, Any]:
    if not production.decisions.exists():
        return {}
    shots: dict[str, Any] = yaml.safe_load(production.decisions.read_text())["shots"]
    return shots


def times(page: Any) -> list[float]:
    value: list[float] = page.evaluate("() => [...document.querySelectorAll('#takes video')].map(v => v.currentTime)")
    return value


def test_the_takes_play_in_sync_and_pause_together(page: Any) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('#takes video')].every(v => v.readyState >= 2)", timeout=10_000
    )
    assert len(times(page)) == 2  # s01: takes 1 and 2 finished; take 3 failed shows as a card without video
    page.keyboard.press(" ")
    wait_until(lambda: min(times(page)) > 1.0, "both takes to play for a second")
    for _ in range(10):
        sample = times(page)
        assert max(sample) - min(sample) < 0.1, sample
        time.sleep(0.05)
    if os.environ.get("REVIEW_SCREENSHOT"):
        page.screenshot(path=os.environ["REVIEW_SCREENSHOT"], full_page=True)
    page.keyboard.press(" ")
    assert page.evaluate("() => [...document.querySelectorAll('#takes video')].every(v => v.paused)")
    stopped = times(page)
    time.sleep(0.3)
    assert times(page) == stopped
    page.fill("#scrub", "3")  # one scrub moves every take
    wait_until(lambda: all(abs(t - 3) < 0.05 for t in times(page)), "every take at 3 s")


def test_the_keyboard_picks_approves_and_sends_back(page: Any, production: Production) -> None:
    page.keyboard.press("2")
    wait_until(lambda: decisions(production).get("s01", {}).get("select", {}).get("take") == 2, "select written")
    page.wait_for_selector('.take.selected[data-number="2"]')
    page.keyboard.press("a")
    wait_until(lambda: decisions(production)["s01"]["status"] == "approved", "approval written")
    page.wait_for_function("() => document.getElementById('shot-status').textContent === 'approved'")
    page.keyboard.press("k")
    page.wait_for_function("() => document.getElementById('shot-id').textContent === 's02'")
    page.keyboard.press("r")
    page.keyboard.type("warmer light, <b>slower</b>")
    page.keyboard.press("Enter")
    wait_until(lambda: decisions(production).get("s02", {}).get("status") == "retake", "retake written")
    assert decisions(production)["s02"]["note"] == "warmer light, <b>slower</b>"
    page.wait_for_function("() => document.getElementById('decision').textContent.includes('<b>slower</b>')")
    assert page.locator("#decision b").count() == 0  # shown as text, not markup
    page.keyboard.press("j")
    page.wait_for_function("() => document.getElementById('shot-id').textContent === 's01'")
    strip = page.locator('#strip [data-shot="s02"] .badge').text_content()
    assert strip == "retake"


def test_a_failed_write_is_shown_on_the_page(
    page: Any, production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decisions_module, "write_atomic", full_disk)
    page.click("#hold")
    page.wait_for_selector("#message.error")
    message = page.text_content("#message") or ""
    assert message.startswith("not saved:") and "No space left on device" in message
    assert not production.decisions.exists()


def test_a_take_finished_by_a_run_appears_without_a_reload(page: Any, production: Production) -> None:
    page.evaluate("() => { window.notReloaded = true; }")
    page.keyboard.press("k")
    page.keyboard.press("k")
    page.wait_for_function("() => document.getElementById('shot-id').textContent === 's03'")
    assert page.locator("#takes video").count() == 0
    production.add_take("s03", 1)  # what a run does when the take's video is in
    page.wait_for_selector("#takes .take video", timeout=10_000)
    page.wait_for_function("() => document.getElementById('shot-status').textContent === 'pending-review'")
    assert page.evaluate("() => window.notReloaded === true")


def test_clicks_pick_approve_and_send_back_with_a_note(page: Any, production: Production) -> None:
    page.click('.take[data-number="1"] .pick')
    wait_until(lambda: decisions(production).get("s01", {}).get("select", {}).get("take") == 1, "select written")
    page.click("#approve")
    wait_until(lambda: decisions(production)["s01"]["status"] == "approved", "approval written")
    page.click("#retake")
    page.fill("#retake-note", "the gulls are too fast")
    page.click("#retake-send")
    wait_until(lambda: decisions(production)["s01"]["status"] == "retake", "retake written")
    assert decisions(production)["s01"]["note"] == "the gulls are too fast"
    assert decisions(production)["s01"]["retake"] == {"take": 4}
    page.wait_for_function("() => document.getElementById('shot-status').textContent === 'retake'")


def test_space_on_a_focused_button_toggles_once(page: Any) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('#takes video')].every(v => v.readyState >= 2)")
    page.click("#play")  # the button keeps the focus: space must not also press it
    wait_until(lambda: min(times(page)) > 0.2, "the takes to play")
    page.keyboard.press(" ")
    time.sleep(0.2)
    assert page.evaluate("() => [...document.querySelectorAll('#takes video')].every(v => v.paused)")


def test_the_filter_shows_shots_of_one_status(page: Any) -> None:
    page.select_option("#filter", "unrendered")
    page.wait_for_function("() => document.querySelectorAll('#strip .strip-shot').length === 1")
    assert page.get_attribute("#strip .strip-shot", "data-shot") == "s03"
    page.wait_for_function("() => document.getElementById('shot-id').textContent === 's03'")
    page.select_option("#filter", "")
    page.wait_for_function("() => document.querySelectorAll('#strip .strip-shot').length === 3")


def test_a_browser_without_the_token_gets_nothing(browser: Any, production: Production) -> None:
    with ReviewServer(production.review) as server:
        context = browser.new_context()
        try:
            response = context.new_page().goto(server.base_url + "/")
            assert response is not None and response.status == 403
        finally:
            context.close()
