"""``takes:``, ``variants:`` and ``matrix:``: expansion into one request per variant, their fingerprints, and the
located problems (file:line and the variant's name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import Problem
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.load import check_project, load_project, summarize
from orchestrator.spec.shot import ResolvedShot
from tests.helpers import write_board

HEAD = "version: 1\nproject: tk\n"
SHOT = "  - id: s01\n    images: [a.png, b.png]\n    prompt: 'dawn over the {{ place }}'\n    vars: {place: harbour}\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_board(tmp_path / "a.png", colour=(10, 20, 30))
    write_board(tmp_path / "b.png", colour=(30, 20, 10))
    write_board(tmp_path / "c.png", colour=(90, 20, 10))
    return tmp_path


def spec(folder: Path, shots: str, *, head: str = HEAD) -> Path:
    path = folder / "project.yaml"
    path.write_text(head + "shots:\n" + shots)
    return path


def errors(path: Path) -> list[Problem]:
    return [p for p in check_project(path).problems if p.severity == "error"]


def by_key(shots: tuple[ResolvedShot, ...]) -> dict[str, ResolvedShot]:
    return {shot.key: shot for shot in shots}


def test_a_shot_without_variants_is_one_request_of_one_take(folder: Path) -> None:
    [shot] = load_project(spec(folder, SHOT)).shots
    assert (shot.key, shot.variant, shot.takes, shot.label) == ("s01", None, 1, "s01")


def test_takes_come_from_the_shot_or_defaults(folder: Path) -> None:
    text = SHOT + "    takes: 3\n" + SHOT.replace("s01", "s02")
    project = load_project(spec(folder, text, head=HEAD + "defaults: {takes: 2}\n"))
    assert [(shot.id, shot.takes) for shot in project.shots] == [("s01", 3), ("s02", 2)]


def test_variants_override_fields_and_their_vars_the_shots(folder: Path) -> None:
    text = SHOT + (
        "    variants:\n"
        "      wide: {vars: {place: bay}, images: [a.png, c.png]}\n"
        "      pro: {mode: pro, duration: 10, cfg_scale: 0.8, negative_prompt: 'blur in {{ shot.variant }}'}\n"
        "      night: {prompt: 'night over the {{ place }}', aspect_ratio: '1:1'}\n"
    )
    project = load_project(spec(folder, text))
    shots = by_key(project.shots)
    assert list(shots) == ["s01/wide", "s01/pro", "s01/night"]  # the variants, not the plain shot
    wide, pro, night = shots["s01/wide"], shots["s01/pro"], shots["s01/night"]
    assert wide.prompt == "dawn over the bay" and [i.ref for i in wide.images] == ["a.png", "c.png"]
    assert (pro.mode, pro.duration, pro.cfg_scale, pro.negative_prompt) == ("pro", 10, 0.8, "blur in pro")
    assert pro.prompt == "dawn over the harbour" and [i.ref for i in pro.images] == ["a.png", "b.png"]
    assert (night.prompt, night.aspect_ratio) == ("night over the harbour", "1:1")
    assert wide.label == "s01 wide" and project.shot_ids == ("s01",) and len(project.requests_of("s01")) == 3


def test_the_matrix_expands_to_named_variants_in_the_order_written(folder: Path) -> None:
    text = SHOT + "    matrix: {mode: [std, pro], duration: [5, 10]}\n"
    shots = load_project(spec(folder, text)).shots
    assert [(s.variant, s.mode, s.duration) for s in shots] == [
        ("std-5", "std", 5),
        ("std-10", "std", 10),
        ("pro-5", "pro", 5),
        ("pro-10", "pro", 10),
    ]
    ratio = load_project(spec(folder, SHOT + "    matrix: {aspect_ratio: ['9:16', '1:1']}\n")).shots
    assert [(s.variant, s.aspect_ratio) for s in ratio] == [("9x16", "9:16"), ("1x1", "1:1")]


def test_variants_and_matrix_together(folder: Path) -> None:
    text = SHOT + "    variants: {wide: {vars: {place: bay}}}\n    matrix: {mode: [std, pro]}\n"
    assert [s.variant for s in load_project(spec(folder, text)).shots] == ["wide", "std", "pro"]


def test_each_variant_has_its_own_fingerprint_of_its_request_only(folder: Path) -> None:
    text = SHOT + "    takes: 2\n    variants: {a: {mode: pro}, b: {mode: pro}, c: {}}\n"
    shots = by_key(load_project(spec(folder, text)).shots)
    [plain] = load_project(spec(folder, SHOT)).shots
    [pro_plain] = load_project(spec(folder, SHOT + "    mode: pro\n")).shots
    # The request alone: a variant that asks what the plain shot asks has the plain shot's fingerprint.
    assert shots["s01/c"].fingerprint == plain.fingerprint
    assert shots["s01/a"].fingerprint == shots["s01/b"].fingerprint == pro_plain.fingerprint != plain.fingerprint


def test_every_take_of_every_variant_is_its_own_external_id(folder: Path) -> None:
    text = SHOT + "    variants: {wide: {vars: {place: bay}}}\n"
    [plain] = load_project(spec(folder, SHOT)).shots
    [wide] = load_project(spec(folder, text)).shots
    # Take 1 of a shot without variants keeps the id it always had: folders rendered before resume.
    assert external_task_id(plain, salt="k3x9q2") == f"tk-s01-{plain.fingerprint[:12]}-k3x9q2"
    assert external_task_id(plain, salt="k3x9q2", take=2) == f"tk-s01-{plain.fingerprint[:12]}-k3x9q2-t2"
    ids = {
        external_task_id(wide, salt="k3x9q2", take=take, variant="wide", attempt=attempt)
        for take in (1, 2, 3)
        for attempt in (1, 2)
    }
    assert len(ids) == 6
    assert external_task_id(wide, salt="k3x9q2", take=2, variant="wide", attempt=2).endswith("-k3x9q2-wide-t2-r2")
    long = ResolvedShot(**{**vars(wide), "project": "p" * 40, "id": "s" * 64})
    longest = external_task_id(long, salt="k3x9q2", take=9, variant="v" * 20, attempt=99)
    assert len(longest) <= 64 and longest.endswith("-vvvvvvvvvvvvvvvvvvvv-t9-r99")


def test_the_summary_costs_every_take_of_every_variant(folder: Path) -> None:
    text = SHOT + "    takes: 3\n    matrix: {mode: [std, pro]}\n"
    summary = summarize(load_project(spec(folder, text)))
    # kling-v1-6: std 5 s is 2 units, pro 5 s is 3.5; three takes of each.
    assert (summary.shots, summary.units) == (1, 3 * (2 + 3.5))


@pytest.mark.parametrize(
    ("lines", "line", "shot", "expected"),
    [
        ("    takes: 0\n", 8, "s01", "`takes` is 0; it must be between 1 and 9"),
        ("    takes: 10\n", 8, "s01", "`takes` is 10; it must be between 1 and 9"),
        ("    variants:\n      bad name: {}\n", 9, "s01", "the name 'bad name' is not valid; use letters, digits"),
        ("    variants:\n      -wide: {}\n", 9, "s01", "the name '-wide' is not valid"),
        ("    variants:\n      wide: {takes: 2}\n", 9, "s01", "unknown key `takes`"),
        (
            "    variants:\n      wide: {duration: 7}\n",
            9,
            "s01 variant wide",
            "`variants.wide.duration` must be one of 5, 10",
        ),
        ("    matrix: {mode: [std, turbo]}\n", 8, "s01", "`matrix.mode[1]` must be one of std, pro"),
        ("    matrix: {cfg_scale: [0.5]}\n", 8, "s01", "unknown key `cfg_scale` in `matrix`"),
    ],
)
def test_schema_problems_are_located(folder: Path, lines: str, line: int, shot: str, expected: str) -> None:
    [problem] = errors(spec(folder, SHOT + lines))
    assert problem.line == line and problem.shot == shot and expected in problem.message, problem


def test_a_matrix_name_clashing_with_a_variant_is_an_error_at_the_variant(folder: Path) -> None:
    text = SHOT + "    variants:\n      pro-10: {prompt: x}\n    matrix: {mode: [std, pro], duration: [5, 10]}\n"
    [problem] = errors(spec(folder, text))
    assert (problem.line, problem.shot) == (9, "s01 variant pro-10")
    assert "variant `pro-10` is also a name the matrix gives (line 10)" in problem.message


def test_variant_names_differing_only_in_case_are_an_error(folder: Path) -> None:
    [problem] = errors(spec(folder, SHOT + "    variants:\n      Wide: {}\n      wide: {}\n"))
    assert problem.line == 10 and "differs from `Wide` only in case" in problem.message


def test_a_variants_own_problems_name_it_and_its_line(folder: Path) -> None:
    text = SHOT + (
        "    variants:\n"
        "      wide:\n"
        "        prompt: '{{ lens }}'\n"
        "      tall:\n"
        "        images: [a.png]\n"
        "      long:\n"
        "        prompt: '" + "x" * 501 + "'\n"
    )
    found = sorted((p.line, p.shot, p.message) for p in errors(spec(folder, text)))
    assert [(line, shot) for line, shot, _ in found] == [
        (10, "s01 variant wide"),
        (12, "s01 variant tall"),
        (14, "s01 variant long"),
    ]
    assert "'lens' is undefined" in found[0][2]
    assert "`variants.tall.images` has 1 item(s); it needs 2 to 4" in found[1][2]
    assert "prompt is 501 characters once rendered; the limit is 500" in found[2][2]


def test_a_problem_every_variant_inherits_is_said_once(folder: Path) -> None:
    text = SHOT.replace("{{ place }}", "{{ missing }}") + "    matrix: {mode: [std, pro]}\n"
    [problem] = errors(spec(folder, text))
    assert problem.line == 6 and "'missing' is undefined" in problem.message


def test_a_variants_vars_can_fix_what_the_shot_alone_lacks(folder: Path) -> None:
    text = (
        SHOT.replace("{{ place }}", "{{ lens }}")
        + "    variants:\n      a: {vars: {lens: 35mm}}\n      b: {vars: {lens: 85mm}}\n"
    )
    assert [shot.prompt for shot in load_project(spec(folder, text)).shots] == [
        "dawn over the 35mm",
        "dawn over the 85mm",
    ]


def test_an_error_in_defaults_counts_a_shot_once_whatever_its_variants(folder: Path) -> None:
    head = HEAD + "defaults: {negative_prompt: '" + "n" * 201 + "'}\n"
    text = SHOT + "    matrix: {mode: [std, pro]}\n" + SHOT.replace("s01", "s02")
    [problem] = errors(spec(folder, text, head=head))
    assert problem.line == 3 and "in all 2 shots that inherit it (s01, s02)" in problem.message
