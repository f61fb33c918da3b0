"""Loading and resolving specs: defaults, sets, vars, images by content, fingerprints, and the semantic checks."""

from __future__ import annotations

import base64
import hashlib
import io
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from orchestrator.errors import Problem, SpecError
from orchestrator.plan.pricing import Pricing
from orchestrator.spec import images as imagelib
from orchestrator.spec.fingerprint import fingerprint
from orchestrator.spec.load import check_project, load_project, summarize
from orchestrator.spec.shot import Limits
from tests.helpers import write_board


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    for index, name in enumerate("abcde"):
        write_board(tmp_path / "boards" / f"{name}.png", colour=(index * 40, 0, 0))
    return tmp_path


def write(directory: Path, text: str, name: str = "project.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors_of(path: Path) -> list[Problem]:
    return check_project(path).errors


def only_error(path: Path) -> Problem:
    errors = errors_of(path)
    assert len(errors) == 1, [e.format() for e in errors]
    return errors[0]


FULL = """
    version: 1
    project: harbor
    model: kling-v1-6
    output_dir: out/renders
    provider: local
    pricing: {std_5s: 2}
    limits: {concurrency: 3, requests_per_second: 1.5}
    defaults:
      mode: pro
      duration: 10
      cfg_scale: 0.25
      aspect_ratio: "1:1"
      negative_prompt: "blurry, {{ avoid }}"
      vars: {hero: Default}
    vars: {style: film, avoid: text, hero: Project}
    image_sets:
      pier: [boards/a.png, boards/b.png]
    shots:
      - id: s01
        images: pier
        prompt: "{{ hero }} at the {{ place }}, {{ style }}"
        vars: {place: pier, hero: Mara}
      - id: s02
        images: [boards/c.png, boards/a.png, {path: boards/d.png}]
        prompt: "shot {{ shot.id }} #{{ shot.number }} of {{ project.name }} ({{ hero }})"
        mode: std
        duration: 5
        aspect_ratio: "9:16"
        negative_prompt: "nothing"
        callback_url: https://hooks.example.com/kling
"""


def test_full_spec_resolves_with_defaults_overrides_sets_and_vars(project_dir: Path) -> None:
    project = load_project(write(project_dir, FULL))
    assert project.project == "harbor"
    assert project.version == 1
    assert project.output_dir == (project_dir / "out" / "renders").resolve()
    assert project.output_dir.is_absolute()
    assert project.provider == "local"
    assert project.pricing == {"std_5s": 2.0}
    assert project.limits == Limits(concurrency=3, requests_per_second=1.5)
    assert project.vars == {"style": "film", "avoid": "text", "hero": "Project"}
    s01, s02 = project.shots
    assert [s01.index, s02.index] == [0, 1]
    # defaults apply where the shot is silent ...
    assert (s01.mode, s01.duration, s01.aspect_ratio, s01.cfg_scale) == ("pro", 10, "1:1", 0.25)
    assert s01.negative_prompt == "blurry, text"
    # ... and the shot wins where it speaks.
    assert (s02.mode, s02.duration, s02.aspect_ratio) == ("std", 5, "9:16")
    assert s02.negative_prompt == "nothing"
    assert s02.callback_url == "https://hooks.example.com/kling"
    # vars: project < defaults < shot; plus shot and project.
    assert s01.prompt == "Mara at the pier, film"
    assert s02.prompt == "shot s02 #2 of harbor (Default)"
    assert [image.ref for image in s01.images] == ["boards/a.png", "boards/b.png"]
    assert [image.ref for image in s02.images] == ["boards/c.png", "boards/a.png", "boards/d.png"]
    assert s01.model == "kling-v1-6"
    assert s01.location is not None and s01.location.line == 19


def test_built_in_defaults(project_dir: Path) -> None:
    path = write(
        project_dir,
        """
        version: 1
        project: p
        shots:
          - {id: a, images: [boards/a.png, boards/b.png], prompt: go}
        """,
    )
    project = load_project(path)
    shot = project.shots[0]
    assert (shot.mode, shot.duration, shot.aspect_ratio, shot.model) == ("std", 5, "16:9", "kling-v1-6")
    assert shot.cfg_scale is None and shot.negative_prompt is None and shot.callback_url is None
    assert project.output_dir == project_dir.resolve() / "renders"
    assert project.limits == Limits()
    assert project.provider is None and project.pricing == {}


def test_images_are_identified_by_content(project_dir: Path) -> None:
    project = load_project(write(project_dir, FULL))
    image = project.shots[0].images[0]
    data = (project_dir / "boards" / "a.png").read_bytes()
    assert image.source == "path"
    assert image.path == (project_dir / "boards" / "a.png").resolve()
    assert image.path.is_absolute()
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert (image.width, image.height, image.format, image.bytes) == (640, 360, "PNG", len(data))


def test_fingerprint_is_filled_stable_and_content_based(project_dir: Path) -> None:
    path = write(project_dir, FULL)
    first = load_project(path)
    for shot in first.shots:
        assert shot.fingerprint == fingerprint(shot)
    again = load_project(path)
    assert [s.fingerprint for s in again.shots] == [s.fingerprint for s in first.shots]
    # Reformatting the YAML (flow style, key order, comments) changes nothing.
    reformatted = write(
        project_dir,
        FULL.replace("mode: std\n", "# a comment\n        mode: std\n").replace("prompt: pier", "prompt: pier"),
        name="other.yaml",
    )
    assert [s.fingerprint for s in load_project(reformatted).shots] == [s.fingerprint for s in first.shots]
    # New bytes in a board change exactly the shots that use it.
    imagelib.clear_cache()
    write_board(project_dir / "boards" / "d.png", colour=(1, 2, 3))
    changed = load_project(path)
    assert changed.shots[0].fingerprint == first.shots[0].fingerprint
    assert changed.shots[1].fingerprint != first.shots[1].fingerprint


def test_spec_sha256_and_summary(project_dir: Path) -> None:
    path = write(project_dir, FULL)
    project = load_project(path)
    assert project.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    summary = summarize(project)
    assert (summary.shots, summary.images, summary.distinct_images) == (2, 5, 4)
    assert summary.units == Pricing(std_5s=2).total_units(project.shots)
    assert summary.format() == f"2 shots, 5 images (4 distinct), est. {summary.units:g} units"


def test_url_and_base64_images(project_dir: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 400), (9, 9, 9)).save(buffer, format="JPEG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    path = write(
        project_dir,
        f"""
        version: 1
        project: p
        shots:
          - id: a
            images: [https://example.com/x.jpg, {{url: "http://example.com/y.png"}}, {{base64: "{encoded}"}}]
            prompt: go
          - id: b
            images: [boards/a.png, "data:image/jpeg;base64,{encoded}"]
            prompt: go
        """,
    )
    result = check_project(path)
    assert result.errors == []
    assert result.project is not None
    url, url2, inline = result.project.shots[0].images
    assert (url.source, url.url, url.sha256) == ("url", "https://example.com/x.jpg", None)
    assert url2.url == "http://example.com/y.png"
    assert inline.source == "base64" and inline.base64 == encoded and inline.ref == "<base64>"
    assert (inline.width, inline.height, inline.format) == (400, 400, "JPEG")
    assert inline.sha256 == hashlib.sha256(buffer.getvalue()).hexdigest()
    stripped = result.project.shots[1].images[1]
    assert stripped.base64 == encoded  # the data: prefix is gone
    [warning] = result.warnings
    assert warning.line == 8 and warning.shot == "b" and "data:" in warning.message


def test_each_distinct_image_file_is_read_once(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[Path] = []
    original = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    lines = ["version: 1", "project: p", "image_sets: {s: [boards/a.png, boards/b.png]}", "shots:"]
    lines += [f"  - {{id: s{i}, images: s, prompt: p}}" for i in range(30)]
    lines += [f"  - {{id: t{i}, images: [boards/c.png, boards/a.png], prompt: p}}" for i in range(30)]
    path = write(project_dir, "\n".join(lines) + "\n")
    project = load_project(path)
    assert len(project.shots) == 60
    boards_read = sorted(p.name for p in reads if p.suffix == ".png")
    assert boards_read == ["a.png", "b.png", "c.png"]
    load_project(path)  # a second load in the same process reads no image again
    assert sorted(p.name for p in reads if p.suffix == ".png") == boards_read


def test_load_project_raises_with_every_problem(project_dir: Path) -> None:
    path = write(
        project_dir,
        """
        version: 1
        project: p
        shots:
          - {id: a, images: [boards/a.png], prompt: go}
          - {id: b, images: [boards/a.png, boards/zz.png], prompt: go}
        """,
    )
    with pytest.raises(SpecError) as caught:
        load_project(path)
    lines = sorted(problem.line for problem in caught.value.problems)
    assert lines == [4, 5]
    assert "and 1 more" in str(caught.value)


def test_warnings_fail_only_when_strict(project_dir: Path) -> None:
    path = write(
        project_dir,
        """
        version: 1
        project: p
        model: kling-v9
        shots:
          - {id: a, images: [boards/a.png, boards/b.png], prompt: go}
          - {id: b, images: [boards/a.png, boards/b.png], prompt: go}
        """,
    )
    project = load_project(path)
    assert project.shots[0].model == "kling-v9"
    result = check_project(path)
    # One warning at the project's `model`, not one per shot.
    assert [(w.line, w.shot) for w in result.warnings] == [(3, None)]
    assert result.ok() and not result.ok(strict=True)
    with pytest.raises(SpecError) as caught:
        load_project(path, strict=True)
    assert "kling-v9" in caught.value.problems[0].message


# ---- semantic checks, each at its node, with its shot -------------------------------------------------------


def shot_spec(directory: Path, shot_lines: str, *, head: str = "") -> Path:
    """A valid spec whose second shot is ``s02`` (its id on line 9, ``shot_lines`` from line 10, plus ``head``)."""
    text = (
        "version: 1\nproject: p\n"
        + head
        + "image_sets:\n  pair: [boards/a.png, boards/b.png]\n"
        + "shots:\n  - id: s01\n    images: pair\n    prompt: fine\n"
        + "  - id: s02\n"
        + textwrap.indent(textwrap.dedent(shot_lines).strip("\n"), "    ")
        + "\n"
    )
    path = directory / "project.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_duplicate_and_case_colliding_ids(project_dir: Path) -> None:
    path = write(
        project_dir,
        """
        version: 1
        project: p
        defaults: {images: [boards/a.png, boards/b.png], prompt: go}
        shots:
          - id: s01
          - id: S01
          - id: s01
        """,
    )
    errors = errors_of(path)
    assert [(e.line, e.shot) for e in errors] == [(6, "S01"), (7, "s01")]
    assert "only in case" in errors[0].message
    assert "duplicate shot id `s01` (first used at line 5)" in errors[1].message


def test_unsafe_id(project_dir: Path) -> None:
    path = shot_spec(project_dir, "images: pair\nprompt: x").read_text().replace("id: s02", "id: ../etc")
    problem = only_error(write(project_dir, path))
    assert problem.line == 9 and "filesystem-safe" in problem.message


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ("[boards/a.png]", "has 1 item(s); it needs 2 to 4"),
        ("[boards/a.png, boards/b.png, boards/c.png, boards/d.png, boards/e.png]", "has 5 item(s); it needs 2 to 4"),
        ("[boards/a.png, boards/missing.png]", "images[1] `boards/missing.png` does not exist"),
        ("pairs", "unknown image set `pairs`; did you mean `pair`?"),
    ],
)
def test_image_list_problems(project_dir: Path, images: str, expected: str) -> None:
    problem = only_error(shot_spec(project_dir, f"images: {images}\nprompt: x"))
    assert (problem.line, problem.shot) == (10, "s02")
    assert expected in problem.message


def test_text_file_named_png_is_caught_by_its_bytes(project_dir: Path) -> None:
    (project_dir / "boards" / "fake.png").write_text("not an image at all\n")
    problem = only_error(shot_spec(project_dir, "images: [boards/a.png, boards/fake.png]\nprompt: x"))
    assert (problem.line, problem.column, problem.shot) == (10, 28, "s02")
    assert "not a JPEG or PNG image (its content looks like text)" in problem.message


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((299, 400), "is 299x400 px; images must be at least 300x300 px"),
        ((900, 300), "has aspect ratio 3.00:1 (900x300); it must be between 1:2.5 and 2.5:1"),
        ((300, 900), "has aspect ratio 1:3.00"),
    ],
)
def test_board_size_and_aspect(project_dir: Path, size: tuple[int, int], expected: str) -> None:
    write_board(project_dir / "boards" / "odd.png", size)
    problem = only_error(shot_spec(project_dir, "images: [boards/odd.png, boards/a.png]\nprompt: x"))
    assert (problem.line, problem.shot) == (10, "s02")
    assert expected in problem.message


def test_jpeg_with_png_extension_is_fine_and_reported_as_jpeg(project_dir: Path) -> None:
    Image.new("RGB", (500, 500)).save(project_dir / "boards" / "photo.png", format="JPEG")
    project = load_project(shot_spec(project_dir, "images: [boards/photo.png, boards/a.png]\nprompt: x"))
    assert project.shots[1].images[0].format == "JPEG"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ('{base64: "@@@not base64@@@"}', "inline base64 image is not valid base64"),
        ("ftp://example.com/a.png", "has `ftp:`; only http:// and https://"),
        ('{url: "file:///etc/passwd"}', "has `file:`"),
    ],
)
def test_inline_and_url_problems(project_dir: Path, item: str, expected: str) -> None:
    problem = only_error(shot_spec(project_dir, f"images: [boards/a.png, {item}]\nprompt: x"))
    assert (problem.line, problem.shot) == (10, "s02")
    assert expected in problem.message


def test_prompt_length_counts_the_rendered_text(project_dir: Path) -> None:
    ok = shot_spec(project_dir, "images: pair\nprompt: \"{{ 'a' * 500 }}\"")
    assert errors_of(ok) == []
    problem = only_error(shot_spec(project_dir, "images: pair\nprompt: \"{{ 'a' * 500 }}!\""))
    assert (problem.line, problem.shot) == (11, "s02")
    assert "prompt is 501 characters once rendered; the limit is 500" in problem.message


def test_negative_prompt_limit_and_empty_prompt(project_dir: Path) -> None:
    long_negative = shot_spec(project_dir, f"images: pair\nprompt: x\nnegative_prompt: {'n' * 201}")
    problem = only_error(long_negative)
    assert problem.line == 12 and "negative_prompt is 201 characters" in problem.message
    empty = only_error(shot_spec(project_dir, "images: pair\nprompt: \"{{ '' }}  \""))
    assert empty.line == 11 and "prompt is empty once rendered" in empty.message


def test_missing_prompt_and_images_name_the_shot(project_dir: Path) -> None:
    errors = errors_of(shot_spec(project_dir, "mode: pro"))
    assert [(e.line, e.shot) for e in errors] == [(9, "s02"), (9, "s02")]
    assert {e.message.split(";")[0] for e in errors} == {"has no `images`", "has no `prompt`"}


def test_template_problems_are_located_never_raised(project_dir: Path) -> None:
    undefined = only_error(shot_spec(project_dir, "images: pair\nprompt: '{{ villain }} runs'"))
    assert (undefined.line, undefined.shot) == (11, "s02")
    assert "'villain' is undefined" in undefined.message
    escape = only_error(shot_spec(project_dir, "images: pair\nprompt: \"{{ ''.__class__.__mro__ }}\""))
    assert (escape.line, escape.shot) == (11, "s02")
    assert "sandbox" in escape.message
    syntax = only_error(shot_spec(project_dir, "images: pair\nprompt: '{% if %}'"))
    assert syntax.line == 11 and "template syntax error" in syntax.message


def test_problem_from_defaults_is_one_line_at_defaults_naming_the_shots(project_dir: Path) -> None:
    path = write(
        project_dir,
        """
        version: 1
        project: p
        defaults:
          images: [boards/a.png, boards/b.png]
          prompt: "{{ who }} waves"
        shots:
          - {id: one, vars: {who: Ann}}
          - {id: two}
          - {id: three}
        """,
    )
    [error] = errors_of(path)
    assert (error.line, error.shot) == (5, None)
    assert error.message.endswith("; in 2 of the 3 shots that inherit it (two, three)")


def test_over_long_negative_prompt_in_defaults_is_one_line_with_the_count(project_dir: Path) -> None:
    # It used to be six identical lines, one per inheriting shot.
    shots = "".join(f"  - {{id: s{n}}}\n" for n in range(6))
    path = write(
        project_dir,
        """
        version: 1
        project: p
        defaults:
          images: [boards/a.png, boards/b.png]
          prompt: go
          negative_prompt: "{{ 'x' * (200 + shot.number) }}"
        shots:
          - {id: own, negative_prompt: short}
        """.rstrip(" ")
        + textwrap.indent(shots, "        "),
    )
    [error] = errors_of(path)
    assert (error.line, error.column, error.shot) == (6, 20, None)
    assert error.message == (
        "negative_prompt is over 200 characters once rendered (up to 207); in all 6 shots that inherit it "
        "(s0, s1, s2, ...)"
    )


def test_masks(project_dir: Path) -> None:
    write_board(project_dir / "masks" / "still.png", (640, 360))
    write_board(project_dir / "masks" / "small.png", (320, 180))
    write_board(project_dir / "masks" / "boat.png", (640, 360))
    good = shot_spec(
        project_dir,
        """
        images: pair
        prompt: x
        static_mask: masks/still.png
        dynamic_masks:
          - mask: masks/boat.png
            trajectories: [{x: 0, y: 0}, {x: 639, y: 359}]
        """,
    )
    result = check_project(good)
    assert result.errors == []
    assert result.project is not None
    shot = result.project.shots[1]
    assert shot.static_mask is not None and shot.static_mask.width == 640
    assert [(p.x, p.y) for p in shot.dynamic_masks[0].trajectories] == [(0, 0), (639, 359)]
    [warning] = result.warnings
    assert warning.shot == "s02" and "masks" in warning.message

    bad = shot_spec(
        project_dir,
        """
        images: pair
        prompt: x
        static_mask: masks/small.png
        dynamic_masks:
          - mask: masks/boat.png
            trajectories: [{x: 10, y: 10}, {x: 640, y: 20}]
          - mask: masks/small.png
            trajectories: [{x: 10, y: 10}, {x: 20, y: 20}]
        """,
    )
    errors = errors_of(bad)
    assert [(e.line, e.shot) for e in errors] == [(12, "s02"), (15, "s02"), (16, "s02")]
    assert "static_mask is 320x180 px; a mask must be the same size as the first image (640x360)" in errors[0].message
    assert "trajectories[1] (640, 20) is outside the first image (640x360 px)" in errors[1].message
    assert "dynamic_masks[1].mask is 320x180 px; a mask must be the same size" in errors[2].message


def test_seven_mask_groups(project_dir: Path) -> None:
    write_board(project_dir / "masks" / "m.png")
    groups = "\n".join("  - {mask: masks/m.png, trajectories: [{x: 1, y: 1}, {x: 2, y: 2}]}" for _ in range(7))
    problem = only_error(shot_spec(project_dir, f"images: pair\nprompt: x\ndynamic_masks:\n{groups}"))
    assert (problem.line, problem.shot) == (13, "s02")
    assert "has 7 item(s); it allows at most 6" in problem.message


def test_schema_and_semantic_problems_are_reported_together(project_dir: Path) -> None:
    path = shot_spec(project_dir, "images: [boards/a.png, boards/nope.png]\nprompt: '{{ x }}'\ncfg_scale: 1.5")
    errors = errors_of(path)
    assert [e.line for e in errors] == [10, 11, 12]
    assert all(e.shot == "s02" for e in errors)


# ---- never a traceback --------------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 12), st.floats(-1, 2, allow_nan=False), st.text(max_size=8)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_field_names = st.sampled_from(
    [
        "id",
        "images",
        "prompt",
        "negative_prompt",
        "mode",
        "duration",
        "cfg_scale",
        "aspect_ratio",
        "static_mask",
        "dynamic_masks",
        "callback_url",
        "vars",
        "model",
        "bogus",
    ]
)
_shots = st.dictionaries(_field_names, _values | st.sampled_from(["pair", "s1", "{{ x }}", "boards/a.png"]), max_size=6)
_specs = st.fixed_dictionaries(
    {"version": st.just(1), "project": st.sampled_from(["p", "bad slug", 3])},
    optional={
        "shots": st.lists(_shots, max_size=4) | _values,
        "defaults": st.dictionaries(_field_names, _values, max_size=3) | _values,
        "vars": _values,
        "image_sets": st.dictionaries(st.sampled_from(["pair", "x y"]), _values, max_size=2) | _values,
        "limits": _values,
        "pricing": _values,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=_specs)
def test_any_document_gives_problems_never_an_exception(project_dir: Path, document: dict[str, object]) -> None:
    path = project_dir / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = check_project(path)
    assert (result.project is None) == bool(result.errors)
    for problem in result.problems:
        assert problem.line >= 1 and problem.column >= 1 and problem.message


_GARBAGE: list[object] = [None, 7, "x", [], {"a": 1}, [{"x": 1}], True, 1.5, "{{", "ftp://x"]


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def test_garbage_in_any_field_of_a_rich_spec_is_a_problem_never_an_exception(tmp_path: Path) -> None:
    # Every value of a spec that uses every feature (masks too), replaced in turn by garbage.
    for index, name in enumerate("abcd"):
        write_board(tmp_path / "boards" / f"{name}.png", colour=(index, 0, 0))
    write_board(tmp_path / "masks" / "m.png")
    base = yaml.safe_load(textwrap.dedent(FULL))
    base["shots"][1].update(
        {
            "static_mask": "masks/m.png",
            "dynamic_masks": [{"mask": "masks/m.png", "trajectories": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}],
        }
    )
    path = tmp_path / "mutant.yaml"
    path.write_text(yaml.safe_dump(base), encoding="utf-8")
    assert check_project(path).errors == []
    checked = 0
    for where in _paths(base)[1:]:
        for garbage in _GARBAGE[checked % 3 :: 3]:  # a third of the garbage per path keeps this fast
            document = yaml.safe_load(yaml.safe_dump(base))
            parent = document
            for step in where[:-1]:
                parent = parent[step]
            parent[where[-1]] = garbage
            path.write_text(yaml.safe_dump(document), encoding="utf-8")
            result = check_project(path)
            assert (result.project is None) == bool(result.errors), (where, garbage)
            checked += 1
    assert checked > 100
