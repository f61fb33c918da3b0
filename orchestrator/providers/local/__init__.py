"""The local provider's server: a Kling-compatible simulator that renders real MP4 animatics, offline.

``LocalSimulator`` runs it on loopback in a background thread; point any Kling/CometAPI client at its ``base_url``.
``SimulatorOptions.dialect`` picks what it imitates: ``cometapi`` (default), ``kling`` (Kling direct, JWT) or
``gateway`` (a new-api gateway over several upstream accounts); see docs/simulator.md.
``render_animatic`` is the renderer on its own (boards in, H.264 MP4 out).
"""

from __future__ import annotations

from orchestrator.providers.local.animatic import AnimaticError, frame_size, render_animatic
from orchestrator.providers.local.app import create_app
from orchestrator.providers.local.server import LocalSimulator, serve_forever
from orchestrator.providers.local.state import SimulatorOptions, SimulatorStats

__all__ = [
    "AnimaticError",
    "LocalSimulator",
    "SimulatorOptions",
    "SimulatorStats",
    "create_app",
    "frame_size",
    "render_animatic",
    "serve_forever",
]
