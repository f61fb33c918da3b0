"""One run rendering against a simulator, in a process of its own, its gate being the shared budget (or not).

``python render_worker.py BUDGET_URL|none PROJECT COUNT SLOTS CONCURRENCY BOARDS_DIR``, with ``COMETAPI_BASE_URL``
and ``COMETAPI_KEY`` pointing at the simulator. Each of COUNT shots: this run's own slot (CONCURRENCY), a shared
slot (``BudgetSession.admit``), the create, the re-key, polls that refresh the run's leases, the release with the
units charged; a 1303 is counted, shared as a cooldown and retried. Prints what it saw as one JSON line.

This is how the sending gate calls the budget (docs/budget.md, "The seam"), without the scheduler's other work.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from orchestrator.budget.config import BudgetConfig
from orchestrator.budget.session import BudgetSession
from orchestrator.budget.shared import SharedBudget
from orchestrator.errors import ConcurrencyLimitError
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.spec.fingerprint import external_task_id
from orchestrator.spec.shot import ResolvedShot
from tests.helpers import hand_shot, image_ref

POLL = 0.1
REFUSED_PAUSE = 0.5


@dataclass
class Seen:
    creates: int = 0
    refused: int = 0  # creates answered 1303
    polls: int = 0
    charged: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    notices: list[str] = field(default_factory=list)


async def render(url: str, project: str, count: int, slots: int, concurrency: int, boards: Path) -> Seen:
    images = (image_ref(boards / "b0.png"), image_ref(boards / "b1.png"))
    shots = [hand_shot(f"shot{i}", images=images, project=project) for i in range(count)]
    seen = Seen()
    own = anyio.CapacityLimiter(concurrency)
    session: BudgetSession | None = None
    async with CometAPIProvider.from_env() as provider:
        if url != "none":
            config = BudgetConfig(url=url, slots=slots, wait_poll=0.05)
            budget = SharedBudget.connect(config, project=project)
            session = BudgetSession(budget, notice=seen.notices.append)
        seen.started = time.time()

        async def one(shot: ResolvedShot) -> None:
            async with own:
                key = external_task_id(shot)
                if session is not None:
                    assert (await session.admit(key, units=1)).admitted
                while True:
                    try:
                        task = await provider.create_task(shot)
                        break
                    except ConcurrencyLimitError:
                        seen.refused += 1
                        if session is not None:
                            await session.cool_down(REFUSED_PAUSE)
                        await anyio.sleep(REFUSED_PAUSE)
                seen.creates += 1
                if session is not None:
                    await session.bind(key, task.task_id)
                while not task.status.finished:
                    await anyio.sleep(POLL)
                    task = await provider.get_task(task.task_id)
                    seen.polls += 1
                    if session is not None:
                        await session.refresh()
                charged = task.units_charged or 0.0
                seen.charged += charged
                if session is not None:
                    await session.release(task.task_id, charged=charged)

        async with anyio.create_task_group() as tg:
            for shot in shots:
                tg.start_soon(one, shot)
        seen.ended = time.time()
        if session is not None:
            await session.budget.aclose()
    return seen


def main(argv: list[str]) -> None:
    url, project, count, slots, concurrency, boards = argv
    seen = anyio.run(render, url, project, int(count), int(slots), int(concurrency), Path(boards))
    print(json.dumps(dataclasses.asdict(seen)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
