"""YAML with line numbers: values, where each starts, duplicate keys, YAML 1.1 traps, unsafe tags."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator.spec import yamlsource
from orchestrator.spec.shot import Location
from orchestrator.spec.yamlsource import describe_path, lookup, parse_source, read_source


def parse(text: str) -> object:
    return parse_source(text.encode(), file="spec.yaml")


def test_values_and_their_locations() -> None:
    text = b"version: 1\nshots:\n  - id: a\n    prompt: 'hi'\n  - {id: b, n: [1, 2.5, true, null]}\n"
    source = parse_source(text, file="f")
    assert source.data == {
        "version": 1,
        "shots": [{"id": "a", "prompt": "hi"}, {"id": "b", "n": [1, 2.5, True, None]}],
    }
    assert source.problems == ()
    assert source.location(("version",)) == Location("f", 1, 10)
    assert source.location(("shots", 0, "prompt")) == Location("f", 4, 13)
    assert source.location(("shots", 1, "n", 2)) == Location("f", 5, 25)
    # Keys have their own locations (for "unknown key" messages).
    assert source.location(("shots", 0, "prompt"), key=True) == Location("f", 4, 5)
    # A path that does not exist falls back to its nearest ancestor.
    assert source.location(("shots", 1, "missing", 3)) == Location("f", 5, 5)
    assert source.location(("nothing",)) == Location("f", 1, 1)


def test_duplicate_keys_are_errors_at_the_second_key() -> None:
    source = parse_source(b"a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", file="f")
    messages = sorted((p.line, p.column, p.message) for p in source.problems)
    assert messages == [
        (4, 3, "duplicate key `c` (first at line 3); YAML would silently keep only the last"),
        (5, 1, "duplicate key `a` (first at line 1); YAML would silently keep only the last"),
    ]


@pytest.mark.parametrize("word", ["on", "yes", "No", "~"])
def test_yaml_11_boolean_and_null_keys_must_be_quoted(word: str) -> None:
    source = parse_source(f"vars:\n  {word}: 1\n".encode(), file="f")
    [problem] = source.problems
    assert (problem.line, problem.column) == (2, 3)
    assert f'quote it: "{word}"' in problem.message


def test_yaml_11_scalars_resolve_like_the_safe_loader() -> None:
    source = parse_source(b"a: 16:9\nb: '16:9'\nc: 010\nd: 0x10\ne: 1_000\nf: .5\ng: 2001-01-01\n", file="f")
    data = source.data
    assert data["a"] == 969 and data["b"] == "16:9"
    assert (data["c"], data["d"], data["e"], data["f"]) == (8, 16, 1000, 0.5)
    assert str(data["g"]) == "2001-01-01"


def test_anchors_aliases_and_merge_keys() -> None:
    text = b"base: &b {mode: std, duration: 5}\nshot:\n  <<: *b\n  mode: pro\nsame: *b\n"
    source = parse_source(text, file="f")
    assert source.problems == ()
    assert source.data["shot"] == {"mode": "pro", "duration": 5}
    assert source.data["same"] is source.data["base"]


def test_unknown_and_recursive_aliases_are_problems_not_crashes() -> None:
    unknown = parse_source(b"a: *nowhere\n", file="f")
    assert unknown.data == {"a": None}
    assert [p.message for p in unknown.problems] == ["unknown alias `*nowhere`"]
    recursive = parse_source(b"a: &a [1, *a]\n", file="f")
    assert recursive.data == {"a": [1, None]}
    assert "unknown alias" in recursive.problems[0].message


@pytest.mark.parametrize(
    "text",
    [
        b"a: !!python/object/apply:os.system [echo hi]\n",
        b"a: !!python/object:os.system {}\n",
        b"a: !!python/name:os.system ''\n",
        b"a: !custom x\n",
    ],
)
def test_unsafe_tags_are_refused(text: bytes) -> None:
    source = parse_source(text, file="f")
    assert source.problems
    assert source.problems[0].line == 1
    assert "bad YAML value" in source.problems[0].message


def test_syntax_errors_give_their_own_line() -> None:
    source = parse_source(b"a: 1\nb: [1, 2\nc: 3\n", file="f")
    assert source.data is None
    [problem] = [p for p in source.problems if p.severity == "error"]
    assert problem.line == 3 and problem.message.startswith("YAML syntax error:")
    tabs = parse_source(b"a:\n\tb: 1\n", file="f")
    assert tabs.problems[0].line == 2


def test_syntax_error_also_says_where_the_unclosed_construct_started() -> None:
    # An unclosed `{` on line 2 is only noticed on line 5: the error is there, and a note points back at line 2.
    text = b"version: 1\ndefaults: {mode: std,\n  duration: 5\n\nshots:\n  - id: a\n"
    error, note = parse_source(text, file="f").problems
    assert (error.line, error.severity) == (5, "error")
    assert "in the flow mapping that starts at line 2, column 11" in error.message
    assert note.format() == "f:2:11: note: the flow mapping with the YAML syntax error at line 5, column 6 starts here"
    assert note.severity == "note"
    # A problem without a separate context is one line, as before.
    [alone] = parse_source(b"a: 1\n b: 2\n", file="f").problems
    assert (alone.line, alone.column) == (2, 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !!float abc", "'abc' is not a valid !!float value"),
        ("a: !!int 0x1g", "'0x1g' is not a valid !!int value"),
        ("a: !!bool maybe", "'maybe' is not a valid !!bool value"),
        ("a: !!timestamp 2020-13-99x", "is not a valid !!timestamp value"),
        ("a: " + "1" * 5000, "is not a valid int"),  # over Python's int-from-string digit limit
    ],
)
def test_values_the_constructor_cannot_build_are_located_problems(text: str, expected: str) -> None:
    [problem] = parse_source(f"x: 1\n{text}\n".encode(), file="f").problems
    assert (problem.line, problem.column) == (2, 4)
    assert problem.message.startswith("bad YAML value:") and expected in problem.message


def test_empty_multi_document_and_non_utf8() -> None:
    assert "empty" in parse_source(b"", file="f").problems[0].message
    assert "empty" in parse_source(b"# nothing\n", file="f").problems[0].message
    multi = parse_source(b"a: 1\n---\nb: 2\n", file="f")
    assert multi.problems[0].line == 2 and "one YAML document" in multi.problems[0].message
    latin = parse_source(b"a: 1\nb: caf\xe9\n", file="f")
    assert latin.data is None
    assert (latin.problems[0].line, "not UTF-8" in latin.problems[0].message) == (2, True)
    bom = parse_source(b"\xef\xbb\xbfa: 1\n", file="f")
    assert bom.data == {"a": 1}


def test_non_scalar_keys() -> None:
    source = parse_source(b"? [1, 2]\n: x\nb: 1\n", file="f")
    assert source.data == {"b": 1}
    assert "plain word" in source.problems[0].message


def test_read_source_reports_unreadable_paths(tmp_path: Path) -> None:
    assert read_source(tmp_path).problems[0].message == "is a directory, not a spec file"
    assert read_source(tmp_path / "nope.yaml", display="nope.yaml").problems[0].format() == (
        "nope.yaml:1:1: no such file"
    )
    assert "NUL character" in read_source(tmp_path / "a\0b.yaml").problems[0].message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    # Nobody writes to this FIFO: opening it for a blocking read would hang for ever.
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    assert read_source(fifo).problems[0].message == "is a FIFO (named pipe), not a spec file"
    link = tmp_path / "link.yaml"
    link.symlink_to(fifo)
    assert read_source(link).problems[0].message == "is a FIFO (named pipe), not a spec file"


def test_a_device_is_refused(tmp_path: Path) -> None:
    if not Path(os.devnull).exists() or os.name != "posix":
        pytest.skip("no /dev/null")
    assert read_source(Path(os.devnull)).problems[0].message == "is a device or socket, not a spec file"


def test_describe_path_and_lookup() -> None:
    assert describe_path(("dynamic_masks", 0, "trajectories", 3, "x")) == "dynamic_masks[0].trajectories[3].x"
    assert describe_path(()) == ""
    data = {"shots": [{"id": "a"}]}
    assert lookup(data, ("shots", 0, "id")) == "a"
    assert lookup(data, ("shots", 1, "id")) is None
    assert lookup(data, ("shots", "x")) is None


def test_locations_far_down_and_far_right_are_exact() -> None:
    # Each start is kept as one int (line and column packed): a column past 65,535 and a line past 100,000 must
    # come back as they are, for values and for keys.
    padding = "x" * 70_000
    text = "\n" * 100_000 + f'top: {{long: "{padding}", far: 1}}\n'
    source = parse_source(text.encode(), file="big.yaml")
    assert source.location(("top",)) == Location("big.yaml", 100_001, 6)
    far = len(f'top: {{long: "{padding}", ') + 1
    assert source.location(("top", "far"), key=True) == Location("big.yaml", 100_001, far)
    assert source.location(("top", "far")) == Location("big.yaml", 100_001, far + 5)


NESTED = """\
version: 1
defaults: {mode: std, vars: {style: film}}
image_sets:
  pair: [a.png, b.png]
shots:
  - id: s1
    images: [a.png, {url: "https://example.com/b.png"}]
    dynamic_masks:
      - mask: m.png
        trajectories: [{x: 1, y: 2}, {x: 3, y: 4}]
  - &second
    id: s2
    images: pair
    vars: {hero: Mara}
  - {<<: *second, id: s3}
"""


def test_a_valid_document_places_each_shot_at_once_and_anything_deeper_when_asked() -> None:
    source = parse_source(NESTED.encode(), file="p.yaml")
    assert source.problems == () and source.placed == 2
    assert source.location(("shots", 1)) == Location("p.yaml", 11, 5)
    assert not source._every  # a shot's place needed no second parse
    assert source.location(("shots", 0, "dynamic_masks", 0, "trajectories", 1, "y")) == Location("p.yaml", 10, 48)
    assert source.location(("shots", 0, "images"), key=True) == Location("p.yaml", 7, 5)
    assert len(source._every) == 1  # parsed once more, for every deeper question


def test_every_place_is_the_same_as_if_all_were_placed_while_building() -> None:
    source = parse_source(NESTED.encode(), file="p.yaml")
    every = yamlsource._build(NESTED, "p.yaml", placed=None)
    assert every.values.keys() >= source.values.keys() and len(every.values) > len(source.values)
    for path in [*every.values, ("shots", 0, "nowhere"), ("nowhere",)]:
        assert source.location(path) == _placed(every.values, path)
    for path, mark in every.keys.items():
        assert source.location(path, key=True) == Location("p.yaml", (mark >> 32) + 1, (mark & 0xFFFFFFFF) + 1)


def _placed(values: dict[Any, int], path: tuple[Any, ...]) -> Location:
    while path not in values:
        path = path[:-1]
    mark = values[path]
    return Location("p.yaml", (mark >> 32) + 1, (mark & 0xFFFFFFFF) + 1)


def test_a_duplicate_key_deep_in_a_shot_names_the_line_of_the_first() -> None:
    text = NESTED.replace("    vars: {hero: Mara}\n", "    vars: {hero: Mara}\n    images: pair\n")
    source = parse_source(text.encode(), file="p.yaml")
    assert [(p.line, p.message) for p in source.problems] == [
        (15, "duplicate key `images` (first at line 13); YAML would silently keep only the last")
    ]
    assert source.placed is None  # a problem to place: built again, every position placed
