"""One run's use of the shared budget, in a process of its own: ``python worker.py MODE URL PROJECT ...``.

``render N SLOTS``: N tasks, each admitted, re-keyed, held a random moment, released (1 unit); counts how many
tasks are in flight across every process (``test:in-flight``) and prints the most it saw, as JSON.
``hold SLOTS TTL KEY...``: admits and re-keys each KEY, prints ``held``, then refreshes nothing and waits to be killed.
``resume SLOTS TTL KEY...``: the run started again: refreshes its tasks' leases, then releases each (1 unit).
"""

from __future__ import annotations

import json
import random
import sys

import anyio

from orchestrator.budget.config import BudgetConfig
from orchestrator.budget.shared import SharedBudget


async def render(url: str, project: str, count: int, slots: int) -> None:
    config = BudgetConfig(url=url, slots=slots, wait_poll=0.01)
    rng = random.Random(project)
    peak = 0
    async with SharedBudget.connect(config, project=project) as budget:
        client = budget._client
        for task in range(count):
            key = f"{project}-{task}"
            assert (await budget.acquire(key, units=1)).admitted
            peak = max(peak, int(await client.incr("test:in-flight")))
            await anyio.sleep(rng.uniform(0, 0.02))
            await budget.bind(key, f"task-{key}", units=1)
            await anyio.sleep(rng.uniform(0, 0.02))
            await client.decr("test:in-flight")
            await budget.release(f"task-{key}", charged=1)
    print(json.dumps({"peak": peak}), flush=True)


async def hold(url: str, project: str, slots: int, ttl: float, keys: list[str]) -> None:
    async with SharedBudget.connect(BudgetConfig(url=url, slots=slots, lease_ttl=ttl), project=project) as budget:
        for key in keys:
            assert (await budget.admit(f"ext-{key}", units=1)).admitted
            await budget.bind(f"ext-{key}", key, units=1)
        print("held", flush=True)
        await anyio.sleep(3600)


async def resume(url: str, project: str, slots: int, ttl: float, keys: list[str]) -> None:
    async with SharedBudget.connect(BudgetConfig(url=url, slots=slots, lease_ttl=ttl), project=project) as budget:
        retaken = await budget.refresh(keys)
        for key in keys:
            await budget.release(key, charged=1)
    print(json.dumps({"retaken": retaken}), flush=True)


def main(argv: list[str]) -> None:
    mode, url, project, *rest = argv
    if mode == "render":
        anyio.run(render, url, project, int(rest[0]), int(rest[1]))
    elif mode in ("hold", "resume"):
        run = hold if mode == "hold" else resume
        anyio.run(run, url, project, int(rest[0]), float(rest[1]), rest[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
