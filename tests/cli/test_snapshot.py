"""``orchestrator snapshot``, and every command's one line for a render store it cannot use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from orchestrator.cli import cli
from orchestrator.store import DATABASE_NAME
from orchestrator.store.manifest import LOCK_NAME, MANIFEST_NAME, SUBMITTED, ManifestLock, ManifestStore

SPEC = """\
version: 1
project: demo
output_dir: renders
shots:
  - {id: s1, images: [b0.png, b1.png], prompt: a slow pan}
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    for i in range(2):
        Image.new("RGB", (640, 360), (90 * i, 100, 150)).save(tmp_path / f"b{i}.png")
    path = tmp_path / "project.yaml"
    path.write_text(SPEC)
    return path


def test_snapshot_writes_the_manifest_from_the_store_while_a_run_holds_it(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "renders"
    store = ManifestStore.open(out / MANIFEST_NAME, project="demo")  # a run in progress: locked, no snapshot yet
    try:
        store.update("s1", status=SUBMITTED, fingerprint="f" * 64, attempts=1, task_id="42", external_task_id="x")
        store.save()
        assert not (out / MANIFEST_NAME).exists()

        result = invoke("snapshot", str(out))
        assert result.exit_code == 0, result.output
        assert f"wrote {out / MANIFEST_NAME}: 1 shot, 1 render" in result.output
        written = json.loads((out / MANIFEST_NAME).read_text())
        assert written["manifest_version"] == 2 and written["shots"]["s1"]["renders"][0]["task_id"] == "42"

        elsewhere = tmp_path / "review" / "pilot.json"
        elsewhere.parent.mkdir()
        assert invoke("snapshot", str(spec), "-o", str(elsewhere)).exit_code == 0  # a spec: its output folder
        assert elsewhere.read_bytes() == (out / MANIFEST_NAME).read_bytes()
        status = invoke("status", str(elsewhere), "--json")  # the copy stands in for the folder
        assert status.exit_code == 0 and json.loads(status.output)["counts"]["submitted"] == 1
    finally:
        store.release()


def test_snapshot_of_a_folder_without_a_store_says_so(tmp_path: Path) -> None:
    result = invoke("snapshot", str(tmp_path))
    assert result.exit_code == 1
    expected = f"error: {tmp_path}: no render store ({DATABASE_NAME}) here: its first run makes one"
    assert result.stderr.strip() == expected


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "{spec}"],
        ["status", "{out}"],
        ["status", "{spec}"],
        ["report", "{out}"],
        ["diff", "{out}", "{spec}"],
        ["snapshot", "{out}"],
        ["run", "{spec}", "--provider", "local"],
        ["adopt", "{spec}", "s1", "861309198188019719", "--provider", "local"],
    ],
)
def test_a_corrupt_store_is_one_line_naming_it_for_every_command(
    spec: Path, tmp_path: Path, command: list[str]
) -> None:
    out = tmp_path / "renders"
    out.mkdir()
    database = out / DATABASE_NAME
    database.write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)
    before = database.read_bytes()
    result = invoke(*(part.format(spec=spec, out=out) for part in command))
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(database) in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert database.read_bytes() == before  # never overwritten, never "repaired"
    # No log, no snapshot left behind; the lock file (kept, never deleted) is free and empty.
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME) == [DATABASE_NAME]
    assert ManifestLock(out / LOCK_NAME).live_holder() is None
    assert not (out / LOCK_NAME).exists() or (out / LOCK_NAME).read_text() == ""
