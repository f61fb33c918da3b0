"""Fingerprints: what a render depends on, reduced to one hash.

The fingerprint is the sha256 of a canonical JSON document (sorted keys, no whitespace) holding every field that
changes the video: model, mode, duration, cfg_scale, aspect_ratio, the rendered prompt and negative prompt, each
image's content hash in order, the mask hashes and trajectories. Fields that do not change the pixels (callback
URL, shot index, where the YAML lives, how a variable was named) are left out, so the fingerprint is stable under
YAML formatting, key order, comments, moving an image file and adding or removing other shots.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.spec.shot import ResolvedShot

FINGERPRINT_VERSION = 1
EXTERNAL_ID_MAX = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def render_fields(shot: ResolvedShot) -> dict[str, Any]:
    """The render-relevant fields of a shot as plain JSON values: what the fingerprint hashes and plan compares."""
    return _render_fields(vars(shot))


def _render_fields(shot: Mapping[str, Any]) -> dict[str, Any]:
    # From the shot's fields by name: the resolver has them in a dict before the shot exists (see ``fingerprint_of``).
    static_mask = shot["static_mask"]
    return {
        "model": shot["model"],
        "mode": shot["mode"],
        "duration": shot["duration"],
        "cfg_scale": shot["cfg_scale"],
        "aspect_ratio": shot["aspect_ratio"],
        "prompt": shot["prompt"],
        "negative_prompt": shot["negative_prompt"],
        "images": [image.identity for image in shot["images"]],
        "static_mask": static_mask.identity if static_mask else None,
        "dynamic_masks": [
            {
                "mask": group.mask.identity,
                "trajectories": [[p.x, p.y] for p in group.trajectories],
            }
            for group in shot["dynamic_masks"]
        ],
    }


# One encoder for every shot: ``json.dumps`` with options builds a new one on each call (a third of its time here).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, text as written (not ``\\u`` escapes): ``json.dumps`` with those options."""
    return _CANONICAL.encode(value)


def fingerprint(shot: ResolvedShot) -> str:
    """The hex sha256 of the shot's render fields (the shot's own ``fingerprint`` attribute is ignored)."""
    return fingerprint_of(vars(shot))


def fingerprint_of(fields: Mapping[str, Any]) -> str:
    """``fingerprint`` of the shot these ``ResolvedShot`` fields would make (every render field given), without
    making it: the resolver builds each of a big spec's shots once, not once more just to hash it."""
    document = {"v": FINGERPRINT_VERSION, **_render_fields(fields)}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def external_task_id(
    shot: ResolvedShot, *, salt: str = "", attempt: int = 1, take: int = 1, variant: str | None = None
) -> str:
    """A deterministic id for the provider: ``<project>-<shot>-<fp12>-<salt>``, at most 64 chars of ``[A-Za-z0-9_-]``
    (``salt`` is the output folder's, kept in its store: two projects of one name never share an id).

    Attempts after the first (``attempt > 1``: a retry after the task failed, whose id is used up at the provider)
    end in ``-r<attempt>``. The attempt belongs to the render (``orchestrator.plan.work.Render``), not to the shot.
    A variant adds ``-<variant>`` and takes after the first ``-t<take>``, before the attempt: every take is a request
    of its own, billed on its own. Take 1 of a shot without variants keeps the id it always had, so folders resume.

    The same render request always carries the same id, so the provider itself refuses to bill it twice. When
    project and shot id are too long they are shortened and a hash of the full pair keeps the id unique.
    """
    fp = (shot.fingerprint or fingerprint(shot))[:12]
    if salt:
        fp = f"{fp}-{salt}"
    suffix = (
        (f"-{variant}" if variant else "") + (f"-t{take}" if take > 1 else "") + (f"-r{attempt}" if attempt > 1 else "")
    )
    name = _UNSAFE.sub("-", f"{shot.project}-{shot.id}").strip("-")
    room = EXTERNAL_ID_MAX - len(fp) - 1 - len(suffix)
    if len(name) > room:
        digest = hashlib.sha256(f"{shot.project}\0{shot.id}".encode()).hexdigest()[:8]
        name = f"{name[: room - 9]}-{digest}"
    return f"{name}-{fp}{suffix}"


def request_record(shot: ResolvedShot) -> dict[str, Any]:
    """The resolved request as the manifest keeps it: the render fields, plus where each image came from.

    Images appear by content hash and the reference the spec wrote, never as base64; no key ever appears here.
    """
    return {
        **render_fields(shot),
        "image_refs": [image.ref for image in shot.images],
        "callback_url": shot.callback_url,
    }


def changed_fields(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Names of the render fields that differ between two request records, e.g. ``["prompt", "images[1]"]``."""
    return [change.name for change in field_changes(old, new)]


# Fields short enough to show as ``name: old -> new``; the rest (prompts, images, masks) are shown by name.
SCALAR_FIELDS: tuple[str, ...] = ("model", "mode", "duration", "cfg_scale", "aspect_ratio")


@dataclass(frozen=True)
class FieldChange:
    """One render field that differs between two request records, with both values as plain JSON."""

    name: str
    old: Any
    new: Any

    @property
    def scalar(self) -> bool:
        return self.name in SCALAR_FIELDS

    def describe(self) -> str:
        """``mode: std -> pro`` for short scalar fields, the bare name (``prompt``, ``images[1]``) otherwise."""
        if self.scalar:
            return f"{self.name}: {_show(self.old)} -> {_show(self.new)}"
        return self.name


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value)


def field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    """The render fields that differ between two request records, in a fixed order; images compared one by one."""
    changes: list[FieldChange] = []
    for key in render_fields_keys():
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "images" and isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
            changes.extend(
                FieldChange(f"images[{i}]", a, b) for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b
            )
        else:
            changes.append(FieldChange(key, before, after))
    return changes


def render_fields_keys() -> tuple[str, ...]:
    return (
        "model",
        "mode",
        "duration",
        "cfg_scale",
        "aspect_ratio",
        "prompt",
        "negative_prompt",
        "images",
        "static_mask",
        "dynamic_masks",
    )
