"""The editorial commands end to end: one line per problem and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from orchestrator.cli._app import cli
from tests.editorial.conftest import Store

ROOT = Path(__file__).resolve().parents[2]


def test_export_reel_and_conform_from_the_command_line(store: Store, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["export", str(store.spec), "-o", str(tmp_path / "cut.edl")])
    assert done.exit_code == 0, done.output
    assert "edl: 3 clips, 1 held board, 15.0 s at 24 fps" in done.output
    since = runner.invoke(
        cli, ["export", str(store.spec), "-o", str(tmp_path / "new.otio"), "--changed-since", "first"]
    )
    assert since.exit_code == 0 and "1 clip, 2 unchanged shots as gaps" in since.output
    reel = runner.invoke(cli, ["reel", str(store.spec), "-o", str(tmp_path / "r.mp4"), "--rate", "4", "--height", "64"])
    assert reel.exit_code == 0 and "68 frames" in reel.output
    conformed = runner.invoke(cli, ["conform", str(store.spec), str(tmp_path / "cut.edl"), "--json"])
    assert conformed.exit_code == 0 and json.loads(conformed.output)["changed"] is False


def test_bad_input_is_one_line_each(store: Store, tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        (["export", str(store.spec), "-o", str(tmp_path / "cut.mov")], "cannot tell the format from .mov"),
        (
            ["export", str(store.spec), "-o", str(tmp_path / "a.otio"), "--changed-since", "nope"],
            "--changed-since nope",
        ),
        (["export", str(store.spec), "-o", str(tmp_path / "a.otio"), "--rate", "0"], "--rate 0"),
        (["conform", str(store.spec), str(tmp_path / "missing.xml")], "missing.xml: no such file"),
        (["export", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "a.otio")], "nope.yaml:1:1: no such file"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, args
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and message in lines[0], (args, lines)


def test_import_and_help_load_neither_otio_nor_pyav() -> None:
    code = (
        "import sys, orchestrator\nsys.argv = ['orchestrator', '--help']\nfrom orchestrator.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('av.', 'opentimelineio', 'orchestrator.editorial')\n"
        "print(sorted(m for m in sys.modules if m == 'av' or m.startswith(heavy)))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "[]"
    assert "export" in done.stdout and "conform" in done.stdout
