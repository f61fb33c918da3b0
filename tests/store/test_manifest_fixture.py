"""The committed version-1 manifest still loads: the format that studios' folders hold today."""

from __future__ import annotations

from pathlib import Path

from orchestrator.store.manifest import STATUSES, load_manifest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "manifest-v1" / "manifest.json"


def test_the_version_1_fixture_loads_with_every_field() -> None:
    manifest = load_manifest(FIXTURE)
    assert manifest.manifest_version == 1 and manifest.salt == "k3x9q2"
    assert {record.status for record in manifest.shots.values()} <= set(STATUSES)
    done = manifest.shots["s01-done"]
    assert done.charged == 2.0 and done.history[0].outputs[0].bytes == 999
    assert manifest.shots["s03-unconfirmed"].task_id is None
