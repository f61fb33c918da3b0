"""The store writer: the listener that turns a run's events into rows of the folder's render store.

The scheduler never writes the store. Each event that changes a render carries the change (``RenderChange``); the
event bus hands it here before anyone else hears of it, and where the next step must wait for the disk (an external
id before its create leaves, a task id, every end) the bus awaits ``commit()``, the store's group commit, first.
So the store's rows are exactly what the events said, in the order they said it.
"""

from __future__ import annotations

from orchestrator.run.events import Event
from orchestrator.store.database import RenderStore


class StoreWriter:
    """Applies render events to ``store``: a new render's first event adds its row, later ones change it."""

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
            ).render_id
        self._rows[change.key] = render_id
        if change.fields:
            self.store.update_render(render_id, **change.fields)

    async def commit(self) -> None:
        await self.store.commit()
