"""``orchestrator validate`` and ``orchestrator schema`` (placeholder until the spec module lands)."""

from __future__ import annotations
