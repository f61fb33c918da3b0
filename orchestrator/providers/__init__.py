"""Providers: the CometAPI client and the embedded local simulator behind one protocol."""

from orchestrator.providers.base import Download, Provider, Task, TaskStatus, Video

__all__ = ["Download", "Provider", "Task", "TaskStatus", "Video"]
