"""The project JSON Schema and how its errors read: located, with the shot id, with suggestions."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from orchestrator.errors import Problem
from orchestrator.plan.pricing import CARD_KEYS, LEGACY_KEYS
from orchestrator.spec import schema
from orchestrator.spec.shot import ASPECT_RATIOS, DURATIONS, MODES, Limits
from orchestrator.spec.yamlsource import parse_source

ROOT = Path(__file__).resolve().parents[2]


def problems(text: str) -> list[Problem]:
    source = parse_source(text.encode(), file="s.yaml")
    assert source.problems == ()
    found = schema.check_version(source) or [problem for _, problem in schema.validate(source)]
    return sorted(found, key=lambda p: (p.line, p.column))


def object_schemas(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield where, node
        for key, value in node.items():
            yield from object_schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from object_schemas(value, f"{where}/{index}")


def test_schema_is_valid_2020_12_with_an_id() -> None:
    loaded = schema.load_schema()
    jsonschema.Draft202012Validator.check_schema(loaded)
    assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert loaded["$id"].endswith("project.schema.json")
    assert schema.schema_path() == ROOT / "schemas" / "project.schema.json"
    assert json.loads(schema.schema_text()) == loaded


def test_the_wheel_ships_the_schema_where_the_package_looks() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert included["schemas/project.schema.json"] == "orchestrator/_data/project.schema.json"


def test_every_object_is_closed_and_every_field_described() -> None:
    loaded = schema.load_schema()
    for where, node in object_schemas(loaded):
        if "properties" in node:
            assert node.get("additionalProperties") is False, where
        for name, field in node.get("properties", {}).items():
            assert field.get("description"), f"{where}/properties/{name}"


def test_schema_enums_and_tables_match_the_code() -> None:
    shot = schema.load_schema()["$defs"]["shot"]["properties"]
    assert tuple(shot["mode"]["enum"]) == MODES
    assert tuple(shot["duration"]["enum"]) == DURATIONS
    assert tuple(shot["aspect_ratio"]["enum"]) == ASPECT_RATIOS
    top = schema.load_schema()["properties"]
    assert tuple(top["pricing"]["properties"]) == LEGACY_KEYS
    assert tuple(schema.load_schema()["$defs"]["rateCard"]["properties"]) == CARD_KEYS
    assert set(top["limits"]["properties"]) == {f.name for f in dataclasses.fields(Limits)}
    # Anything a shot can have can be in defaults, except its id and its variants (named for that shot alone).
    assert set(top["defaults"]["properties"]) == set(shot) - {"id", "variants", "matrix"}
    # A variant overrides exactly the render fields the issue lists, each as the shot's own field is written.
    variant = schema.load_schema()["$defs"]["variant"]["properties"]
    assert set(variant) == {
        "prompt",
        "negative_prompt",
        "mode",
        "duration",
        "cfg_scale",
        "aspect_ratio",
        "images",
        "vars",
    }
    assert all(variant[name] == shot[name] for name in variant)


SHOTS = "version: 1\nproject: p\nshots:\n  - id: s1\n    images: [a.png, b.png]\n    prompt: x\n"


def test_a_minimal_valid_spec_has_no_schema_problems() -> None:
    assert problems(SHOTS) == []


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("version: 2\nproject: p\nshots: []\n", 1, "unknown spec version 2; this orchestrator knows spec version(s) 1"),
        ("version: '1'\n", 1, "`version` is the string '1'; write 1 without quotes"),
        ("version: '7'\n", 1, "unknown spec version '7'"),
        ("version: true\n", 1, "unknown spec version True"),
        ("project: p\n", 1, "missing `version`; this orchestrator knows spec version(s) 1"),
        ("[1, 2]\n", 1, "a spec is a mapping of keys (version, project, shots, ...), not a list"),
    ],
)
def test_version_is_checked_first(text: str, line: int, expected: str) -> None:
    [problem] = problems(text)
    assert problem.line == line and problem.message.startswith(expected)


def test_unknown_keys_each_reported_with_suggestions() -> None:
    text = SHOTS + "    negativ_prompt: x\n    durration: 5\n    zzz: 1\nprjoect: q\n"
    found = problems(text)
    allowed = ", ".join(sorted(schema.load_schema()["$defs"]["shot"]["properties"]))
    assert [(p.line, p.column, p.shot, p.message) for p in found] == [
        (7, 5, "s1", "unknown key `negativ_prompt`; did you mean `negative_prompt`?"),
        (8, 5, "s1", "unknown key `durration`; did you mean `duration`?"),
        (9, 5, "s1", f"unknown key `zzz`; allowed: {allowed}"),
        (10, 1, None, "unknown key `prjoect`; did you mean `project`?"),
    ]


def test_unknown_key_in_a_nested_mapping() -> None:
    [problem] = problems(SHOTS + "limits: {concurency: 2}\n")
    assert problem.message == "unknown key `concurency` in `limits`; did you mean `concurrency`?"
    assert (problem.line, problem.column) == (7, 10)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("mode: ultra", "`mode` must be one of std, pro, not 'ultra'"),
        ("duration: 7", "`duration` must be one of 5, 10, not 7"),
        ("duration: '10'", "`duration` must be one of 5, 10, not '10' (write the number 10 without quotes)"),
        ("aspect_ratio: 16:9", '`aspect_ratio`: quote it, "16:9": unquoted, YAML 1.1 (which this tool reads) takes'),
        ("aspect_ratio: 9:16", "takes 9:16 for the base-60 number 556"),
        ("cfg_scale: 1.5", "`cfg_scale` is 1.5; it must be between 0 and 1"),
        ("cfg_scale: -0.1", "`cfg_scale` is -0.1; it must be between 0 and 1"),
        ("cfg_scale: true", "`cfg_scale` must be a number, not a boolean (true)"),
        ("negative_prompt: 5", "`negative_prompt` must be a string, not a number (5)"),
        ("callback_url: ftp://x", "`callback_url`: URL 'ftp://x' has `ftp:`; only http:// and https:// URLs are"),
        ("callback_url: 'http:///path'", "`callback_url`: URL 'http:///path' has no host"),
        ("vars: [1]", "`vars` must be a mapping, not a list"),
        ("dynamic_masks: [{mask: m.png, trajectories: [{x: 1, y: 2}]}]", "has 1 item(s); it needs 2 to 77"),
        ("dynamic_masks: [{mask: m.png, trajectories: [{x: 1}, {x: 2, y: 2}]}]", "is missing the required key `y`"),
        ("static_mask: {url: 5}", "`static_mask.url` must be a string, not a number (5)"),
    ],
)
def test_field_errors_are_located_and_readable(extra: str, expected: str) -> None:
    [problem] = problems(SHOTS + "    " + extra + "\n")
    assert (problem.line, problem.shot) == (7, "s1")
    assert expected in problem.message


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ("[a.png]", "`images` has 1 item(s); it needs 2 to 4"),
        ("[a, b, c, d, e]", "`images` has 5 item(s); it needs 2 to 4"),
        ("5", "`images` is not valid: The boards: the name of an `image_sets` entry, or a list of 2 to 4 images."),
        ("[a.png, {foo: x}]", "`images[1]` is not valid: An image: a path relative to the spec file"),
        ("[a.png, {path: a, url: b}]", "`images[1]` is not valid"),
        ("[a.png, {base64: 5}]", "`images[1].base64` must be a string"),
        ("[a.png, {url: 'ftp://x/a.png'}]", "`images[1].url`: URL 'ftp://x/a.png' has `ftp:`; only http://"),
        ("[a.png, 'ftp://x/a.png']", "`images[1]`: URL 'ftp://x/a.png' has `ftp:`"),
        ("[a.png, 'https://x/a b.png']", "contains spaces or control characters"),
        ('[a.png, "a\\0.png"]', "`images[1]` contains a NUL character"),
        ('[a.png, {path: "a\\0.png"}]', "`images[1].path` contains a NUL character"),
    ],
)
def test_image_errors(images: str, expected: str) -> None:
    found = problems(SHOTS.replace("[a.png, b.png]", images))
    assert [p.line for p in found] == [5]
    assert expected in found[0].message


def test_shot_without_an_id_or_not_a_mapping_is_named_by_position() -> None:
    text = "version: 1\nproject: p\nshots:\n  - {prompt: x}\n  - just text\n"
    found = problems(text)
    assert [(p.line, p.shot) for p in found] == [(4, "#1"), (5, "#2")]
    assert "missing the required key `id`" in found[0].message
    assert "must be a mapping, not a string ('just text')" in found[1].message


def test_bad_names_point_at_the_name() -> None:
    found = problems(SHOTS + "vars:\n  bad-name: 1\nimage_sets:\n  'no spaces': [a, b]\n")
    assert [(p.line, p.column) for p in found] == [(8, 3), (10, 3)]
    assert "the name 'bad-name' is not valid" in found[0].message


def test_top_level_problems() -> None:
    found = problems("version: 1\nproject: 'has space'\nprovider: aws\nlimits: {concurrency: 0}\nshots: []\n")
    messages = [p.message for p in found]
    assert messages[0].startswith("`project` 'has space' is not valid: Project slug")
    assert messages[1] == "`provider` must be one of local, cometapi, kling, not 'aws'"
    assert messages[2] == "`limits.concurrency` is 0; it must be between 1 and 100"
    assert messages[3] == "`shots` has 0 item(s); it needs at least 1"
    assert problems("version: 1\nshots: [{id: a}]\n")[0].message == "missing required key `project`"


VARIANTS = [
    {"id": "a", "images": "pair", "prompt": "x"},
    {"id": "b", "images": ["a.png"], "mode": "ultra", "duration": "5"},
    {"id": "c d", "extra": 1, "cfg_scale": 2, "vars": {"ok": 1}},
    {"images": [{"url": 5}, {"foo": 1}, 3]},
    "not a mapping",
    {"id": "e", "dynamic_masks": [{"mask": "m", "trajectories": [{"x": -1, "y": 0}]}] * 7},
    {"id": "f", "static_mask": {"path": "a", "url": "b"}, "callback_url": 5, "aspect_ratio": 969},
]


def test_field_by_field_validation_matches_whole_document_validation() -> None:
    # The fast path (shots checked field by field, memoised) must say exactly what plain jsonschema says.
    data = {"version": 1, "project": "p", "shots": VARIANTS * 3}
    source = parse_source(json.dumps(data).encode(), file="s.json")
    fast = {problem for _, problem in schema.validate(source)}
    slow: dict[Problem, Any] = {}
    for path, error in schema._located(schema._validators().full.iter_errors(data), ()):
        schema._add(slow, source, path, error)
    assert fast == set(slow)
    assert len(fast) > 20


# --- the schema says what the tool says ------------------------------------------------------------------------
# Each spec below is refused by `orchestrator validate` for a reason a JSON Schema can express; editors and CI
# checkers that only have the schema (check-jsonschema, yaml-language-server) must refuse it too. A row is a
# change to the valid spec: (what to replace, its replacement).

VALID = """\
version: 1
project: p
shots:
  - id: s1
    images: [boards/a.png, boards/b.png]
    prompt: a boat
"""

SCHEMA_LEVEL_BREAKAGES = [
    ("version: 1", "version: '1'"),
    ("version: 1", "version: 2"),
    ("project: p", "project: 'has space'"),
    ("project: p", "project: p\nprovider: aws"),
    ("project: p", "project: p\nlimits: {concurrency: 0}"),
    ("project: p", "project: p\nlimits: {requests_per_second: 0}"),
    ("project: p", "project: p\nprjoect: q"),
    ("id: s1", "id: 's 1'"),
    ("id: s1", "id: CON"),
    ("id: s1", "id: nul.mp4"),
    ("id: s1", "id: s1."),
    ("id: s1", "id: 'a\\n'"),
    ("prompt: a boat", "prompt: 5"),
    ("prompt: a boat", "prompt: a boat\n    negativ_prompt: x"),
    ("prompt: a boat", "prompt: a boat\n    mode: ultra"),
    ("prompt: a boat", "prompt: a boat\n    duration: '5'"),
    ("prompt: a boat", "prompt: a boat\n    aspect_ratio: 9:16"),  # 556 in YAML 1.1
    ("prompt: a boat", "prompt: a boat\n    cfg_scale: 1.5"),
    ("prompt: a boat", "prompt: a boat\n    callback_url: ftp://x/cb"),
    ("prompt: a boat", "prompt: a boat\n    callback_url: 'http:///cb'"),
    ("prompt: a boat", "prompt: a boat\n    callback_url: 'http://x y/cb'"),
    ("prompt: a boat", "prompt: a boat\n    vars: {bad-name: 1}"),
    ("prompt: a boat", "prompt: a boat\n    static_mask: {path: boards/a.png, url: 'https://x/m.png'}"),
    ("prompt: a boat", "prompt: a boat\n    dynamic_masks: [{mask: boards/a.png, trajectories: [{x: 1, y: 2}]}]"),
    ("prompt: a boat", "prompt: x\n    dynamic_masks: [{mask: m.png, trajectories: [{x: -1, y: 0}, {x: 2, y: 2}]}]"),
    ("[boards/a.png, boards/b.png]", "[boards/a.png]"),
    ("[boards/a.png, boards/b.png]", "[boards/a.png, boards/b.png, a, b, c]"),
    ("[boards/a.png, boards/b.png]", "[boards/a.png, {url: 'ftp://x/b.png'}]"),
    ("[boards/a.png, boards/b.png]", "[boards/a.png, 'ftp://x/b.png']"),
    ("[boards/a.png, boards/b.png]", "[boards/a.png, {url: 'https://x/a b.png'}]"),
    ("[boards/a.png, boards/b.png]", '[boards/a.png, "boards/b.png\\0"]'),
    ("[boards/a.png, boards/b.png]", "[boards/a.png, {foo: x}]"),
    ("[boards/a.png, boards/b.png]", "'no spaces'"),
    ("shots:\n", "shots: []\nx:\n"),
]


@pytest.mark.parametrize(("old", "new"), SCHEMA_LEVEL_BREAKAGES)
def test_what_the_validator_refuses_for_a_schema_reason_the_schema_refuses_too(
    tmp_path: Path, old: str, new: str
) -> None:
    from orchestrator.spec.load import check_project
    from tests.helpers import write_board

    write_board(tmp_path / "boards" / "a.png", colour=(1, 1, 1))
    write_board(tmp_path / "boards" / "b.png", colour=(2, 2, 2))
    spec = tmp_path / "p.yaml"
    spec.write_text(VALID, encoding="utf-8")
    assert check_project(spec).errors == []  # the starting point is valid for both
    assert not list(jsonschema.Draft202012Validator(schema.load_schema()).iter_errors(yaml.safe_load(VALID)))

    assert old in VALID
    spec.write_text(VALID.replace(old, new, 1), encoding="utf-8")
    assert check_project(spec).errors, "the validator accepts it"
    data = yaml.safe_load(spec.read_text(encoding="utf-8"))  # YAML 1.1, as the tool reads it
    assert list(jsonschema.Draft202012Validator(schema.load_schema()).iter_errors(data)), "the schema accepts it"


@pytest.mark.parametrize(("rps", "ok"), [("1000", True), ("0.5", True), ("1001", False), ("0", False)])
def test_requests_per_second_reaches_1000(rps: str, ok: bool) -> None:
    # CometAPI publishes no per-key request limit: a big production may ask for up to 1,000 (the CLI's --rps bound).
    found = problems(SHOTS.replace("project: p", f"project: p\nlimits: {{requests_per_second: {rps}}}"))
    assert (found == []) is ok, found


def test_ids_are_checked_by_their_pattern_alone_and_bad_ones_still_worded_by_jsonschema() -> None:
    # Every shot has an id and no two share one: memoising by value never helps, so a match skips jsonschema.
    assert {"id", "callback_url"} <= set(schema._validators().quick)
    assert problems(SHOTS) == []
    [bad] = problems(SHOTS.replace("id: s1", "id: 's 1'"))
    assert (bad.line, bad.shot) == (4, "s 1") and "id" in bad.message
