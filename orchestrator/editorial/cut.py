"""The cut: which media stands for each shot, in spec order, as one immutable value.

Everything editorial does (timelines, the reel, conform) reads a ``Cut`` and nothing else, and one function builds
it: ``build_cut``, from the resolved project and the folder's store state. Until the review decisions exist
(selects, approvals), a shot's newest finished render stands in for its select (``stand_in=True``) and every shot
is ``pending-review``; the review layer will add its decisions here, in ``build_cut`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.spec.shot import ResolvedProject, ResolvedShot
from orchestrator.store import FolderState, RenderRecord
from orchestrator.store.manifest import SUCCEEDED

PENDING_REVIEW = "pending-review"
APPROVED = "approved"
RETAKE = "retake"
HOLD = "hold"
REVIEW_STATUSES: tuple[str, ...] = (PENDING_REVIEW, APPROVED, RETAKE, HOLD)


@dataclass(frozen=True)
class CutShot:
    """One shot of the cut: its select's media (``None``: nothing finished yet, the board is held instead).

    ``board`` is the shot's first board when it is a local file (``None`` for a URL or inline board: a plain card
    stands in). ``spec_duration`` is the seconds the spec asks for: a held board lasts that long. ``stand_in`` says
    the media is the newest finished render standing in for a select nobody has made yet.
    """

    shot_id: str
    media: Path | None
    board: Path | None
    spec_duration: int
    aspect_ratio: str
    take: int | None
    variant: str | None
    fingerprint: str
    task_id: str | None
    prompt: str
    cost: float | None
    review_status: str = PENDING_REVIEW
    note: str = ""
    stand_in: bool = True

    @property
    def held(self) -> bool:
        """No finished render: the board holds the shot's place for its duration."""
        return self.media is None

    @property
    def select_key(self) -> tuple[object, ...]:
        """What makes two selects the same one: the render's request, take and variant, and its file."""
        return (self.media, self.fingerprint if self.media else None, self.take, self.variant)


@dataclass(frozen=True)
class Cut:
    """The shots in spec order, and where they live: the spec, its output folder (stills go in ``<out>/editorial``)."""

    project: str
    spec_path: Path
    output_dir: Path
    shots: tuple[CutShot, ...]

    @property
    def editorial_dir(self) -> Path:
        return self.output_dir / "editorial"

    def shot(self, shot_id: str) -> CutShot | None:
        return next((shot for shot in self.shots if shot.shot_id == shot_id), None)


def build_cut(project: ResolvedProject, state: FolderState, *, output_dir: Path | None = None) -> Cut:
    """The cut of ``project`` given the store ``state`` of its output folder (``output_dir``, default the spec's)."""
    out = (output_dir or project.output_dir).absolute()
    return Cut(
        project=project.project,
        spec_path=project.path,
        output_dir=out,
        # Once per shot: ``project.shots`` holds a shot with variants once per variant.
        shots=tuple(_cut_shot(project.shot(shot_id), state, out) for shot_id in project.shot_ids),
    )


def _cut_shot(shot: ResolvedShot, state: FolderState, out: Path) -> CutShot:
    select = newest_finished(state.renders_of(shot.id), out)
    board = shot.images[0].path if shot.images and shot.images[0].path is not None else None
    return CutShot(
        shot_id=shot.id,
        media=(out / select.outputs[0].path).absolute() if select else None,
        board=board.absolute() if board else None,
        spec_duration=shot.duration,
        aspect_ratio=shot.aspect_ratio,
        take=select.take if select else None,
        variant=select.variant if select else None,
        fingerprint=select.fingerprint if select else shot.fingerprint,
        task_id=select.task_id if select else None,
        prompt=_prompt_of(select) or shot.prompt,
        cost=select.cost if select else None,
        stand_in=True,  # no decisions yet: the review layer sets False for a shot with a select
    )


def newest_finished(renders: tuple[RenderRecord, ...], out: Path) -> RenderRecord | None:
    """The newest render that succeeded and whose video is still in the folder (a deleted file is no select)."""
    finished = [r for r in renders if r.status == SUCCEEDED and r.outputs and (out / r.outputs[0].path).is_file()]
    if not finished:
        return None
    return max(finished, key=lambda render: (render.finished_at or "", render.render_id))


def _prompt_of(render: RenderRecord | None) -> str | None:
    # The prompt the render was made with, which may differ from today's spec.
    if render is None:
        return None
    prompt = render.request.get("prompt")
    return prompt if isinstance(prompt, str) else None
