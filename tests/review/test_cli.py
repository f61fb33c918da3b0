"""``orchestrator takes``, ``select``, ``approve``, ``retake``, ``hold`` and ``review`` through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from orchestrator.cli import cli

from .conftest import Production

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_takes_lists_every_render_with_numbers_to_pick_by(production: Production) -> None:
    result = run("takes", str(production.spec))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "s01  pending-review  (3 takes)"
    assert lines[1].split()[:4] == ["1", "take", "1", "succeeded"] and "2 units" in lines[1]
    assert lines[3].split()[:4] == ["3", "take", "3", "failed"]
    s02 = lines.index("s02  pending-review  (2 takes)")
    assert "[stale: an older request]" in lines[s02 + 2]
    assert lines[-1] == "s03  unrendered  (0 takes)"


def test_select_approve_and_takes_json(production: Production) -> None:
    assert run("select", str(production.spec), "s01", "2", "--by", "alice").output == (
        "s01: pending-review take 2 (by alice)\n"
    )
    approved = run("approve", str(production.spec), "s01", "--by", "bo", "--note", "the one", "--json")
    assert json.loads(approved.output)["status"] == "approved"
    shown = run("takes", str(production.spec), "s01")
    assert shown.output.splitlines()[0] == "s01  approved  (3 takes)"
    assert "    note: the one (by bo 20" in shown.output
    assert shown.output.splitlines()[3].split()[:2] == ["*", "2"] and "[selected]" in shown.output
    data = json.loads(run("takes", str(production.spec), "s01", "--json").output)
    (shot,) = data["shots"]
    assert shot["status"] == "approved" and [t["selected"] for t in shot["takes"]] == [False, True, False]
    assert shot["decision"]["select"]["fingerprint"] == production.shot("s01").fingerprint


def test_retake_needs_a_note_and_hold_takes_one(production: Production) -> None:
    missing = CliRunner().invoke(cli, ["retake", str(production.spec), "s01"])
    assert missing.exit_code == 2 and "--note" in missing.output
    assert run("retake", str(production.spec), "s01", "--note", "slower", "--by", "al").output == (
        "s01: retake, take 4 wanted (by al)\n"
    )
    run("hold", str(production.spec), "s02", "--note", "boards coming", "--by", "al")
    shots = yaml.safe_load(production.decisions.read_text())["shots"]
    assert shots["s01"]["retake"] == {"take": 4} and shots["s02"]["status"] == "hold"


def test_by_defaults_to_the_user(production: Production, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "carol")
    run("hold", str(production.spec), "s01")
    assert yaml.safe_load(production.decisions.read_text())["shots"]["s01"]["by"] == "carol"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["select", "{spec}", "s99", "1"], "error: {spec}: no shot 's99' in the spec"),
        (["select", "{spec}", "s01", "3"], "error: s01: take 3 is failed, not finished: pick a finished take"),
        (["approve", "{spec}", "s03"], "error: s03: 0 finished takes and none selected; name one"),
        (["hold", "{spec}", "s01", "--by", ""], "error: --by is a name: one line of plain text"),
        (["takes", "{spec}", "s99"], "error: {spec}: no shot 's99' in the spec"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(production: Production, args: list[str], line: str) -> None:
    result = CliRunner().invoke(cli, [arg.format(spec=production.spec) for arg in args])
    assert result.exit_code == 1
    assert result.output.startswith(line.format(spec=production.spec)) and "Traceback" not in result.output
    assert len(result.output.splitlines()) == 1


def test_a_broken_decisions_file_names_its_lines(production: Production) -> None:
    production.decisions.write_text("version: 1\nshots:\n  s01: {status: maybe}\n")
    result = CliRunner().invoke(cli, ["takes", str(production.spec)])
    assert result.exit_code == 1
    assert result.output.startswith(f"{production.decisions}:3:17: unknown status 'maybe'")


def test_review_serves_until_interrupted(production: Production) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "orchestrator", "review", str(production.spec), "--no-browser"]
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            first = process.stdout.readline()
            assert first.startswith("review of pilot: http://127.0.0.1:") and "?token=" in first
            url = first.split(": ", 1)[1].strip()
            with httpx.Client(timeout=10) as client:
                assert client.get(url.split("?")[0]).status_code == 403
                page = client.get(url, follow_redirects=True)
                assert page.status_code == 200 and "/static/app.js" in page.text
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 130  # as `simulate` does on Ctrl-C
            assert process.stderr.read().strip() == "review stopped"
        finally:
            if process.poll() is None:
                process.kill()
