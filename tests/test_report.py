from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.manifest import FAILED, SUCCEEDED, Manifest, Output, Render, ShotRecord, save_manifest
from orchestrator.report import build_report, guess_spec_dir, jpeg_data_uri, render_report, write_report

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


def make(project_dir: Path, report: Path) -> str:
    from orchestrator.manifest import load_manifest

    manifest = load_manifest(project_dir / "renders" / "manifest.json")
    write_report(manifest, manifest_dir=project_dir / "renders", output=report)
    return report.read_text()


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


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install -y chromium)")
def test_report_opens_in_headless_chromium_without_console_errors(project_dir: Path, tmp_path: Path) -> None:
    report = project_dir / "renders" / "report.html"
    make(project_dir, report)
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
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--log-level=0",
            "--v=0",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Chromium logs every console message, CSP violation and uncaught error as a CONSOLE line.
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    dom = done.stdout
    assert 'class="js"' in dom  # the filter script ran
    assert len(tags(dom, "article")) == 3
    assert len(tags(dom, "script")) == 1  # the hostile prompt stayed text
