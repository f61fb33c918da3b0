"""The cyclic garbage collector during a command that builds a big production's values once and then exits.

``plan`` and ``validate`` of a 10,000-shot spec build about a million small objects (YAML values, resolved shots,
store records, plan entries) that live until the command ends and make no reference cycles: reference counting
frees them all. CPython's cyclic collector, triggered by allocations alone, traverses the growing heap over and over
while they are built (five full passes on such a plan) and once more as the interpreter exits: a quarter or more of
the command's CPU, finding nothing to collect. mypy raises its thresholds for the same reason; these commands pause
the collector while they work (``paused_collector``), and the process skips the pass at exit
(``skip_collection_at_exit``).
"""

from __future__ import annotations

import atexit
import gc
from collections.abc import Iterator
from contextlib import contextmanager

_skipping_at_exit = False


@contextmanager
def paused_collector() -> Iterator[None]:
    """No cyclic collection inside; the collector as it was afterwards (nested or already paused: left alone).

    Cycles made inside are not lost, only collected later; reference counting frees everything else as usual.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def skip_collection_at_exit() -> None:
    """At interpreter exit, leave out of its last collection the objects alive then (``gc.freeze``): the process
    is ending and frees its memory whole. Registered once, however many commands ask."""
    global _skipping_at_exit
    if not _skipping_at_exit:
        _skipping_at_exit = True
        atexit.register(gc.freeze)
