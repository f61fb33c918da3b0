"""``orchestrator plan``, ``diff``, ``report`` and ``status`` through the CLI, on real specs in a temp folder."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image
from rich.console import Console

from orchestrator.cli import cli
from orchestrator.cli.plan import _plan_line, render_plan
from orchestrator.plan.plan import plan_project
from orchestrator.plan.pricing import project_pricing
from orchestrator.spec.fingerprint import request_record
from orchestrator.spec.load import load_project
from orchestrator.store.manifest import (
    FAILED,
    LOCK_NAME,
    SUBMITTED,
    SUCCEEDED,
    Manifest,
    ManifestLock,
    Output,
    ShotRecord,
    load_manifest,
    save_manifest,
)

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

SHOTS = """\
  - id: s1
    images: [boards/b0.png, boards/b1.png]
    prompt: "{{ hero }} walks along the pier, {{ style }}"
    vars: {hero: Mara}
  - id: s2
    images: [boards/b1.png, boards/b2.png]
    prompt: "Waves crash over the pier"
  - id: s3
    images: [boards/b2.png, boards/b0.png]
    prompt: "A lamp turns in the lighthouse"
    mode: pro
"""


def spec_text(shots: str = SHOTS, extra: str = "") -> str:
    return f"version: 1\nproject: demo\noutput_dir: renders\nvars: {{style: soft dawn light}}\n{extra}shots:\n{shots}"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "boards").mkdir()
    for i in range(3):
        Image.new("RGB", (640, 360), (60 * i, 100, 200 - 50 * i)).save(tmp_path / "boards" / f"b{i}.png")
    path = tmp_path / "project.yaml"
    path.write_text(spec_text())
    return path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def fake_run(spec: Path, *, failed: tuple[str, ...] = ()) -> Path:
    """Leave the manifest and videos a finished run would leave (``failed`` shots failed instead)."""
    project = load_project(spec)
    out = project.output_dir
    manifest = Manifest(project=project.project, spec_path=str(spec))
    for shot in project.shots:
        record = ShotRecord(status=SUCCEEDED, fingerprint=shot.fingerprint, request=request_record(shot), cost=1.0)
        if shot.id in failed:
            record.status, record.error, record.cost = FAILED, "content moderation", None
        else:
            data = f"video {shot.fingerprint}".encode()
            rel = f"{shot.id}/{shot.fingerprint[:12]}.mp4"
            (out / shot.id).mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(data)
            record.outputs = [Output(rel, hashlib.sha256(data).hexdigest(), len(data))]
        manifest.shots[shot.id] = record
    save_manifest(manifest, out / "manifest.json")
    return out / "manifest.json"


# --- plan -------------------------------------------------------------------------------------------------------


def test_plan_of_a_new_spec(spec: Path) -> None:
    result = invoke("plan", str(spec))
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["+", "s1", "new", "2", "units"]
    assert lines[2].split() == ["+", "s3", "new", "3.5", "units"]
    assert "legend: + new, will render" in result.output
    assert lines[-1] == "3 new - est. 7.5 units"


def test_plan_after_a_run_and_edits(spec: Path) -> None:
    fake_run(spec, failed=("s3",))
    assert invoke("plan", str(spec), "--detailed-exitcode").exit_code == 2  # s3 failed: work to do

    edited = SHOTS.replace("Waves crash", "Waves roll").replace("    mode: pro\n", "")
    spec.write_text(
        spec_text(
            edited.replace(
                "  - id: s1", "  - id: s0\n    images: [boards/b0.png, boards/b2.png]\n    prompt: new one\n  - id: s1"
            )
        )
    )
    result = invoke("plan", str(spec))
    assert result.exit_code == 0
    lines = [line.split(None, 2) for line in result.output.splitlines()[:4]]
    assert lines == [
        ["+", "s0", "new  2 units"],
        ["=", "s1", "unchanged"],
        ["~", "s2", "changed: prompt  2 units"],
        ["~", "s3", "changed: mode: pro -> std  2 units"],
    ]
    assert result.output.splitlines()[-1] == "1 new, 2 changed, 1 unchanged - est. 6 units"


def test_plan_of_removed_and_failed_shots(spec: Path) -> None:
    fake_run(spec, failed=("s2",))
    spec.write_text(spec_text(SHOTS.split("  - id: s3")[0]))
    result = invoke("plan", str(spec))
    assert "! s2  failed before, will retry: content moderation  2 units" in result.output
    assert "- s3  removed from the spec (outputs kept)" in result.output
    assert result.output.splitlines()[-1] == "1 unchanged, 1 to retry, 1 removed - est. 2 units"


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "no-colour"])
def test_the_plan_is_written_in_one_go_byte_for_byte_as_rich_prints_it_line_by_line(
    spec: Path, terminal: bool, no_color: bool
) -> None:
    fake_run(spec, failed=("s2",))
    manifest_path = spec.parent / "renders" / "manifest.json"
    manifest = load_manifest(manifest_path)
    manifest.shots["s2"].error = "moderation\tsaid \x1b[31mno\u202e"  # a tab (rich expands it), ESC, bidi override
    manifest.shots["gone"] = ShotRecord(status=SUCCEEDED, fingerprint="f")
    save_manifest(manifest, manifest_path)
    spec.write_text(spec_text(SHOTS.replace("along the pier", "along the quay")))
    project = load_project(spec)
    plan, pricing = plan_project(project), project_pricing(spec=project.pricing, flags=())

    def console() -> tuple[Console, io.StringIO]:
        buffer = io.StringIO()
        return Console(file=buffer, highlight=False, soft_wrap=True, force_terminal=terminal, no_color=no_color), buffer

    batched, batched_out = console()
    render_plan(plan, pricing, batched)
    one_by_one, one_by_one_out = console()
    width = max(len(entry.shot_id) for entry in plan.entries)
    for entry in plan.entries:
        one_by_one.print(_plan_line(entry, pricing, width).text())
    table = batched_out.getvalue().split("\n\n")[0] + "\n"
    assert table == one_by_one_out.getvalue()
    assert "\x1b[31mno" not in table and "\u202e" not in table and "\\x1b[31mno\\u202e" in table
    assert ("\x1b[" in table) is terminal  # colour codes on a terminal only


def test_plan_beside_a_live_run_says_which_process_has_the_shot_in_flight(spec: Path) -> None:
    manifest_path = fake_run(spec)
    manifest = load_manifest(manifest_path)
    manifest.shots["s2"].status, manifest.shots["s2"].outputs = SUBMITTED, []
    save_manifest(manifest, manifest_path)
    lock = ManifestLock(manifest_path.parent / LOCK_NAME)
    lock.acquire()  # a live run holds the folder
    try:
        result = invoke("plan", str(spec))
    finally:
        lock.release()
    assert f"! s2  in flight in the run of process {os.getpid()} (on {socket.gethostname()}" in result.output
    assert "failed before, will retry: " not in result.output


def test_plan_nothing_to_do_exits_zero_with_detailed_exitcode(spec: Path) -> None:
    fake_run(spec)
    result = invoke("plan", str(spec), "--detailed-exitcode")
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == "3 unchanged - est. 0 units"


def test_plan_json_and_out(spec: Path, tmp_path: Path) -> None:
    manifest = fake_run(spec)
    moved = tmp_path / "elsewhere"
    shutil.move(manifest.parent, moved)
    data = json.loads(invoke("plan", str(spec), "--json").output)
    assert data["summary"]["new"] == 3
    data = json.loads(invoke("plan", str(spec), "--json", "--out", str(moved)).output)
    assert data["summary"]["unchanged"] == 3
    assert data["manifest"] == str(moved / "manifest.json")


def test_plan_pricing_from_spec_and_flags(spec: Path) -> None:
    spec.write_text(spec_text(extra="pricing: {std_5s: 2}\n"))
    assert invoke("plan", str(spec)).output.splitlines()[-1] == "3 new - est. 11 units"
    result = invoke("plan", str(spec), "--price", "pro_multiplier=1", "--price", "std_5s=0.5")
    assert result.output.splitlines()[-1] == "3 new - est. 1.5 units"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--price", "cheap"], "error: --price 'cheap': expected KEY=NUMBER"),
        (["--price", "bogus=1"], "error: unknown pricing key(s) bogus"),
    ],
)
def test_plan_bad_price_is_one_line(spec: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["plan", str(spec), *args])
    assert result.exit_code == 1
    assert result.output.strip().startswith(message)
    assert len(result.output.strip().splitlines()) == 1


def test_plan_usage_error_with_detailed_exitcode_is_not_work_to_do(spec: Path) -> None:
    assert CliRunner().invoke(cli, ["plan", str(spec), "--detailed-exitcode", "--bogus"]).exit_code == 1
    assert CliRunner().invoke(cli, ["plan", str(spec), "--bogus"]).exit_code == 2  # click's usual


def test_plan_of_a_bad_spec_lists_problems_without_traceback(spec: Path) -> None:
    spec.write_text(spec_text(SHOTS.replace("mode: pro", "mode: ultra")))
    result = CliRunner().invoke(cli, ["plan", str(spec), "--detailed-exitcode"])
    assert result.exit_code == 1
    assert "ultra" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_plan_refuses_another_projects_manifest(spec: Path) -> None:
    save_manifest(Manifest(project="other"), spec.parent / "renders" / "manifest.json")
    result = CliRunner().invoke(cli, ["plan", str(spec)])
    assert result.exit_code == 1
    assert "belongs to project 'other'" in result.output


# --- diff -------------------------------------------------------------------------------------------------------


def test_diff_of_two_spec_versions(spec: Path) -> None:
    other = spec.with_name("v2.yaml")
    other.write_text(spec_text(SHOTS.replace("Waves crash", "Huge Waves crash").replace("mode: pro", "mode: std")))
    assert invoke("diff", str(spec), str(spec)).exit_code == 0

    result = invoke("diff", str(spec), str(other))
    assert result.exit_code == 1
    assert "~ s2  changed: prompt" in result.output
    assert "    prompt: {+Huge +}Waves crash over the pier" in result.output
    assert "~ s3  changed: mode: pro -> std" in result.output
    assert "s1" not in result.output.replace("--- ", "").split("\n", 2)[2]  # unchanged shots are only counted
    assert result.output.splitlines()[-1] == "0 added, 0 removed, 2 changed, 1 unchanged"


def test_diff_json(spec: Path) -> None:
    other = spec.with_name("v2.yaml")
    other.write_text(spec_text(SHOTS.split("  - id: s3")[0]))
    result = invoke("diff", str(spec), str(other), "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["summary"] == {"added": 0, "removed": 1, "changed": 0, "unchanged": 2}


def test_diff_spec_against_its_manifest_and_manifest_against_manifest(spec: Path, tmp_path: Path) -> None:
    manifest = fake_run(spec)
    assert invoke("diff", str(manifest), str(spec)).exit_code == 0
    older = tmp_path / "older.json"
    shutil.copy(manifest, older)
    spec.write_text(spec_text(SHOTS.replace("Mara", "Jon")))
    fake_run(spec)
    result = invoke("diff", str(older), str(manifest))
    assert result.exit_code == 1
    assert "    prompt: [-Mara-]{+Jon+} walks along the pier, soft dawn light" in result.output


@needs_git
def test_diff_spec_at_previous_git_revision(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@e.x", *args],
            cwd=spec.parent,
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    spec.write_text(spec_text(SHOTS.replace("A lamp turns", "A lamp slowly turns")))
    git("commit", "-q", "-am", "second")
    monkeypatch.chdir(spec.parent)

    result = invoke("diff", "project.yaml@HEAD~1", "project.yaml")
    assert result.exit_code == 1
    assert "    prompt: A lamp {+slowly +}turns in the lighthouse" in result.output
    assert invoke("diff", "project.yaml@HEAD", "project.yaml").exit_code == 0
    assert sorted(p.name for p in spec.parent.iterdir() if p.is_file()) == ["project.yaml"]  # temp copy removed


def test_diff_errors_exit_two_with_one_line(spec: Path) -> None:
    result = CliRunner().invoke(cli, ["diff", str(spec), "missing.yaml"])
    assert result.exit_code == 2
    assert result.output == "missing.yaml:1:1: no such file\n"  # as validate says it
    spec.with_name("bad.yaml").write_text("version: 1\nproject: demo\nshots: 3\n")
    result = CliRunner().invoke(cli, ["diff", str(spec), str(spec.with_name("bad.yaml"))])
    assert result.exit_code == 2
    assert "bad.yaml:" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["plan", "diff"])
def test_json_problems_come_out_as_json_on_stdout_with_the_same_exit(spec: Path, command: str) -> None:
    bad = spec.with_name("bad.yaml")
    bad.write_text(spec_text(SHOTS.replace("mode: pro", "mode: ultra")))
    args = [command, str(bad)] if command == "plan" else [command, str(spec), str(bad)]
    text, as_json = CliRunner().invoke(cli, args), CliRunner().invoke(cli, [*args, "--json"])
    assert as_json.exit_code == text.exit_code == (1 if command == "plan" else 2)
    assert as_json.stderr == ""
    document = json.loads(as_json.stdout)
    assert document["ok"] is False
    [problem] = document["problems"]
    assert problem["file"] == str(bad) and problem["line"] == 16 and "ultra" in problem["message"]
    assert (
        problem
        == json.loads(CliRunner().invoke(cli, ["validate", str(bad), "--json"]).stdout)["specs"][0]["problems"][0]
    )


def test_plan_json_error_that_is_not_at_a_spec_line(spec: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", str(spec), "--json", "--price", "bogus=1"])
    assert result.exit_code == 1
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["line"] is None and problem["message"].startswith("unknown pricing key(s) bogus")


# --- report and status ------------------------------------------------------------------------------------------


def test_report_from_spec_and_manifest(spec: Path, tmp_path: Path) -> None:
    manifest = fake_run(spec, failed=("s3",))
    result = invoke("report", str(spec))
    assert result.exit_code == 0
    report = manifest.parent / "report.html"
    assert result.output.strip() == f"wrote {report} (3 shots)"
    html = report.read_text()
    assert html.count("data:image/jpeg;base64,") == 6  # found through the spec's folder
    assert 'src="s1/' in html

    elsewhere = tmp_path / "out" / "r.html"
    assert invoke("report", str(manifest), "-o", str(elsewhere)).exit_code == 0
    assert 'src="../renders/s1/' in elsewhere.read_text()


def test_report_without_a_manifest_is_one_line(spec: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(spec)])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "no manifest here" in result.output


def test_status_table_and_json(spec: Path) -> None:
    manifest = fake_run(spec, failed=("s3",))
    result = invoke("status", str(manifest))
    assert result.exit_code == 0
    assert "demo: 3 shots" in result.output
    assert "succeeded" in result.output and "content moderation" in result.output
    assert result.output.splitlines()[-1] == "est. 2 units, charged 0 units (no charged figure yet for 2 shots: s1, s2)"
    data = json.loads(invoke("status", str(spec), "--json").output)
    assert data["counts"]["failed"] == 1
    assert data["problems"] == [{"id": "s3", "status": "failed", "reason": "content moderation"}]
    assert load_manifest(manifest).project == "demo"
