"""The work of a run: what each render starts from, decided once from the plan and the store, then only read.

A ``Render`` is one render a run makes or follows: which shot, which take and variant, which attempt at the same
request, the external id its create carries, and how the run starts it (``Start``). The scheduler acts on these
values; it never reads a record to decide again what to do with a shot.

How a render starts, from what the folder's store says of the shot (its current render, ``ShotRecord``):

- ``FOLLOW``: its task is at the provider (in flight, or finished with its video missing on disk): poll it, then
  download; never created again.
- ``CONFIRM``: a create may have reached the provider without our seeing its answer (a crash, an unknown outcome):
  look it up first. Found: follow it. Proven absent (a provider whose answer covers the account): create it under the
  same external id. Otherwise it is, or stays, ``unconfirmed``: nothing is sent without the user.
- ``CREATE``: a new attempt (or the first): record its external id, wait for a slot, send the create.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orchestrator.plan.pricing import Pricing
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import ResolvedShot
from orchestrator.store.manifest import (
    DOWNLOADING,
    PENDING,
    PENDING_REMOTE,
    PROCESSING,
    QUEUED,
    SUBMITTED,
    SUBMITTING,
    SUCCEEDED,
    UNCONFIRMED,
    ShotRecord,
)
from orchestrator.store.records import DEFAULT_TAKE
from orchestrator.store.timestamps import epoch_seconds

IN_FLIGHT_STATES = (SUBMITTED, PROCESSING, DOWNLOADING, PENDING_REMOTE)


class Start(StrEnum):
    """How a run starts a render (see the module docstring)."""

    FOLLOW = "follow"
    CONFIRM = "confirm"
    CREATE = "create"


@dataclass(frozen=True)
class Render:
    """One render of a run, everything about it decided: the scheduler only reads it.

    ``render_id`` is the store's row it continues (``None``: a new render, whose row the store writer adds when the
    render's first event arrives). ``task_id``, ``submitted_at`` (epoch seconds) and ``status`` are what the store
    knew when the run began; ``error`` is the reason kept with an unconfirmed render. ``units`` is what starting it
    may cost: nothing for a task already paid for.
    """

    shot: ResolvedShot
    start: Start
    attempt: int
    external_task_id: str
    # The request as an earlier run recorded it; ``None``: as the shot makes it (``request_record``), built once,
    # by the first event of the render, rather than held by every render of a big production while it waits.
    request: Mapping[str, Any] | None = field(default=None, compare=False)
    take: int = DEFAULT_TAKE
    variant: str | None = None
    render_id: int | None = None
    status: str | None = None
    task_id: str | None = None
    submitted_at: float | None = None
    error: str | None = None
    units: float = 0.0

    @property
    def key(self) -> str:
        """What names this render in events, the timeline and the progress view, unique in a run: ``s03`` (take 1 of
        a shot without variants, as it always was), ``s03#2``, ``s03/wide``, ``s03/wide#2``."""
        return render_key(self.shot.id, variant=self.variant, take=self.take)

    @property
    def label(self) -> str:
        """The short form people read: ``s03``, ``s03#2``, ``s03 wide``, ``s03 wide#2``."""
        return render_label(self.shot.id, variant=self.variant, take=self.take)

    @property
    def resumed(self) -> bool:
        """A task an earlier run created (or may have): followed or confirmed, not sent first by this run."""
        return self.start is not Start.CREATE

    @property
    def unconfirmed_before(self) -> bool:
        """Left unconfirmed (or refused as a duplicate yet not found) by an earlier run: only the user may resend."""
        return self.status in (UNCONFIRMED, PENDING_REMOTE) and self.task_id is None


def render_key(shot_id: str, *, variant: str | None = None, take: int = DEFAULT_TAKE) -> str:
    """A render's name, unique per shot, variant and take (see ``Render.key``)."""
    name = shot_id if variant is None else f"{shot_id}/{variant}"
    return name if take == DEFAULT_TAKE else f"{name}#{take}"


def render_label(shot_id: str, *, variant: str | None = None, take: int = DEFAULT_TAKE) -> str:
    """``s03 wide#2``: the key with a space before the variant, for screens."""
    name = shot_id if variant is None else f"{shot_id} {variant}"
    return name if take == DEFAULT_TAKE else f"{name}#{take}"


@dataclass(frozen=True)
class Wanted:
    """One render the plan wants: a take of a request, with the store's record of that take so far and its row."""

    shot: ResolvedShot
    take: int = DEFAULT_TAKE
    record: ShotRecord | None = None
    render_id: int | None = None


def paid_for(shot: ResolvedShot, record: ShotRecord | None, *, fresh: bool = False) -> bool:
    """Is the shot's current request's task at the provider already (followed or fetched again, never rebilled)?"""
    return (
        record is not None
        and not fresh
        and record.fingerprint == shot.fingerprint
        and bool(record.task_id)
        and record.status in (*IN_FLIGHT_STATES, SUCCEEDED)
    )


def units_to_spend(
    shot: ResolvedShot, record: ShotRecord | None, *, pricing: Pricing, fresh: bool = False, resend: bool = False
) -> float:
    """The one rule for what a shot may cost in the next run: its rate unless its task is paid for already, or it is
    unconfirmed and not resent (nothing is sent for it)."""
    if paid_for(shot, record, fresh=fresh):
        return 0.0
    if _unconfirmed(shot, record) and not resend:
        return 0.0
    return pricing.shot_units(shot)


def render_for(
    shot: ResolvedShot,
    record: ShotRecord | None,
    *,
    render_id: int | None = None,
    salt: str = "",
    absence_is_proof: bool,
    pricing: Pricing,
    fresh: bool = False,
    resend: bool = False,
    take: int = DEFAULT_TAKE,
) -> Render:
    """How the run starts take ``take`` of ``shot`` given that take's ``record`` (``render_id`` its row)."""
    units = units_to_spend(shot, record, pricing=pricing, fresh=fresh, resend=resend)
    same = record is not None and record.fingerprint == shot.fingerprint
    if record is not None and same:
        attempt = max(1, record.attempts)
        if record.task_id and (record.status in IN_FLIGHT_STATES or (record.status == SUCCEEDED and not fresh)):
            # In flight, or its video went missing or changed on disk: follow the paid task, never rerender it.
            return _continued(
                shot, record, Start.FOLLOW, attempt, render_id=render_id, salt=salt, units=units, take=take
            )
        if record.status == UNCONFIRMED and resend:
            return _created(shot, record, salt=salt, units=units, take=take)  # the user's word: a new attempt, id
        if record.external_task_id and _outcome_unknown(record, absence_is_proof=absence_is_proof):
            return _continued(
                shot, record, Start.CONFIRM, attempt, render_id=render_id, salt=salt, units=units, take=take
            )
    return _created(shot, record, salt=salt, units=units, take=take)


def renders_of(
    wanted: Iterable[Wanted],
    *,
    salt: str = "",
    absence_is_proof: bool,
    pricing: Pricing,
    fresh: Collection[str] = (),
    resend: Collection[str] = (),
) -> tuple[Render, ...]:
    """``render_for`` each wanted take (``fresh`` and ``resend``: shot ids, every take of them)."""
    return tuple(
        render_for(
            one.shot,
            one.record,
            render_id=one.render_id,
            salt=salt,
            absence_is_proof=absence_is_proof,
            pricing=pricing,
            fresh=one.shot.id in fresh,
            resend=one.shot.id in resend,
            take=one.take,
        )
        for one in wanted
    )


def _unconfirmed(shot: ResolvedShot, record: ShotRecord | None) -> bool:
    return record is not None and record.status == UNCONFIRMED and record.fingerprint == shot.fingerprint


def _outcome_unknown(record: ShotRecord, *, absence_is_proof: bool) -> bool:
    """May the record's create have reached the provider without our seeing its answer?"""
    if record.status in (SUBMITTING, UNCONFIRMED):
        return True
    if record.status == PENDING_REMOTE:
        return not record.task_id
    # ``queued`` is only ever left behind with the create unsent where ``submitting`` is durable; elsewhere the
    # create may have left before its (deferred) ``submitting`` reached the disk.
    return record.status == QUEUED and absence_is_proof


def _continued(
    shot: ResolvedShot,
    record: ShotRecord,
    start: Start,
    attempt: int,
    *,
    render_id: int | None,
    salt: str,
    units: float,
    take: int,
) -> Render:
    return Render(
        shot=shot,
        start=start,
        attempt=attempt,
        external_task_id=record.external_task_id or _external_id(shot, salt=salt, attempt=attempt, take=take),
        request=record.request or None,
        take=take,
        variant=shot.variant,
        render_id=render_id,
        status=record.status,
        task_id=record.task_id,
        submitted_at=epoch_seconds(record.submitted_at),
        error=record.error,
        units=units,
    )


def _external_id(shot: ResolvedShot, *, salt: str, attempt: int, take: int) -> str:
    return external_task_id(shot, salt=salt, attempt=attempt, take=take, variant=shot.variant)


def _created(shot: ResolvedShot, record: ShotRecord | None, *, salt: str, units: float, take: int) -> Render:
    """A new attempt at the shot's request, in a new render row. A render left ``pending`` (or ``queued``, see
    ``_outcome_unknown``) never reached the provider under its attempt number: that number is used again."""
    same = record is not None and record.fingerprint == shot.fingerprint
    previous = record.attempts if (record is not None and same) else 0
    unused = record is not None and same and record.status in (PENDING, QUEUED)
    attempt = max(1, previous if unused else previous + 1)
    return Render(
        shot=shot,
        start=Start.CREATE,
        attempt=attempt,
        external_task_id=_external_id(shot, salt=salt, attempt=attempt, take=take),
        take=take,
        variant=shot.variant,
        units=units,
    )
