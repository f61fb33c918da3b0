"""Providers: the CometAPI client and the embedded local simulator behind one protocol."""

from orchestrator.providers.base import Download, Provider, Task, TaskStatus, Video
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.factory import PROVIDERS, LocalProvider, open_provider

__all__ = [
    "PROVIDERS",
    "CometAPIProvider",
    "Download",
    "LocalProvider",
    "Provider",
    "Task",
    "TaskStatus",
    "Video",
    "open_provider",
]
