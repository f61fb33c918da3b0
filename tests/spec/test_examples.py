"""The demo and example specs' own files: boards and masks Kling would accept, a demo that renders offline.

Besides validating each spec, we check what only the images and the drawing script can
get wrong (sizes, formats, total weight, masks lining up with their boards and trajectories).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from orchestrator.spec.load import check_project

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
DEMO = SPECS / "demo" / "project.yaml"
EXAMPLES = sorted((SPECS / "examples").glob("*.yaml"))
BOARDS = sorted((SPECS / "demo" / "boards").iterdir())
MASKS = sorted((SPECS / "examples" / "masks").iterdir())
BOARD_SIZES = {(640, 360), (360, 640), (480, 480)}


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = yaml.safe_load(handle)
    return data


@pytest.fixture
def make_boards(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """tools/make_boards.py, imported by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_boards", ROOT / "tools" / "make_boards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being built.
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def shot_images(data: dict[str, Any], shot: dict[str, Any]) -> list[Any]:
    images = shot.get("images", data.get("defaults", {}).get("images"))
    return list(data["image_sets"][images]) if isinstance(images, str) else list(images)


def first_image(spec: Path, data: dict[str, Any], shot: dict[str, Any]) -> Image.Image:
    first = shot_images(data, shot)[0]
    return Image.open(spec.parent / (first if isinstance(first, str) else first["path"]))


def mask_path(spec: Path, mask: str | dict[str, str]) -> Path:
    return spec.parent / (mask if isinstance(mask, str) else mask["path"])


@pytest.mark.parametrize("board", BOARDS, ids=lambda path: path.name)
def test_board_is_a_kling_sized_png_or_jpeg(board: Path) -> None:
    with Image.open(board) as image:
        assert image.format == {".png": "PNG", ".jpg": "JPEG"}[board.suffix]
        assert image.size in BOARD_SIZES
        width, height = image.size
        assert min(width, height) >= 300
        assert 1 / 2.5 <= width / height <= 2.5


def test_boards_cover_both_formats_and_every_aspect_ratio() -> None:
    formats, sizes = set(), set()
    for board in BOARDS:
        with Image.open(board) as image:
            formats.add(image.format)
            sizes.add(image.size)
    assert formats == {"PNG", "JPEG"}
    assert sizes == BOARD_SIZES


def test_boards_are_drawn_not_flat_placeholders() -> None:
    for board in BOARDS:
        with Image.open(board) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) >= 12, board.name


def test_everything_under_specs_weighs_under_one_megabyte() -> None:
    files = [path for path in SPECS.rglob("*") if path.is_file() and "renders" not in path.parts]
    assert sum(path.stat().st_size for path in files) < 1_000_000


def test_every_spec_starts_with_the_schema_line_relative_to_itself() -> None:
    for spec in [DEMO, *EXAMPLES]:
        first = spec.read_text(encoding="utf-8").splitlines()[0]
        prefix = "# yaml-language-server: $schema="
        assert first.startswith(prefix), spec
        assert (spec.parent / first.removeprefix(prefix)).resolve() == ROOT / "schemas" / "project.schema.json"


def test_demo_renders_offline_and_covers_the_feature_matrix() -> None:
    data = load(DEMO)
    shots, defaults = data["shots"], data["defaults"]
    assert data["provider"] == "local"
    assert len(shots) >= 6
    assert {shot.get("mode", defaults["mode"]) for shot in shots} == {"std", "pro"}
    assert {shot.get("duration", defaults["duration"]) for shot in shots} == {5, 10}
    assert {shot.get("aspect_ratio", defaults["aspect_ratio"]) for shot in shots} == {"16:9", "9:16", "1:1"}
    assert any(isinstance(shot["images"], str) for shot in shots)
    assert any(isinstance(shot["images"], list) for shot in shots)
    for shot in shots:
        assert "static_mask" not in shot and "dynamic_masks" not in shot
        for image in shot_images(data, shot):
            assert isinstance(image, str) and not image.startswith(("http:", "https:")), image
            assert (DEMO.parent / image).is_file(), image


def test_every_board_is_used_by_the_demo() -> None:
    data = load(DEMO)
    used = {(DEMO.parent / image).resolve() for shot in data["shots"] for image in shot_images(data, shot)}
    assert used == {board.resolve() for board in BOARDS}


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda path: path.name)
def test_masks_match_their_first_image_and_trajectories_start_on_the_mask(spec: Path) -> None:
    data = load(spec)
    for shot in data["shots"]:
        with first_image(spec, data, shot) as image:
            width, height = image.size
        if "static_mask" in shot:
            with Image.open(mask_path(spec, shot["static_mask"])) as static:
                assert static.size == (width, height), shot["id"]
        for group in shot.get("dynamic_masks", []):
            points = group["trajectories"]
            assert all(0 <= p["x"] < width and 0 <= p["y"] < height for p in points), shot["id"]
            with Image.open(mask_path(spec, group["mask"])) as moving:
                assert moving.size == (width, height), shot["id"]
                start = points[0]
                # Trajectories count y from the bottom; Pillow counts from the top.
                assert moving.convert("L").getpixel((start["x"], height - 1 - start["y"])) == 255, shot["id"]


def test_masks_are_black_and_white() -> None:
    for path in MASKS:
        with Image.open(path) as image:
            assert image.format == "PNG"
            colours = image.convert("L").getcolors()
            assert colours is not None and {value for _, value in colours} == {0, 255}, path.name


def test_inline_base64_example_is_a_valid_small_png() -> None:
    data = load(SPECS / "examples" / "all-features.yaml")
    inline = [
        item["base64"]
        for items in data["image_sets"].values()
        for item in items
        if isinstance(item, dict) and "base64" in item
    ]
    assert inline
    for text in inline:
        with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as image:
            assert image.format == "PNG"
            assert image.size == (300, 300)


def test_make_boards_is_deterministic_and_matches_the_committed_files(make_boards: ModuleType) -> None:
    module = make_boards
    boards = module.boards()
    assert {board.name for board in boards} == {path.name for path in BOARDS}
    first, again = (module.render(boards[0], seed=1) for _ in range(2))
    assert first.tobytes() == again.tobytes()
    for seed, board in enumerate(boards, start=1):
        with Image.open(SPECS / "demo" / "boards" / board.name) as committed:
            assert committed.size == board.size
            if committed.format == "PNG":
                # Pixels, not file bytes: a stale board (script changed, images not regenerated) fails here.
                # A tolerance, because another Pillow release may draw text or quantise a few pixels differently.
                drawn = module.to_palette(module.render(board, seed=seed)).convert("RGB")
                assert _mean_abs_difference(committed.convert("RGB"), drawn) < 2.0, board.name
    drawn_masks = module.masks()
    assert set(drawn_masks) == {path.name for path in MASKS}
    for name, image in drawn_masks.items():
        with Image.open(SPECS / "examples" / "masks" / name) as committed:
            assert _mean_abs_difference(committed.convert("L"), image) < 2.0, name


def _mean_abs_difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference, 0 (identical) to 255."""
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


@pytest.mark.parametrize("spec", [DEMO, *EXAMPLES], ids=lambda path: path.name)
def test_spec_validates_and_only_masks_warn(spec: Path) -> None:
    result = check_project(spec)
    assert result.errors == []
    assert result.project is not None
    masked = {shot.id for shot in result.project.shots if shot.static_mask or shot.dynamic_masks}
    assert {problem.shot for problem in result.warnings} == masked
    assert all("mask" in problem.message for problem in result.warnings)


def test_example_shots_inherit_and_override_defaults() -> None:
    project = check_project(SPECS / "examples" / "all-features.yaml").project
    assert project is not None
    inherits, overrides = project.shot("a01-defaults"), project.shot("a02-every-override")
    assert (inherits.mode, inherits.duration, inherits.cfg_scale) == ("std", 5, 0.5)
    assert inherits.callback_url == "https://hooks.example.com/kling"
    assert (overrides.mode, overrides.duration, overrides.cfg_scale) == ("pro", 10, 0.8)
    assert {image.source for image in overrides.images} == {"path", "url", "base64"}
    assert overrides.prompt.startswith("Mara walks the pier in shot 2 of all-features.")


def test_example_takes_variants_and_matrix_expand() -> None:
    project = check_project(SPECS / "examples" / "all-features.yaml").project
    assert project is not None
    variants = project.requests_of("a06-takes-and-variants")
    assert [(shot.variant, shot.takes, shot.mode) for shot in variants] == [("wide", 2, "std"), ("pro", 2, "pro")]
    assert "24mm lens, take variant wide" in variants[0].prompt
    matrix = project.requests_of("a07-matrix")
    assert [shot.variant for shot in matrix] == ["std-5", "std-10", "pro-5", "pro-10"]
