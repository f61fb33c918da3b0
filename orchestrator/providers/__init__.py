"""Providers: the CometAPI and Kling clients, and the embedded local simulator, behind one protocol.

The wire each one speaks is in docs/wire.md; ``client.ProviderClient`` is the one client they share.
"""

from orchestrator.providers.base import Capabilities, Download, Provider, Task, TaskStatus, Video
from orchestrator.providers.client import ProviderClient
from orchestrator.providers.cometapi import CometAPIProvider
from orchestrator.providers.factory import PROVIDERS, LocalProvider, open_provider
from orchestrator.providers.kling import KlingProvider

__all__ = [
    "PROVIDERS",
    "Capabilities",
    "CometAPIProvider",
    "Download",
    "KlingProvider",
    "LocalProvider",
    "Provider",
    "ProviderClient",
    "Task",
    "TaskStatus",
    "Video",
    "open_provider",
]
