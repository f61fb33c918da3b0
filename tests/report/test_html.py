from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from orchestrator.cli import cli
from orchestrator.report import html as reportlib
from orchestrator.report.html import build_report, guess_spec_dir, jpeg_data_uri, render_report, write_report
from orchestrator.store.manifest import (
    FAILED,
    SUCCEEDED,
    UNCONFIRMED,
    Manifest,
    Output,
    Render,
    ShotRecord,
    load_manifest,
    save_manifest,
)

HOSTILE = "<script>alert(1)</script>"


def request(prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "kling-v1-6",
        "mode": "std",
        "duration": 5,
        "cfg_scale": 0.5,
        "aspect_ratio": "16:9",
        "prompt": prompt,
        "negative_prompt": "blurry",
        "images": ["sha256:" + "a" * 64, "sha256:" + "b" * 64],
        "image_refs": ["boards/a.png", "boards/missing.png"],
        "static_mask": None,
        "dynamic_masks": [],
        **extra,
    }


def output(out: Path, rel: str, data: bytes = b"fake mp4") -> Output:
    (out / rel).parent.mkdir(parents=True, exist_ok=True)
    (out / rel).write_bytes(data)
    return Output(rel, hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A spec folder with one board, and a manifest in renders/ with three shots of different fortunes."""
    (tmp_path / "boards").mkdir()
    Image.new("RGB", (640, 360), (200, 40, 40)).save(tmp_path / "boards" / "a.png")
    out = tmp_path / "renders"
    out.mkdir()
    previous = Render(
        fingerprint="e" * 64,
        task_id="100",
        external_task_id="demo-s01-eeee",
        outputs=[output(out, "s01/eeeeeeeeeeee.mp4")],
        request=request("a ship at dawn", mode="pro"),
        finished_at="2026-01-01T00:00:00Z",
        cost=3.5,
    )
    manifest = Manifest(project="demo", spec_path=str(tmp_path / "project.yaml"), provider="local")
    manifest.shots = {
        "s01": ShotRecord(
            status=SUCCEEDED,
            fingerprint="f" * 64,
            task_id="101",
            request=request("a boat at dawn"),
            outputs=[output(out, "s01/ffffffffffff.mp4")],
            cost=1.0,
            submitted_at="2026-01-02T00:00:00.000Z",
            finished_at="2026-01-02T00:01:30.000Z",
            history=[previous],
        ),
        "s02": ShotRecord(
            status=FAILED,
            fingerprint="1" * 64,
            request=request(f"hostile {HOSTILE}", image_refs=["https://example.com/x.png", HOSTILE]),
            error=f"content moderation {HOSTILE}",
        ),
        "s03": ShotRecord(
            status=SUCCEEDED,
            fingerprint="2" * 64,
            request=request("gone video"),
            outputs=[Output("s03/222222222222.mp4", "0" * 64, 9)],  # recorded, but not on disk
        ),
    }
    save_manifest(manifest, out / "manifest.json")
    return tmp_path


def make(project_dir: Path, report: Path, *, embed: bool = False) -> str:
    manifest = load_manifest(project_dir / "renders" / "manifest.json")
    write_report(manifest, manifest_dir=project_dir / "renders", output=report, embed=embed)
    return report.read_text()


def csp(html: str) -> str:
    [meta] = [m for m in tags(html, "meta") if m.get("http-equiv") == "Content-Security-Policy"]
    return meta["content"] or ""


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(html)
    return [attrs for tag, attrs in parser.tags if tag == name]


def test_report_lists_every_shot(project_dir: Path) -> None:
    html = make(project_dir, project_dir / "renders" / "report.html")
    ids = [a["id"] for a in tags(html, "article")]
    assert ids == ["shot-s01", "shot-s02", "shot-s03"]
    assert [a["data-status"] for a in tags(html, "article")] == [SUCCEEDED, FAILED, SUCCEEDED]


def test_report_links_files_that_exist_relative_to_the_report(project_dir: Path) -> None:
    html = make(project_dir, project_dir / "site" / "report.html")
    sources = [v["src"] for v in tags(html, "video")]
    # Previous render first, then the current one; the missing file of s03 is not linked.
    assert sources == ["../renders/s01/eeeeeeeeeeee.mp4", "../renders/s01/ffffffffffff.mp4"]
    assert "s03/222222222222.mp4: file missing" in html
    for src in sources:
        assert src is not None
        assert (project_dir / "site" / src).is_file()


def test_hostile_text_is_shown_not_run(project_dir: Path) -> None:
    html = make(project_dir, project_dir / "renders" / "report.html")
    assert HOSTILE not in html
    assert "hostile &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "content moderation &lt;script&gt;" in html
    assert len(tags(html, "script")) == 1  # ours, the filter


def test_report_is_self_contained(project_dir: Path) -> None:
    html = make(project_dir, project_dir / "renders" / "report.html")
    for tag, attr in (("img", "src"), ("link", "href"), ("script", "src"), ("video", "src")):
        for attrs in tags(html, tag):
            value = attrs.get(attr) or ""
            assert not re.match(r"(https?:)?//", value), f"{tag} {attr}={value} reaches the network"
    assert not tags(html, "link") or all(a["href"] == "data:," for a in tags(html, "link"))


def test_thumbnails_for_local_boards_and_notes_for_the_rest(project_dir: Path) -> None:
    html = make(project_dir, project_dir / "renders" / "report.html")
    images = [a["src"] or "" for a in tags(html, "img")]
    assert len(images) == 2  # s01 and s03 show boards/a.png
    assert all(src.startswith("data:image/jpeg;base64,") for src in images)
    assert "file not found" in html
    assert "remote image" in html


def test_previous_and_current_render_side_by_side_with_field_diff(project_dir: Path) -> None:
    html = make(project_dir, project_dir / "renders" / "report.html")
    card = html[html.index('id="shot-s01"') : html.index('id="shot-s02"')]
    assert "previous <code>eeeeeeeeeeee</code>" in card
    assert "current <code>ffffffffffff</code>" in card
    assert "mode: pro -&gt; std" in card
    assert "<del>ship</del><ins>boat</ins>" in card
    assert "took</dt><dd>90 s" in card


def test_history_that_repeats_the_current_render_shows_no_previous(tmp_path: Path) -> None:
    current = [Output("s/a.mp4", "0" * 64, 1)]
    record = ShotRecord(
        status=SUCCEEDED,
        fingerprint="f" * 64,
        request=request("x"),
        outputs=current,
        history=[Render("f" * 64, "1", None, current, request("x"))],
    )
    data = build_report(
        Manifest(project="p", shots={"s": record}), manifest_dir=tmp_path, report_path=tmp_path / "r.html"
    )
    assert data.shots[0].previous is None


def test_spec_dir_is_found_from_the_manifest(project_dir: Path) -> None:
    manifest = Manifest(project="p", spec_path="../project.yaml")
    assert guess_spec_dir(manifest, manifest_dir=project_dir / "renders") == (project_dir / "renders" / "..")
    assert guess_spec_dir(Manifest(project="p"), manifest_dir=project_dir) is None


def test_jpeg_data_uri_is_small(tmp_path: Path) -> None:
    Image.new("RGB", (3000, 2000), (0, 90, 200)).save(tmp_path / "big.png")
    assert len(jpeg_data_uri(tmp_path / "big.png")) < 20_000
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(OSError):
        jpeg_data_uri(tmp_path / "text.png")


def test_empty_manifest_renders(tmp_path: Path) -> None:
    data = build_report(Manifest(project="p"), manifest_dir=tmp_path, report_path=tmp_path / "r.html")
    assert "This manifest has no shots yet." in render_report(data)


def test_linked_videos_are_only_allowed_from_beside_the_page(project_dir: Path) -> None:
    html = make(project_dir, project_dir / "renders" / "report.html")
    assert "media-src 'self'" in csp(html) and "default-src 'none'" in csp(html)
    assert "media-src *" not in csp(html)


def test_each_player_carries_the_message_shown_when_its_video_cannot_load(project_dir: Path) -> None:
    html = make(project_dir, project_dir / "renders" / "report.html")
    notes = html.count('<p class="video-error" hidden>')
    assert notes == len(tags(html, "video")) == 2
    assert "s01/ffffffffffff.mp4 could not be loaded. This page plays the videos beside it" in html
    assert "<code>orchestrator report --embed</code>" in html
    # The script swaps a failed player for its message: it listens for media errors (they do not bubble).
    assert 'addEventListener("error"' in html and "note.hidden = false" in html


def test_embed_inlines_the_videos_as_data_uris(project_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "mail" / "report.html"  # anywhere: it needs no other file
    html = make(project_dir, report, embed=True)
    sources = [v["src"] or "" for v in tags(html, "video")]
    assert len(sources) == 2
    assert all(src.startswith("data:video/mp4;base64,") for src in sources)
    assert base64.b64decode(sources[1].split(",", 1)[1]) == (project_dir / "renders/s01/ffffffffffff.mp4").read_bytes()
    assert "media-src data:" in csp(html) and "'self'" not in csp(html)
    assert not [a for a in tags(html, "a") if (a.get("href") or "").startswith("data:")]  # never twice the bytes
    assert "s03/222222222222.mp4: file missing" in html
    assert "videos embedded" in html


def test_embed_counts_the_bytes_and_warns_above_the_threshold(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = load_manifest(project_dir / "renders" / "manifest.json")
    data = build_report(manifest, manifest_dir=project_dir / "renders", report_path=project_dir / "r.html", embed=True)
    assert data.embedded_bytes == 2 * len(b"fake mp4")
    assert data.embed_warning() is None
    monkeypatch.setattr(reportlib, "EMBED_WARNING_BYTES", 10)
    assert "the embedded videos total 0 MB" in (data.embed_warning() or "")
    linked = build_report(manifest, manifest_dir=project_dir / "renders", report_path=project_dir / "r.html")
    assert (linked.embedded_bytes, linked.embed_warning()) == (0, None)


def test_report_embed_command_warns_on_stderr(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reportlib, "EMBED_WARNING_BYTES", 10)
    manifest = project_dir / "renders" / "manifest.json"
    result = CliRunner().invoke(cli, ["report", str(manifest), "--embed"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote {manifest.parent / 'report.html'} (3 shots, videos embedded)"
    assert result.stderr.startswith("warning: the embedded videos total")
    assert "data:video/mp4;base64," in (manifest.parent / "report.html").read_text()


def test_estimated_and_charged_units_and_the_unconfirmed_state(tmp_path: Path) -> None:
    shots = {
        "a": ShotRecord(status=SUCCEEDED, task_id="1", request=request("a"), cost=2.0, charged=1.5),
        "b": ShotRecord(status=SUCCEEDED, task_id="2", request=request("b"), cost=3.5),
        "u": ShotRecord(
            status=UNCONFIRMED, request=request("u"), error=f"create timed out {HOSTILE}; attach or resend"
        ),
    }
    data = build_report(Manifest(project="p", shots=shots), manifest_dir=tmp_path, report_path=tmp_path / "r.html")
    html = render_report(data)
    assert "est. 5.5 units" in html
    assert "charged 1.5 units (no charged figure yet for 2 shots: b, u)" in html
    card = html[html.index('id="shot-a"') : html.index('id="shot-b"')]
    assert "est. cost</dt><dd>2 units" in card and "charged</dt><dd>1.5 units" in card
    assert "charged</dt>" not in html[html.index('id="shot-b"') : html.index('id="shot-u"')]
    assert '<span class="badge unconfirmed">unconfirmed</span>' in html
    assert ".badge.unconfirmed { background: var(--unsure); }" in html  # a colour of its own
    assert "create timed out &lt;script&gt;" in html and HOSTILE not in html
    assert 'value="unconfirmed" checked> unconfirmed (1)' in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_dom(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM once its scripts and media have settled, and every console line Chromium logged."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--log-level=0",
            "--v=0",
            "--virtual-time-budget=5000",  # let the media loads fail (or not) before the DOM is dumped
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Chromium logs every console message, CSP violation and uncaught error as a CONSOLE line.
    return done.stdout, [line for line in done.stderr.splitlines() if "CONSOLE" in line]


def playable(project_dir: Path) -> None:
    """Replace the fixture's fake videos with real (tiny, H.264) ones, so that a player fails only when it cannot
    reach its file."""
    from orchestrator.providers.local.animatic import render_animatic

    board = (project_dir / "boards" / "a.png").read_bytes()
    manifest = load_manifest(project_dir / "renders" / "manifest.json")
    record = manifest.shots["s01"]
    for render in (record, record.history[0]):
        dest = project_dir / "renders" / render.outputs[0].path
        render_animatic([board, board], duration=1, aspect_ratio="16:9", dest=dest, cheap=True)
        data = dest.read_bytes()
        render.outputs = [Output(render.outputs[0].path, hashlib.sha256(data).hexdigest(), len(data))]
    save_manifest(manifest, project_dir / "renders" / "manifest.json")


def players(dom: str) -> list[str | None]:
    return [p["class"] for p in tags(dom, "div") if "player" in (p.get("class") or "")]


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install -y chromium)")


@needs_chromium
def test_report_opens_in_headless_chromium_without_console_errors(project_dir: Path, tmp_path: Path) -> None:
    playable(project_dir)
    report = project_dir / "renders" / "report.html"
    make(project_dir, report)
    dom, console = chromium_dom(report, tmp_path / "chromium-profile")
    assert console == []  # no CSP violation: media-src 'self' lets the page load the videos beside it
    assert 'class="js"' in dom  # the filter script ran
    assert len(tags(dom, "article")) == 3
    assert len(tags(dom, "script")) == 1  # the hostile prompt stayed text
    assert players(dom) == ["player", "player"]  # beside its videos, every player plays


@needs_chromium
def test_in_chromium_a_video_that_cannot_load_shows_its_message(project_dir: Path, tmp_path: Path) -> None:
    playable(project_dir)
    moved = tmp_path / "moved" / "report.html"  # the page alone, away from its videos
    moved.parent.mkdir()
    moved.write_text(make(project_dir, project_dir / "renders" / "report.html"))
    dom, console = chromium_dom(moved, tmp_path / "chromium-profile")
    assert console == []
    assert players(dom) == ["player failed", "player failed"]
    assert all("hidden" in video for video in tags(dom, "video"))
    assert [p for p in tags(dom, "p") if p.get("class") == "video-error" and "hidden" in p] == []


@needs_chromium
def test_in_chromium_an_embedded_report_needs_no_other_file(project_dir: Path, tmp_path: Path) -> None:
    playable(project_dir)
    alone = tmp_path / "alone" / "report.html"
    make(project_dir, alone, embed=True)
    dom, console = chromium_dom(alone, tmp_path / "chromium-profile")
    assert console == []  # media-src data: allows the inlined videos, and nothing else is fetched
    assert players(dom) == ["player", "player"]
