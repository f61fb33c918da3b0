"""``<spec stem>.review.yaml``: the decisions of a review (selects, approvals, retakes, holds), beside the spec.

The store knows the renders; this file knows what people decided about them. It is small, human-readable and meant
to be versioned in git with the spec, so it is written with a fixed key order, shots in spec order, and atomically
(a temp file, fsync, rename): a crash leaves the old file or the new one. It is read with the safe loader only, and
every problem in it is one line with its file, line and column.

A render is named here by what survives a fresh clone and a new store: its **fingerprint** (the request's content),
**variant** and **take** number. A render id, an external id (it holds the folder's random salt) or a file name
would not: the same request rendered again on another machine gets other ids, but the same fingerprint. See
docs/review.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import DecisionError, Problem, SpecError
from orchestrator.spec.yamlsource import PathKey, Source, read_source
from orchestrator.store.manifest import write_atomic

DECISIONS_VERSION = 1
SUFFIX = ".review.yaml"

PENDING_REVIEW = "pending-review"
APPROVED = "approved"
RETAKE = "retake"
HOLD = "hold"
REVIEW_STATUSES: tuple[str, ...] = (PENDING_REVIEW, APPROVED, RETAKE, HOLD)

MAX_NOTE = 2_000  # characters: a note is a sentence or a paragraph, not a document
MAX_BY = 100
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_VARIANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Control characters other than newline and tab, and bidi overrides: a note is shown in terminals and pages.
_UNSAFE_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_HEADER = (
    "# Review decisions for {spec}: which take is the one, and what was decided about it.\n"
    "# Written by `orchestrator select|approve|retake|hold` and `orchestrator review`; see docs/review.md.\n"
)


@dataclass(frozen=True, order=True)
class TakeRef:
    """A render as it is named across machines: its request's fingerprint, its variant and its take number."""

    fingerprint: str
    take: int = 1
    variant: str | None = None

    @property
    def label(self) -> str:
        """``take 2``, ``wide take 2``: how people name it."""
        return f"{self.variant} take {self.take}" if self.variant else f"take {self.take}"

    def describe(self) -> str:
        """The label with the fingerprint's first 12 characters, as the file names of videos show it."""
        return f"{self.label} ({self.fingerprint[:12]})"


@dataclass(frozen=True)
class Decision:
    """What was decided about one shot, by whom and when.

    ``select`` is the render that is "the one". ``approved`` is bound to it: an approval counts only while the spec
    still asks for the select's fingerprint (else it is stale). ``retake_take`` is the take number a retake asks
    for: the shot wants it rendered, and nothing else, until a render of that take exists.
    """

    shot_id: str
    status: str = PENDING_REVIEW
    select: TakeRef | None = None
    retake_take: int | None = None
    note: str = ""
    by: str = ""
    at: str = ""


@dataclass(frozen=True)
class Decisions:
    """Every shot's decision, as the file holds them (a missing file is an empty one)."""

    path: Path
    shots: Mapping[str, Decision] = field(default_factory=dict)

    def get(self, shot_id: str) -> Decision:
        return self.shots.get(shot_id) or Decision(shot_id)

    def with_decision(self, decision: Decision) -> Decisions:
        return replace(self, shots={**self.shots, decision.shot_id: decision})


def decisions_path(spec: Path) -> Path:
    """``project.yaml`` -> ``project.review.yaml``, in the spec's folder."""
    return spec.with_name(spec.stem + SUFFIX)


# --- reading ----------------------------------------------------------------------------------------------------


def load_decisions(path: Path) -> Decisions:
    """Read a decisions file; a missing one is empty. Every problem is one located line (``SpecError``)."""
    if not path.exists():
        return Decisions(path)
    return parse_decisions(read_source(path), path=path)


def parse_decisions(source: Source, *, path: Path) -> Decisions:
    """The decisions in a parsed YAML document (a file, or a git revision's blob)."""
    if source.problems:
        raise SpecError(list(source.problems))
    problems: list[Problem] = []
    data = source.data
    if data is None:
        return Decisions(path)
    if not isinstance(data, dict):
        raise SpecError([source.problem((), "a decisions file is a mapping with `version` and `shots`")])
    version = data.get("version", DECISIONS_VERSION)
    if version != DECISIONS_VERSION:
        problems.append(source.problem(("version",), f"unknown decisions version {version!r} (this tool reads 1)"))
    for key in data:
        if key not in ("version", "shots"):
            problems.append(source.problem((key,), f"unknown key {key!r} (expected `version` and `shots`)", key=True))
    shots_data = data.get("shots") or {}
    shots: dict[str, Decision] = {}
    if not isinstance(shots_data, dict):
        problems.append(source.problem(("shots",), "`shots` is a mapping of shot ids to decisions"))
    else:
        for shot_id, entry in shots_data.items():
            decision = _parse_decision(source, str(shot_id), entry, problems)
            if decision is not None:
                shots[str(shot_id)] = decision
    if problems:
        raise SpecError(problems)
    return Decisions(path, shots)


_DECISION_KEYS = ("status", "select", "retake", "note", "by", "at")


def _parse_decision(source: Source, shot_id: str, entry: Any, problems: list[Problem]) -> Decision | None:
    where: PathKey = ("shots", shot_id)
    if not isinstance(entry, dict):
        problems.append(source.problem(where, "a shot's decision is a mapping (status, select, note, by, at)"))
        return None
    before = len(problems)
    for key in entry:
        if key not in _DECISION_KEYS:
            known = ", ".join(_DECISION_KEYS)
            problems.append(source.problem((*where, key), f"unknown key {key!r} (known: {known})", key=True))
    status = entry.get("status", PENDING_REVIEW)
    if status not in REVIEW_STATUSES:
        problems.append(
            source.problem((*where, "status"), f"unknown status {status!r}; use one of {', '.join(REVIEW_STATUSES)}")
        )
    select = _parse_ref(source, (*where, "select"), entry.get("select"), problems)
    retake_take = _parse_retake(source, (*where, "retake"), entry.get("retake"), problems)
    texts = {key: _parse_text(source, (*where, key), entry.get(key), problems) for key in ("note", "by", "at")}
    if status == APPROVED and select is None and "select" not in entry:
        problems.append(source.problem(where, "an approval needs the `select` it approves"))
    if status == RETAKE and retake_take is None and "retake" not in entry:
        problems.append(source.problem(where, "a retake needs `retake: {take: N}`, the take it asks for"))
    if len(problems) > before:
        return None
    return Decision(shot_id, status, select, retake_take if status == RETAKE else None, **texts)


def _parse_ref(source: Source, where: PathKey, value: Any, problems: list[Problem]) -> TakeRef | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(source.problem(where, "`select` is a mapping: fingerprint, take, variant"))
        return None
    fingerprint, take, variant = value.get("fingerprint"), value.get("take", 1), value.get("variant")
    ok = True
    if not isinstance(fingerprint, str) or not _FINGERPRINT.match(fingerprint):
        problems.append(source.problem((*where, "fingerprint"), "`fingerprint` is the render's 64 hex characters"))
        ok = False
    if not _is_take(take):
        problems.append(source.problem((*where, "take"), f"`take` is a number from 1 to 99, not {take!r}"))
        ok = False
    if variant is not None and (not isinstance(variant, str) or not _VARIANT.match(variant)):
        problems.append(source.problem((*where, "variant"), f"{variant!r} is not a variant name"))
        ok = False
    for key in value:
        if key not in ("fingerprint", "take", "variant"):
            problems.append(source.problem((*where, key), f"unknown key {key!r}", key=True))
            ok = False
    return TakeRef(str(fingerprint), int(take), variant) if ok else None


def _parse_retake(source: Source, where: PathKey, value: Any, problems: list[Problem]) -> int | None:
    if value is None:
        return None
    take = value.get("take") if isinstance(value, dict) else None
    if not isinstance(take, int) or not _is_take(take):
        problems.append(source.problem(where, "`retake` is `{take: N}`: the take number the retake asks for"))
        return None
    return int(take)


def _parse_text(source: Source, where: PathKey, value: Any, problems: list[Problem]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(source.problem(where, f"`{where[-1]}` is text"))
        return ""
    return value


def _is_take(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 99


# --- checking what people type ----------------------------------------------------------------------------------


def clean_note(note: str | None) -> str:
    """A note as it will be kept: trimmed; refused when too long or holding control characters."""
    text = (note or "").strip()
    if len(text) > MAX_NOTE:
        raise DecisionError(f"the note is {len(text)} characters; keep it under {MAX_NOTE}")
    if _UNSAFE_TEXT.search(text):
        raise DecisionError("the note holds control characters; write plain text")
    return text


def clean_by(by: str) -> str:
    """Who decided: one line of plain text."""
    text = by.strip()
    if not text or len(text) > MAX_BY or "\n" in text or _UNSAFE_TEXT.search(text):
        raise DecisionError(f"--by is a name: one line of plain text, at most {MAX_BY} characters")
    return text


# --- writing ----------------------------------------------------------------------------------------------------


def decisions_text(decisions: Decisions, *, order: Iterable[str] = (), spec_name: str = "the spec") -> str:
    """The file's text: shots in ``order`` (the spec's), then any others by id; keys in a fixed order.

    The same decisions always give the same bytes, and one decision changed is a few changed lines in a git diff.
    """
    wanted = [shot_id for shot_id in dict.fromkeys(order) if shot_id in decisions.shots]
    rest = sorted(set(decisions.shots) - set(wanted))
    shots = {shot_id: _decision_data(decisions.shots[shot_id]) for shot_id in [*wanted, *rest]}
    body = yaml.safe_dump(
        {"version": DECISIONS_VERSION, "shots": shots},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=1_000,
    )
    return _HEADER.format(spec=spec_name) + body


def _decision_data(decision: Decision) -> dict[str, Any]:
    data: dict[str, Any] = {"status": decision.status}
    if decision.select is not None:
        data["select"] = _ref_data(decision.select)
    if decision.retake_take is not None:
        data["retake"] = {"take": decision.retake_take}
    for key in ("note", "by", "at"):
        value = getattr(decision, key)
        if value:
            data[key] = value
    return data


def _ref_data(ref: TakeRef) -> dict[str, Any]:
    data: dict[str, Any] = {"take": ref.take}
    if ref.variant is not None:
        data["variant"] = ref.variant
    data["fingerprint"] = ref.fingerprint
    return data


def save_decisions(decisions: Decisions, *, order: Iterable[str] = (), spec_name: str = "the spec") -> None:
    """Write the file atomically; a failure is a ``DecisionError`` naming the file, and the old file stays."""
    text = decisions_text(decisions, order=order, spec_name=spec_name)
    try:
        write_atomic(decisions.path, text)
    except OSError as exc:
        raise DecisionError(
            f"{decisions.path}: cannot write the decisions ({exc.strerror or exc}); nothing was changed",
            path=str(decisions.path),
        ) from None


# --- comparing two versions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionChange:
    """One shot's decision as it differs between two versions of the file (``None``: no decision on that side)."""

    shot_id: str
    old: Decision | None
    new: Decision | None

    def describe(self) -> str:
        """``s03: pending-review -> approved (take 2)``, ``note "too fast" -> "better"``."""
        old, new = self.old or Decision(self.shot_id), self.new or Decision(self.shot_id)
        parts: list[str] = []
        if old.status != new.status:
            parts.append(f"{old.status} -> {new.status}")
        if old.select != new.select:
            parts.append(f"select {_ref_label(old.select)} -> {_ref_label(new.select)}")
        if old.note != new.note:
            parts.append(f"note {old.note or '-'!r} -> {new.note or '-'!r}")
        if old.retake_take != new.retake_take and new.retake_take is not None:
            parts.append(f"retake wants take {new.retake_take}")
        return "; ".join(parts) or "decided again (by or time)"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.shot_id,
            "old": _decision_data(self.old) if self.old else None,
            "new": _decision_data(self.new) if self.new else None,
        }


def _ref_label(ref: TakeRef | None) -> str:
    return ref.describe() if ref is not None else "none"


def decision_changes(old: Decisions, new: Decisions) -> tuple[DecisionChange, ...]:
    """Shots whose decision differs (status, select, note, retake), in ``new``'s order then those only ``old`` has.

    Who and when alone do not count: deciding the same thing again is no change a reviewer needs to read.
    """
    changes = []
    for shot_id in [*new.shots, *(s for s in old.shots if s not in new.shots)]:
        before, after = old.shots.get(shot_id), new.shots.get(shot_id)
        if _substance(before) != _substance(after):
            changes.append(DecisionChange(shot_id, before, after))
    return tuple(changes)


def _substance(decision: Decision | None) -> tuple[Any, ...] | None:
    if decision is None:
        return None
    return (decision.status, decision.select, decision.retake_take, decision.note)
