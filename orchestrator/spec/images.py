"""Images: what a board or mask is (format, size, content hash), read from its bytes, once per distinct file.

The format comes from the file's first bytes, never its extension; width and height come from Pillow, which reads
only the header (``Image.open`` does not decode pixels). Results are cached per process by absolute path, size
and mtime, so a 10,000-shot spec over 20 boards reads 20 files.

Nothing here raises for a bad image: an ``ImageCheck`` carries either the facts or a message for the user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

MAX_BYTES = 10 * 1024 * 1024
MIN_SIDE = 300
MAX_ASPECT = 2.5
FORMATS: tuple[str, ...] = ("PNG", "JPEG")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_DATA_PREFIX = re.compile(r"^data:[^,]*?;base64,", re.IGNORECASE)
_OTHER_FORMATS = (
    (b"GIF87a", "a GIF"),
    (b"GIF89a", "a GIF"),
    (b"BM", "a BMP"),
    (b"II*\x00", "a TIFF"),
    (b"MM\x00*", "a TIFF"),
    (b"%PDF", "a PDF"),
)


@dataclass(frozen=True)
class ImageFacts:
    """What we know of an image from its bytes."""

    sha256: str
    width: int
    height: int
    format: str  # "PNG" or "JPEG"
    bytes: int


@dataclass(frozen=True)
class ImageCheck:
    """``facts`` when the bytes are a usable JPEG or PNG, else ``error`` saying what is wrong."""

    facts: ImageFacts | None = None
    error: str | None = None


_file_cache: dict[tuple[str, int, int], ImageCheck] = {}
_stored_cache: dict[str, ImageCheck] = {}


def clear_cache() -> None:
    """Forget every file read so far (for tests, and long-lived processes that watch files change)."""
    _file_cache.clear()
    _stored_cache.clear()


def inspect_stored(object_id: str, size: int, read: Callable[[], bytes]) -> ImageCheck:
    """Facts about an image kept in a content-addressed store (a git blob), read at most once per ``object_id``.

    The id is a hash of the content, so one id is one content whatever path or revision names it; the cache of
    working-tree files (keyed by path, size and mtime) is a different one and never sees these.
    """
    cached = _stored_cache.get(object_id)
    if cached is None:
        if size > MAX_BYTES:
            cached = ImageCheck(error=f"is {_megabytes(size)}; the limit is {_megabytes(MAX_BYTES)}")
        else:
            cached = inspect_bytes(read())
        _stored_cache[object_id] = cached
    return cached


def inspect_file(path: Path) -> ImageCheck:
    """Facts about the image file at ``path`` (absolute), read at most once per (path, size, mtime)."""
    if "\0" in str(path):
        return ImageCheck(error="contains a NUL character, which no file name can hold")
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ImageCheck(error="does not exist")
    except OSError as exc:
        return ImageCheck(error=f"cannot read the file: {exc.strerror or exc}")
    if not os.path.isfile(path):
        return ImageCheck(error="is not a regular file")
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    cached = _file_cache.get(key)
    if cached is None:
        cached = _read_file(path, stat.st_size)
        _file_cache[key] = cached
    return cached


def _read_file(path: Path, size: int) -> ImageCheck:
    if size > MAX_BYTES:
        return ImageCheck(error=f"is {_megabytes(size)}; the limit is {_megabytes(MAX_BYTES)}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return ImageCheck(error=f"cannot read the file: {exc.strerror or exc}")
    return inspect_bytes(data)


def inspect_bytes(data: bytes) -> ImageCheck:
    """Facts about an image given as bytes: format by magic number, size from the header, sha256 of the bytes."""
    if len(data) > MAX_BYTES:
        return ImageCheck(error=f"is {_megabytes(len(data))}; the limit is {_megabytes(MAX_BYTES)}")
    magic_format = _magic_format(data)
    if magic_format is None:
        return ImageCheck(error=f"is not a JPEG or PNG image (its content looks like {_guess_kind(data)})")
    try:
        with warnings.catch_warnings():
            # Header-only read: a huge declared size is our own "too large" problem, not a Pillow warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return ImageCheck(error=f"looks like a {magic_format} file but cannot be read; is it damaged?")
    digest = hashlib.sha256(data).hexdigest()
    return ImageCheck(facts=ImageFacts(digest, width, height, magic_format, len(data)))


def inspect_base64(text: str) -> ImageCheck:
    """Facts about an inline base64 image (already without any ``data:`` prefix)."""
    compact = "".join(text.split())  # YAML folded scalars may carry line breaks
    if len(compact) > (MAX_BYTES * 4) // 3 + 4:
        return ImageCheck(error=f"the decoded image would be over {_megabytes(MAX_BYTES)}")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return ImageCheck(error="is not valid base64")
    return inspect_bytes(data)


def strip_data_prefix(text: str) -> tuple[str, bool]:
    """``data:image/png;base64,AAAA`` -> (``AAAA``, True): the provider wants raw base64 only."""
    match = _DATA_PREFIX.match(text)
    return (text[match.end() :], True) if match else (text, False)


def board_problems(facts: ImageFacts) -> list[str]:
    """The provider's rules for input images beyond format and size: minimum side and aspect ratio."""
    problems: list[str] = []
    if facts.width < MIN_SIDE or facts.height < MIN_SIDE:
        problems.append(f"is {facts.width}x{facts.height} px; images must be at least {MIN_SIDE}x{MIN_SIDE} px")
    ratio = facts.width / facts.height if facts.height else float("inf")
    if not 1 / MAX_ASPECT <= ratio <= MAX_ASPECT:
        problems.append(
            f"has aspect ratio {_ratio(facts.width, facts.height)} ({facts.width}x{facts.height}); "
            f"it must be between 1:{MAX_ASPECT:g} and {MAX_ASPECT:g}:1"
        )
    return problems


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be sent as an image URL, or None when it is a plausible http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # `http://[::1`: "Invalid IPv6 URL"
        return f"URL {url!r} is not a valid URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"`{parts.scheme}:`" if parts.scheme else "no scheme"
        return f"URL {url!r} has {scheme}; only http:// and https:// URLs are accepted"
    if not parts.netloc:
        return f"URL {url!r} has no host"
    if any(char.isspace() or not char.isprintable() for char in url):
        # Sent as is to the provider (and kept in the manifest and report): spaces and control characters there
        # are a mistake or an attempt to smuggle something; a real URL encodes them (%20).
        return f"URL {url!r} contains spaces or control characters; percent-encode them (a space is %20)"
    try:
        parts.port  # noqa: B018 - reading it validates it
    except ValueError:
        return f"URL {url!r} has an invalid port"
    return None


def looks_like_url(text: str) -> bool:
    """True for strings the spec means as URLs (``scheme://...``), so ``ftp://x`` is a bad URL, not a missing file."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def _magic_format(data: bytes) -> str | None:
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    return None


def _guess_kind(data: bytes) -> str:
    if not data:
        return "an empty file"
    for magic, kind in _OTHER_FORMATS:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "a WebP image"
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown binary data"
    return "text"


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _ratio(width: int, height: int) -> str:
    if height == 0:
        return f"{width}:0"
    value = width / height
    return f"{value:.2f}:1" if value >= 1 else f"1:{height / width:.2f}"
