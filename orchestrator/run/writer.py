"""The store writer: the listener that turns a run's events into rows of the folder's render store.

The scheduler never writes the store. Each event that changes a render carries the change (``RenderChange``); the
event bus hands it here before anyone else hears of it, and where the next step must wait for the disk (an external
id before its create leaves, a task id, every end) the bus awaits ``commit()``, the store's group commit, first.
So the store's rows are exactly what the events said, in the order they said it.
"""

from __future__ import annotations

from orchestrator.run.events import Event, NewRender
from orchestrator.store.database import RenderStore
from orchestrator.store.manifest import SUCCEEDED
from orchestrator.store.records import DEFAULT_TAKE


class StoreWriter:
    """Applies render events to ``store``: a new render's first event adds its row, later ones change it.

    Which render is a shot's current one: take 1 of a shot without variants becomes current when it starts, as it
    always did (its state is the shot's state). Another take or a variant becomes current when it starts only if
    the shot has no finished current render; otherwise when it succeeds: the newest finished render, so a shot
    rendering more takes still shows the video it has.
    """

    def __init__(self, store: RenderStore) -> None:
        self.store = store
        self._rows: dict[str, int] = {}  # render key -> its row, once known

    @property
    def commits(self) -> int:
        """Transactions committed so far (each a few pages of the log, whatever the number of renders)."""
        return self.store.commits

    @property
    def commit_seconds(self) -> float:
        return self.store.commit_seconds

    def apply(self, event: Event) -> None:
        change = event.change
        if change is None:
            return
        render_id = self._rows.get(change.key, change.render_id)
        if render_id is None:
            if change.new is None:
                return  # a render that never started has no row to change
            new = change.new
            render_id = self.store.new_render(
                change.shot_id,
                fingerprint=new.fingerprint,
                request=dict(new.request),
                take=new.take,
                variant=new.variant,
                attempt=new.attempt,
                current=self._current_at_start(change.shot_id, new),
            ).render_id
        self._rows[change.key] = render_id
        if change.fields:
            self.store.update_render(render_id, **change.fields)
            if change.fields.get("status") == SUCCEEDED:
                self.store.set_current(change.shot_id, render_id)

    def _current_at_start(self, shot_id: str, new: NewRender) -> bool:
        if new.take == DEFAULT_TAKE and new.variant is None:
            return True
        current = self.store.current(shot_id)
        return current is None or current.status != SUCCEEDED

    async def commit(self) -> None:
        await self.store.commit()
