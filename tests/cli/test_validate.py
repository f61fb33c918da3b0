"""`orchestrator validate` and `orchestrator schema`: exit codes, one line per problem at FILE:LINE:COL, no traceback.

Each bad input from the issue gets its own test asserting the exit code, the line and the shot id.
"""

from __future__ import annotations

import io
import json
import struct
import textwrap
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from orchestrator.cli import cli
from tests.helpers import write_board

ROOT = Path(__file__).resolve().parents[2]


def board(path: Path, size: tuple[int, int] = (640, 360)) -> Path:
    red, green, blue = path.name.encode()[:3].ljust(3, b"x")  # distinct names, distinct bytes
    return write_board(path, size, (red, green, blue))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in "abcde":
        board(tmp_path / "boards" / f"{name}.png")
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


# Line numbers below: the second shot `s02` has its id on line 9 and its fields from line 10.
HEAD = """\
version: 1
project: demo
image_sets:
  pair: [boards/a.png, boards/b.png]
shots:
  - id: s01
    images: pair
    prompt: "The first shot"
  - id: s02
"""


def spec_with(project: Path, s02_fields: str, *, head: str = HEAD) -> Path:
    path = project / "project.yaml"
    path.write_text(head + textwrap.indent(textwrap.dedent(s02_fields).strip("\n"), "    ") + "\n", encoding="utf-8")
    return path


def assert_fails_at(result: Result, spec: Path, line: int, shot: str | None, *fragments: str) -> str:
    """Exit 1; a `FILE:LINE:COL: [shot <id>:] ...` line on stderr containing every fragment; no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert result.stdout == ""
    prefix = f"{spec}:{line}:"
    matches = [text for text in result.stderr.splitlines() if text.startswith(prefix)]
    assert matches, f"nothing at line {line}:\n{result.stderr}"
    wanted = f"shot {shot}:" if shot else ""
    hits = [text for text in matches if wanted in text and all(f in text for f in fragments)]
    assert hits, f"no line {line} for shot {shot} with {fragments}:\n{result.stderr}"
    return hits[0]


def test_valid_spec_prints_one_summary_line(project: Path) -> None:
    spec = spec_with(project, "images: [boards/c.png, boards/a.png, boards/d.png]\nprompt: go\nmode: pro\nduration: 10")
    result = invoke("validate", str(spec))
    assert result.exit_code == 0, result.stderr
    # 1 std 5 s (2 units) + 1 pro 10 s (7 units), kling-v1-6's card; images a, b, c, a, d: 4 distinct.
    assert result.stdout == f"{spec}: valid: 2 shots, 5 images (4 distinct), est. 9 units\n"
    assert result.stderr == ""


def test_several_specs_fail_if_one_fails(project: Path) -> None:
    good = spec_with(project, "images: pair\nprompt: go")
    bad = project / "bad.yaml"
    bad.write_text("version: 1\nproject: x\nshots: []\n")
    result = invoke("validate", str(good), str(bad))
    assert result.exit_code == 1
    assert f"{good}: valid:" in result.stdout
    assert f"{bad}:3:8: `shots` has 0 item(s); it needs at least 1" in result.stderr


# ---- the list of bad inputs ---------------------------------------------------------------------------


def test_malformed_yaml_gives_its_own_line(project: Path) -> None:
    spec = spec_with(project, 'images: [boards/a.png, boards/b.png\nprompt: "unclosed')
    assert_fails_at(invoke("validate", str(spec)), spec, 11, None, "YAML syntax error")


def test_unknown_key_suggests_the_right_one(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: go\nnegativ_prompt: blur")
    line = assert_fails_at(invoke("validate", str(spec)), spec, 12, "s02", "unknown key `negativ_prompt`")
    assert "did you mean `negative_prompt`?" in line


def test_wrong_types(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: [not, text]\ncfg_scale: high")
    result = invoke("validate", str(spec))
    assert_fails_at(result, spec, 11, "s02", "`prompt` must be a string, not a list")
    assert_fails_at(result, spec, 12, "s02", "`cfg_scale` must be a number, not a string ('high')")


def test_duplicate_ids(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: go\n").read_text().replace("id: s02", "id: s01")
    path = project / "dup.yaml"
    path.write_text(spec)
    assert_fails_at(invoke("validate", str(path)), path, 9, "s01", "duplicate shot id `s01` (first used at line 6)")


@pytest.mark.parametrize("count", [1, 5])
def test_wrong_number_of_images(project: Path, count: int) -> None:
    images = ", ".join(f"boards/{name}.png" for name in "abcde"[:count])
    spec = spec_with(project, f"images: [{images}]\nprompt: go")
    assert_fails_at(invoke("validate", str(spec)), spec, 10, "s02", f"has {count} item(s); it needs 2 to 4")


def test_a_set_of_one_image_is_wrong_where_it_is_defined(project: Path) -> None:
    head = HEAD.replace("boards/b.png]\n", "boards/b.png]\n  one: [boards/a.png]\n")
    spec = spec_with(project, "images: one\nprompt: go", head=head)
    assert_fails_at(invoke("validate", str(spec)), spec, 5, None, "`image_sets.one` has 1 item(s); it needs 2 to 4")


def test_missing_file(project: Path) -> None:
    spec = spec_with(project, "images: [boards/a.png, boards/nowhere.png]\nprompt: go")
    assert_fails_at(invoke("validate", str(spec)), spec, 10, "s02", "`boards/nowhere.png` does not exist")


def test_text_file_named_png(project: Path) -> None:
    (project / "boards" / "notes.png").write_text("just some notes\n")
    spec = spec_with(project, "images: [boards/a.png, boards/notes.png]\nprompt: go")
    assert_fails_at(invoke("validate", str(spec)), spec, 10, "s02", "`boards/notes.png` is not a JPEG or PNG image")


def test_image_too_small(project: Path) -> None:
    board(project / "boards" / "small.png", (299, 400))
    spec = spec_with(project, "images: [boards/small.png, boards/a.png]\nprompt: go")
    assert_fails_at(invoke("validate", str(spec)), spec, 10, "s02", "is 299x400 px", "at least 300x300")


def test_image_three_to_one(project: Path) -> None:
    board(project / "boards" / "wide.png", (1200, 400))
    spec = spec_with(project, "images: [boards/a.png, boards/wide.png]\nprompt: go")
    assert_fails_at(invoke("validate", str(spec)), spec, 10, "s02", "aspect ratio 3.00:1", "between 1:2.5 and 2.5:1")


def big_png(path: Path, total: int) -> Path:
    """A valid 400x400 PNG padded to ``total`` bytes with a private ancillary chunk (cheap: no pixels to encode)."""
    buffer = io.BytesIO()
    Image.new("RGB", (400, 400)).save(buffer, format="PNG")
    data = buffer.getvalue()
    iend = data.rindex(b"IEND") - 4
    padding = b"\0" * (total - len(data) - 12)
    chunk = struct.pack(">I", len(padding)) + b"prVt" + padding
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
    path.write_bytes(data[:iend] + chunk + data[iend:])
    return path


def test_image_over_ten_megabytes(project: Path) -> None:
    big = big_png(project / "boards" / "big.png", 11 * 1024 * 1024)
    with Image.open(big) as image:
        assert image.size == (400, 400)  # a real PNG, only heavy
    spec = spec_with(project, "images: [boards/a.png, boards/big.png]\nprompt: go")
    assert_fails_at(invoke("validate", str(spec)), spec, 10, "s02", "is 11.0 MB; the limit is 10.0 MB")


def test_prompt_rendering_to_501_characters(project: Path) -> None:
    spec = spec_with(project, 'images: pair\nprompt: "{{ word * 100 }}!"\nvars: {word: abcde}')
    assert_fails_at(invoke("validate", str(spec)), spec, 11, "s02", "prompt is 501 characters once rendered")


def test_undefined_variable(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: '{{ hero }} walks'")
    assert_fails_at(invoke("validate", str(spec)), spec, 11, "s02", "'hero' is undefined")


def test_sandbox_escape_template(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: \"{{ ''.__class__.__mro__ }}\"")
    assert_fails_at(invoke("validate", str(spec)), spec, 11, "s02", "not allowed (sandbox)", "__class__")


def test_cfg_scale_out_of_range(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: go\ncfg_scale: 1.5")
    assert_fails_at(invoke("validate", str(spec)), spec, 12, "s02", "`cfg_scale` is 1.5; it must be between 0 and 1")


def test_unknown_mode(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: go\nmode: ultra")
    assert_fails_at(invoke("validate", str(spec)), spec, 12, "s02", "`mode` must be one of std, pro, not 'ultra'")


def test_unknown_duration(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: go\nduration: 7")
    assert_fails_at(invoke("validate", str(spec)), spec, 12, "s02", "`duration` must be one of 5, 10, not 7")


def test_seven_mask_groups(project: Path) -> None:
    board(project / "masks" / "m.png")
    group = "  - {mask: masks/m.png, trajectories: [{x: 1, y: 1}, {x: 5, y: 5}]}"
    spec = spec_with(project, "images: pair\nprompt: go\ndynamic_masks:\n" + "\n".join([group] * 7))
    result = invoke("validate", str(spec))
    assert_fails_at(result, spec, 13, "s02", "`dynamic_masks` has 7 item(s); it allows at most 6")


def test_unknown_spec_version(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: go", head=HEAD.replace("version: 1", "version: 2"))
    line = assert_fails_at(invoke("validate", str(spec)), spec, 1, None, "unknown spec version 2")
    assert "knows spec version(s) 1" in line
    # Nothing else is judged against a schema the spec does not claim.
    assert invoke("validate", str(spec)).stderr.count(f"{spec}:1:") == 1
    assert f"{spec}: invalid: 1 problem\n" in invoke("validate", str(spec)).stderr


# ---- unreadable input never shows a traceback -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"# only a comment\n", "the file is empty"),
        (b"- a\n- b\n", "a spec is a mapping of keys"),
        (b"just text\n", "a spec is a mapping of keys"),
        (b"version: 1\n\xff\xfe\n", "not UTF-8"),
        (b"version: 1\nversion: 1\n", "duplicate key `version`"),
        (b"a: !!python/object/apply:os.system [echo hi]\n", "bad YAML value"),
    ],
)
def test_unusable_files(tmp_path: Path, content: bytes, expected: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content)
    result = invoke("validate", str(spec))
    assert result.exit_code == 1
    assert expected in result.stderr
    assert result.stderr.startswith(f"{spec}:")
    assert "Traceback" not in result.stderr


def test_directory_and_missing_file(tmp_path: Path) -> None:
    result = invoke("validate", str(tmp_path), str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert f"{tmp_path}:1:1: is a directory" in result.stderr
    assert f"{tmp_path / 'nope.yaml'}:1:1: no such file" in result.stderr


# ---- warnings, --strict and --json ----------------------------------------------------------------------------


def test_warnings_go_to_stderr_and_fail_only_with_strict(project: Path) -> None:
    spec = spec_with(project, "images: pair\nprompt: go\nmodel: kling-v9")
    result = invoke("validate", str(spec))
    assert result.exit_code == 0
    assert f"{spec}:12:12: warning: shot s02: model `kling-v9`" in result.stderr
    assert result.stdout.startswith(f"{spec}: valid:")
    strict = invoke("validate", "--strict", str(spec))
    assert strict.exit_code == 1
    assert strict.stdout == ""
    assert f"{spec}:12:12: warning: shot s02:" in strict.stderr


def test_json_output(project: Path) -> None:
    good = spec_with(project, "images: pair\nprompt: go")
    bad = project / "bad.yaml"
    bad.write_text(good.read_text().replace("prompt: go", "prompt: go\n    mode: ultra"))
    result = invoke("validate", "--json", str(good), str(bad))
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    first, second = document["specs"]
    assert first["valid"] is True
    assert first["summary"] == {"shots": 2, "images": 4, "distinct_images": 2, "units": 4.0}
    assert second["valid"] is False and second["summary"] is None
    [problem] = second["problems"]
    assert problem == {
        "file": str(bad),
        "line": 12,
        "column": 11,
        "shot": "s02",
        "severity": "error",
        "message": "`mode` must be one of std, pro, not 'ultra'",
    }


def test_schema_command_prints_the_schema() -> None:
    result = invoke("schema")
    assert result.exit_code == 0
    printed = json.loads(result.stdout)
    assert printed == json.loads((ROOT / "schemas" / "project.schema.json").read_text())
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("spec", sorted((ROOT / "specs").rglob("*.yaml")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_spec_in_the_repository_validates(spec: Path) -> None:
    result = invoke("validate", str(spec))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"{spec}: valid: ")


# ---- fuzzed inputs: each one located line, and the other specs on the command line still checked --------------


FUZZED = {
    "deep-jinja": ('images: pair\nprompt: "{{ ' + "(" * 2000 + "1" + ")" * 2000 + ' }}"', 11, "nests too deeply"),
    "nested-ifs": ('images: pair\nprompt: "' + "{% if true %}" * 300 + "x" + "{% endif %}" * 300 + '"', 11, "deeply"),
    "huge-template": ('images: pair\nprompt: "' + "{{ style }}" * 100_000 + '"', 11, "the limit is 10,000"),
    "nul-image": ('images: [boards/a.png, "boards/b.png\\0"]\nprompt: go', 10, "contains a NUL character"),
    "nul-mask": ('images: pair\nprompt: go\nstatic_mask: "masks/m.png\\0"', 12, "contains a NUL character"),
    "bad-float": ("images: pair\nprompt: go\ncfg_scale: !!float abc", 12, "'abc' is not a valid !!float value"),
    "bad-int": ("images: pair\nprompt: go\nduration: !!int 0x1g", 12, "'0x1g' is not a valid !!int value"),
    "bad-bool": ("images: pair\nprompt: go\nvars: {x: !!bool maybe}", 12, "'maybe' is not a valid !!bool value"),
    "ipv6-url": ("images: [boards/a.png, 'http://[::1']\nprompt: go", 10, "is not a valid URL"),
}


def test_fuzzed_specs_are_each_one_located_line_and_all_are_checked(project: Path) -> None:
    specs = []
    for name, (fields, _, _) in FUZZED.items():
        path = spec_with(project, fields)
        specs.append(path.rename(project / f"{name}.yaml"))
    good = spec_with(project, "images: pair\nprompt: go")
    result = invoke("validate", *map(str, specs), str(good))
    assert result.exit_code == 1
    assert "unexpected" not in result.stderr and "Traceback" not in result.output
    for spec, (_, line, fragment) in zip(specs, FUZZED.values(), strict=True):
        located = [text for text in result.stderr.splitlines() if text.startswith(f"{spec}:{line}:")]
        assert any(fragment in text for text in located), f"{spec.name}: {fragment!r} at line {line}:\n{result.stderr}"
        assert f"{spec}: invalid: 1 problem\n" in result.stderr  # one line, not one per stage that noticed
    assert f"{good}: valid: 2 shots" in result.stdout


def test_an_unforeseen_failure_in_one_spec_leaves_the_others_checked(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orchestrator.cli.validate as command

    good = spec_with(project, "images: pair\nprompt: go")
    real = command.check_project

    def flaky(path: Path) -> object:
        if path.name == "boom.yaml":
            raise RuntimeError("boom")
        return real(path)

    monkeypatch.setattr(command, "check_project", flaky)
    result = invoke("validate", str(project / "boom.yaml"), str(good))
    assert result.exit_code == 1
    assert f"{project / 'boom.yaml'}:1:1: could not be checked: unexpected RuntimeError: boom" in result.stderr
    assert f"{good}: valid:" in result.stdout


def test_the_summary_line_escapes_the_file_name(project: Path) -> None:
    # A newline, an ESC sequence and a bidi override in a file name must not reach the terminal raw.
    good = spec_with(project, "images: pair\nprompt: go")
    named = good.rename(project / "a\x1b[31m\u202eb\nc.yaml")
    result = invoke("validate", str(named))
    assert result.exit_code == 0
    [line] = result.stdout.splitlines()
    assert line.startswith(f"{project}/a\\x1b[31m\\u202eb\\nc.yaml: valid: ")
    bad = named.rename(project / "x\x1b]0;title\x07.yaml")
    bad.write_text("version: 1\n", encoding="utf-8")
    failed = invoke("validate", str(bad))
    assert "\x1b" not in failed.stderr and "\x07" not in failed.stderr
    assert f"{project}/x\\x1b]0;title\\x07.yaml: invalid: " in failed.stderr


def test_one_shot_one_unit_is_singular(project: Path) -> None:
    path = project / "one.yaml"
    path.write_text(HEAD.split("  - id: s02")[0] + "pricing: {kling-v1-6: {std_5s: 1}}\n", encoding="utf-8")
    result = invoke("validate", str(path))
    assert result.stdout == f"{path}: valid: 1 shot, 2 images (2 distinct), est. 1 unit\n"


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.timeout(10)
def test_a_fifo_nobody_writes_is_refused_not_waited_on(project: Path) -> None:
    import os

    fifo = project / "pipe.yaml"
    os.mkfifo(fifo)
    good = spec_with(project, "images: pair\nprompt: go")
    result = invoke("validate", str(fifo), str(good))
    assert result.exit_code == 1
    assert f"{fifo}:1:1: is a FIFO (named pipe), not a spec file" in result.stderr
    assert f"{good}: valid:" in result.stdout
