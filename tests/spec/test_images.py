"""Images by their bytes: format, size, limits, base64, URLs, and a per-process cache by (path, size, mtime)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.spec import images
from orchestrator.spec.images import (
    MAX_BYTES,
    ImageFacts,
    board_problems,
    inspect_base64,
    inspect_bytes,
    inspect_file,
    inspect_stored,
    looks_like_url,
    strip_data_prefix,
    url_problem,
)


def encode(size: tuple[int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_facts_from_bytes(fmt: str) -> None:
    data = encode((640, 360), fmt)
    check = inspect_bytes(data)
    assert check.error is None
    assert check.facts == ImageFacts(hashlib.sha256(data).hexdigest(), 640, 360, fmt, len(data))


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "an empty file"),
        (b"hello, I am text\n", "text"),
        (encode((400, 400), "GIF"), "a GIF"),
        (encode((400, 400), "BMP"), "a BMP"),
        (encode((400, 400), "WEBP"), "a WebP image"),
        (bytes(range(256)) * 4, "unknown binary data"),
    ],
)
def test_other_content_is_rejected_by_its_bytes(data: bytes, kind: str) -> None:
    check = inspect_bytes(data)
    assert check.facts is None
    assert check.error == f"is not a JPEG or PNG image (its content looks like {kind})"


def test_damaged_png_is_reported() -> None:
    check = inspect_bytes(encode((400, 400), "PNG")[:20])
    assert check.error == "looks like a PNG file but cannot be read; is it damaged?"


@pytest.mark.parametrize(
    ("size", "ok"),
    [
        ((300, 300), True),
        ((750, 300), True),  # exactly 2.5:1
        ((300, 750), True),  # exactly 1:2.5
        ((751, 300), False),
        ((300, 751), False),
        ((299, 400), False),
        ((400, 299), False),
    ],
)
def test_board_rules(size: tuple[int, int], ok: bool) -> None:
    facts = ImageFacts("0" * 64, size[0], size[1], "PNG", 1)
    assert (board_problems(facts) == []) is ok


def test_file_is_read_once_per_path_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(encode((640, 360), "PNG"))
    reads: list[Path] = []
    original = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    first = inspect_file(path)
    for _ in range(5):
        assert inspect_file(path) == first
    assert reads == [path]
    # A changed file (new size or mtime) is read again.
    path.write_bytes(encode((400, 400), "PNG"))
    os.utime(path, ns=(1, 1))
    second = inspect_file(path)
    assert second.facts is not None and second.facts.width == 400
    assert len(reads) == 2


def test_files_over_the_limit_are_not_even_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    with path.open("wb") as handle:
        handle.truncate(images.MAX_BYTES + 1)  # sparse: no time spent writing
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read a file that is too big"))
    assert inspect_file(path).error == "is 10.0 MB; the limit is 10.0 MB"


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert inspect_file(tmp_path / "nope.png").error == "does not exist"
    assert inspect_file(tmp_path).error == "is not a regular file"


def test_base64() -> None:
    data = encode((400, 400), "JPEG")
    text = base64.b64encode(data).decode()
    check = inspect_base64(text)
    assert check.facts is not None and check.facts.sha256 == hashlib.sha256(data).hexdigest()
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))  # YAML folded text keeps line breaks
    assert inspect_base64(wrapped).facts == check.facts
    assert inspect_base64("not base64!").error == "is not valid base64"
    assert inspect_base64("QUJD").error is not None  # valid base64 of "ABC": not an image


def test_data_prefix() -> None:
    assert strip_data_prefix("data:image/png;base64,iVBOR") == ("iVBOR", True)
    assert strip_data_prefix("DATA:image/jpeg;charset=x;base64,/9j/") == ("/9j/", True)
    assert strip_data_prefix("iVBOR") == ("iVBOR", False)


def test_urls() -> None:
    assert url_problem("https://example.com/a.png") is None
    assert url_problem("HTTP://example.com/a.png") is None
    assert url_problem("ftp://example.com/a.png") == (
        "URL 'ftp://example.com/a.png' has `ftp:`; only http:// and https:// URLs are accepted"
    )
    assert url_problem("https:///a.png") == "URL 'https:///a.png' has no host"
    assert looks_like_url("s3://bucket/key") and looks_like_url("https://x")
    assert not looks_like_url("boards/a.png") and not looks_like_url("C:/boards/a.png")


def test_malformed_urls_and_nul_paths_are_messages_not_exceptions(tmp_path: Path) -> None:
    # urlsplit raises ValueError on an unclosed IPv6 bracket; Path.stat raises it on a NUL byte.
    assert url_problem("http://[::1") == "URL 'http://[::1' is not a valid URL (Invalid IPv6 URL)"
    assert inspect_file(tmp_path / "a\0.png").error == "contains a NUL character, which no file name can hold"


def test_stored_images_are_read_once_per_object_id_apart_from_files(tmp_path: Path) -> None:
    # A git blob id is a hash of the content: one read per id, and never mixed up with the work tree's cache.
    png = io.BytesIO()
    Image.new("RGB", (400, 300), (1, 2, 3)).save(png, format="PNG")
    reads: list[str] = []

    def read(data: bytes, name: str) -> Callable[[], bytes]:
        def reader() -> bytes:
            reads.append(name)
            return data

        return reader

    first = inspect_stored("abc123", len(png.getvalue()), read(png.getvalue(), "first"))
    again = inspect_stored("abc123", len(png.getvalue()), read(b"other bytes", "again"))
    assert first == again and first.facts is not None and (first.facts.width, first.facts.height) == (400, 300)
    assert reads == ["first"]
    assert inspect_stored("big", MAX_BYTES + 1, read(b"", "big")).error == "is 10.0 MB; the limit is 10.0 MB"
    assert reads == ["first"]  # too large: not even read
    board = tmp_path / "a.png"
    board.write_bytes(b"not an image")
    assert inspect_file(board).error is not None  # the file cache is its own
